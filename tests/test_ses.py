"""SES planner against moto: the notify identity with DKIM, bounce and complaint topics, DNS records."""

from __future__ import annotations

import json

import pytest
from invoke import Context

from deploy.areas import dns, ses
from deploy.errors import AwsError
from deploy.stage import Stage
from tests.helpers import changed, converge, operations

DOMAIN = "notify.iotile.cloud"
ZONE = "dns:\n  hosted_zone: iotile.cloud\n"


def ready(stage: Stage) -> None:
    """What ses needs from earlier waves: the SESIssues topic (and the key it is encrypted with)."""
    converge(stage, "kms", "sns")


def notifications(stage: Stage) -> dict:
    return stage.client("ses").get_identity_notification_attributes(Identities=[DOMAIN])[
        "NotificationAttributes"
    ][DOMAIN]


def ses_backend(stage: Stage):
    from moto.ses.models import ses_backends

    return ses_backends[stage.account_id][stage.region]


def verify(stage: Stage) -> None:
    """The emulator's control call: SES has verified the identity (as it does hours after the
    TXT record is published at a DNS provider this tool does not manage)."""
    from deploy.emulator.strict import mark_verified

    mark_verified(ses_backend(stage), DOMAIN)


def public_zone(stage: Stage) -> str:
    zone = stage.client("route53").create_hosted_zone(Name="iotile.cloud", CallerReference="test")[
        "HostedZone"
    ]
    return zone["Id"]


def record_sets(stage: Stage, zone_id: str) -> dict[tuple[str, str], list[str]]:
    sets = stage.client("route53").list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    return {(s["Name"], s["Type"]): [r["Value"] for r in s.get("ResourceRecords", [])] for s in sets}


def test_creates_the_identity_with_dkim_and_bounce_and_complaint_topics_once(make_stage, call_log) -> None:
    stage = make_stage("dev", log=call_log)
    ready(stage)
    call_log.clear()
    preview = converge(make_stage("dev", read_only=True, log=call_log), "ses", dry_run=True)
    assert preview.resources[0].state == "missing"
    assert call_log.mutating == []

    outcome = converge(stage, "ses")

    assert [r.name for r in outcome.resources] == [DOMAIN, f"{DOMAIN} notifications"]
    assert (
        operations(outcome.resources)
        == operations(preview.resources)
        == [
            "VerifyDomainIdentity",
            "VerifyDomainDkim",
            "SetIdentityNotificationTopic",
            "SetIdentityNotificationTopic",
            "SetIdentityFeedbackForwardingEnabled",
        ]
    )
    # AWS takes notification settings for a verified identity only: they wait for verification.
    assert outcome.calls == 2
    client = stage.client("ses")
    assert DOMAIN in client.list_identities(IdentityType="Domain")["Identities"]
    dkim = client.get_identity_dkim_attributes(Identities=[DOMAIN])["DkimAttributes"][DOMAIN]
    assert dkim["DkimEnabled"] is True and len(dkim["DkimTokens"]) == 3
    assert "Bounce" not in ses_backend(stage).sns_topics.get(DOMAIN, {})
    assert not [call for call in call_log.calls if call[0] == "route53"], "no zone managed: no DNS call"

    call_log.clear()
    pending = converge(stage, "ses")
    assert changed(pending.resources) == [] and call_log.mutating == []
    assert pending.resources[1].state == "pending"
    waiting = "pending verification (Pending): 4 DNS records at your DNS provider"
    assert pending.resources[1].drift == (waiting,)

    verify(stage)
    verified = converge(stage, "ses")
    assert operations(verified.resources) == [
        "SetIdentityNotificationTopic",
        "SetIdentityNotificationTopic",
        "SetIdentityFeedbackForwardingEnabled",
    ]
    topic = stage.arn("sns", "SESIssues")
    held = ses_backend(stage).sns_topics[DOMAIN]  # what moto stored, not what our read returns
    assert held["Bounce"] == topic and held["Complaint"] == topic and "Delivery" not in held
    assert held["feedback_forwarding_enabled"] is False

    call_log.clear()
    second = converge(stage, "ses")
    assert changed(second.resources) == []
    assert second.resources[0].detail == "verification Success, DKIM Success"
    assert call_log.mutating == []


def test_topic_removed_and_forwarding_turned_on_by_hand_are_repaired(make_stage) -> None:
    stage = make_stage("dev")
    ready(stage)
    verify(stage)
    converge(stage, "ses")
    client = stage.client("ses")
    client.set_identity_notification_topic(Identity=DOMAIN, NotificationType="Complaint")
    assert "ComplaintTopic" not in notifications(stage)

    drifted = converge(stage, "ses")

    assert operations(drifted.resources) == ["SetIdentityNotificationTopic"]
    assert drifted.resources[1].steps[0].params["NotificationType"] == "Complaint"
    assert notifications(stage)["ComplaintTopic"] == stage.arn("sns", "SESIssues")

    client.set_identity_feedback_forwarding_enabled(Identity=DOMAIN, ForwardingEnabled=True)
    assert operations(converge(stage, "ses").resources) == ["SetIdentityFeedbackForwardingEnabled"]
    assert notifications(stage)["ForwardingEnabled"] is False


def test_records_are_written_to_the_hosted_zone_once_and_kept(make_stage, config_copy, call_log) -> None:
    folder = config_copy("dev", ZONE)
    stage = make_stage("dev", config_dir=folder, log=call_log)
    ready(stage)
    zone_id = public_zone(stage)
    preview = converge(make_stage("dev", read_only=True, config_dir=folder), "ses", dry_run=True)
    shown = preview.resources[1].steps[0].describe()["params"]["ChangeBatch"]
    assert shown.startswith("<verification TXT and DKIM CNAME records of notify.iotile.cloud")
    assert preview.resources[1].depends_on == (DOMAIN,)

    first = converge(stage, "ses")

    assert [r.name for r in first.resources] == [DOMAIN, f"{DOMAIN} records", f"{DOMAIN} notifications"]
    # The records written in this run verify the identity, so its notifications follow in the same run.
    assert first.calls == 2 + 1 + 3
    assert notifications(stage)["BounceTopic"] == stage.arn("sns", "SESIssues")
    assert operations(first.resources, f"{DOMAIN} records") == ["ChangeResourceRecordSets"]
    client = stage.client("ses")
    token = client.get_identity_verification_attributes(Identities=[DOMAIN])["VerificationAttributes"][
        DOMAIN
    ]["VerificationToken"]
    dkim = client.get_identity_dkim_attributes(Identities=[DOMAIN])["DkimAttributes"][DOMAIN]["DkimTokens"]
    found = record_sets(stage, zone_id)
    txt = f"_amazonses.{DOMAIN}."
    assert found[(txt, "TXT")] == [f'"{token}"']
    for dkim_token in dkim:
        assert found[(f"{dkim_token}._domainkey.{DOMAIN}.", "CNAME")] == [f"{dkim_token}.dkim.amazonses.com"]

    call_log.clear()
    assert changed(converge(stage, "ses").resources) == []
    assert call_log.mutating == []

    wrong = {"Name": txt, "Type": "TXT", "TTL": 300, "ResourceRecords": [{"Value": '"stale"'}]}
    stage.client("route53").change_resource_record_sets(
        HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": wrong}]}
    )
    drifted = converge(stage, "ses")

    assert operations(drifted.resources) == ["ChangeResourceRecordSets"]
    assert drifted.resources[1].drift == ("DNS records 1 differ",)
    changes = drifted.resources[1].steps[0].params["ChangeBatch"]["Changes"]
    assert [c["ResourceRecordSet"]["Name"] for c in changes] == [txt]
    assert record_sets(stage, zone_id)[(txt, "TXT")] == [f'"{token}"']


def test_missing_or_private_zone_is_an_error_with_a_hint(make_stage, config_copy) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", ZONE))
    ready(stage)
    with pytest.raises(AwsError) as missing:
        converge(stage, "ses")
    assert missing.value.code == "HostedZoneNotFound"
    assert "dns.hosted_zone" in missing.value.hint

    stage.client("route53").create_hosted_zone(
        Name="iotile.cloud",
        CallerReference="private",
        HostedZoneConfig={"PrivateZone": True},
        VPC={"VPCRegion": stage.region, "VPCId": "vpc-0123456789abcdef0"},
    )
    with pytest.raises(AwsError, match="HostedZoneNotFound"):
        converge(stage, "ses")
    assert stage.client("ses").list_identities()["Identities"] == [], "the plan failed before any change"


def test_without_a_zone_create_and_status_hand_the_records_to_the_operator(make_stage, capsys) -> None:
    stage = make_stage("dev")
    ready(stage)
    capsys.readouterr()

    ses.create(Context(), stage="dev", json=True)
    created = json.loads(capsys.readouterr().out)
    assert created["calls_made"] == 2, "notification settings wait for verification"
    assert len(created["dns_records"]) == 4

    ses.status(Context(), stage="dev", json=True)
    document = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in document["resources"]] == [DOMAIN, f"{DOMAIN} notifications"]
    assert document["resources"][1]["state"] == "pending"
    records = {(r["name"], r["type"]): r["values"] for r in document["dns_records"]}
    assert len(records) == 4
    token = ses.read_identity(stage, DOMAIN).token
    assert records[(f"_amazonses.{DOMAIN}.", "TXT")] == [token]

    ses.status(Context(), stage="dev", json=False)
    text = capsys.readouterr().out
    assert f'_amazonses.{DOMAIN}. 300 IN TXT "{token}"' in text
    assert text.count("._domainkey.") == 3


def test_pending_verification_is_shown_but_not_repaired(make_stage) -> None:
    stage = make_stage("dev")
    ready(stage)
    converge(stage, "ses")

    again = converge(stage, "ses")

    assert changed(again.resources) == []
    assert again.resources[0].state == "present"
    assert again.resources[0].detail == "pending verification: add 4 DNS records"


def test_the_rest_of_the_stack_converges_while_ses_waits_for_verification(make_stage, call_log) -> None:
    """On AWS, verification takes hours: `up` must not fail at SES meanwhile."""
    stage = make_stage("dev", log=call_log)
    ready(stage)

    outcome = converge(stage, "ses", "sqs")

    names = [r.name for r in outcome.resources]
    assert "iotile-worker-dev" in names and f"{DOMAIN} notifications" in names
    assert stage.client("sqs").get_queue_url(QueueName="iotile-worker-dev")["QueueUrl"]
    refused = [c for c in call_log.calls if c[1].startswith("SetIdentity")]
    assert refused == [], "no notification call reaches SES before verification"


def test_describe_records_gives_zone_file_lines() -> None:
    records = [
        dns.Record("_amazonses.notify.example.com", "TXT", ('a"b',)),
        dns.Record("tok._domainkey.notify.example.com", "CNAME", ("tok.dkim.amazonses.com",), ttl=1800),
    ]

    assert dns.describe_records(records) == [
        '_amazonses.notify.example.com. 300 IN TXT "a\\"b"',
        "tok._domainkey.notify.example.com. 1800 IN CNAME tok.dkim.amazonses.com.",
    ]
