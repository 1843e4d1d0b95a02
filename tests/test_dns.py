"""The dns area (the hosted zone) and the aliases area (the front end's alias records) against moto."""

from __future__ import annotations

import sys

import pytest

from deploy.areas import aliases, cdn, dns, eb
from deploy.errors import AwsError
from deploy.stage import Stage
from tests.helpers import changed, converge, operations

ZONE = "dns:\n  hosted_zone: iotile.cloud\n"
CREATE_ZONE = "dns:\n  hosted_zone: iotile.cloud\n  create_zone: true\n"
APP = "iotile-cloud-dev.us-east-1.elasticbeanstalk.com"


def public_zone(stage: Stage) -> str:
    zone = stage.client("route53").create_hosted_zone(Name="iotile.cloud", CallerReference="test")
    return zone["HostedZone"]["Id"].rsplit("/", 1)[-1]


def zones(stage: Stage) -> list[dict]:
    return stage.client("route53").list_hosted_zones()["HostedZones"]


def record_sets(stage: Stage, zone_id: str) -> dict[tuple[str, str], dict]:
    sets = stage.client("route53").list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    return {(s["Name"], s["Type"]): s for s in sets}


@pytest.fixture
def targets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    """The environment and the distributions, as eb's and cdn's lookups report them."""
    found: dict[str, str | None] = {
        "app": APP,
        "statics": "d111statics.cloudfront.net",
        "media": "d222media.cloudfront.net",
    }
    monkeypatch.setattr(eb, "environment_cname", lambda stage: found["app"])
    monkeypatch.setattr(cdn, "distribution_domain", lambda stage, which: found[which])
    return found


def test_without_a_zone_nothing_is_planned_and_route53_is_not_asked(make_stage, call_log) -> None:
    stage = make_stage("dev", log=call_log)

    assert dns.plan(stage) == []
    assert aliases.plan(stage) == []
    assert not [call for call in call_log.calls if call[0] == "route53"]


def test_a_missing_zone_is_one_error_naming_the_key_with_a_hint(make_stage, config_copy, call_log) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", ZONE), log=call_log)

    with pytest.raises(AwsError) as missing:
        converge(stage, "dns")

    assert missing.value.code == "HostedZoneNotFound"
    assert "dns.hosted_zone" in str(missing.value) and "dns.create_zone" in missing.value.hint
    assert "\n" not in str(missing.value)
    assert call_log.mutating == []


def test_an_existing_zone_is_looked_up_and_left_alone(make_stage, config_copy, call_log) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", CREATE_ZONE), log=call_log)
    zone_id = public_zone(stage)
    call_log.clear()

    outcome = converge(stage, "dns")

    assert [(r.name, r.state) for r in outcome.resources] == [("iotile.cloud.", "present")]
    assert zone_id in outcome.resources[0].detail
    assert call_log.mutating == [] and len(zones(stage)) == 1


def test_zone_is_created_only_when_asked_then_never_again(make_stage, config_copy, call_log) -> None:
    folder = config_copy("dev", CREATE_ZONE)
    preview_log = type(call_log)()
    preview = converge(
        make_stage("dev", read_only=True, config_dir=folder, log=preview_log), "dns", dry_run=True
    )
    assert operations(preview.resources) == ["CreateHostedZone", "ChangeTagsForResource"]
    assert preview_log.mutating == []

    stage = make_stage("dev", config_dir=folder, log=call_log)
    first = converge(stage, "dns")

    assert first.calls == 2
    [zone] = zones(stage)
    assert zone["Name"] == "iotile.cloud." and not zone["Config"]["PrivateZone"]
    zone_id = zone["Id"].rsplit("/", 1)[-1]
    tags = stage.client("route53").list_tags_for_resource(ResourceType="hostedzone", ResourceId=zone_id)
    assert {t["Key"]: t["Value"] for t in tags["ResourceTagSet"]["Tags"]}["Stage"] == "dev"

    call_log.clear()
    second = converge(stage, "dns")
    assert second.calls == 0 and call_log.mutating == []
    assert changed(second.resources) == []


def test_alias_records_are_upserted_once_and_a_drifted_one_repaired(
    make_stage, config_copy, call_log, targets
) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", ZONE), log=call_log)
    zone_id = public_zone(stage)

    first = converge(stage, "aliases")

    assert [r.name for r in first.resources] == [
        "dev.iotile.cloud.",
        "statics.dev.iotile.cloud.",
        "media.dev.iotile.cloud.",
    ]
    assert first.calls == 3, "one UPSERT per name"
    found = record_sets(stage, zone_id)
    app = found[("dev.iotile.cloud.", "A")]["AliasTarget"]
    assert app["DNSName"] == f"{APP}." and app["HostedZoneId"] == aliases.BEANSTALK_ZONES["us-east-1"]
    assert ("dev.iotile.cloud.", "AAAA") not in found, "an environment name resolves to IPv4 only"
    for kind in ("A", "AAAA"):
        statics = found[("statics.dev.iotile.cloud.", kind)]["AliasTarget"]
        assert statics["HostedZoneId"] == aliases.CLOUDFRONT_ZONE
        assert statics["DNSName"] == "d111statics.cloudfront.net."

    call_log.clear()
    second = converge(stage, "aliases")
    assert second.calls == 0 and call_log.mutating == []

    by_hand = {
        "Name": "media.dev.iotile.cloud.",
        "Type": "AAAA",
        "AliasTarget": {
            "HostedZoneId": "Z2FDTNDATAQYW2",
            "DNSName": "elsewhere.cloudfront.net.",
            "EvaluateTargetHealth": False,
        },
    }
    stage.client("route53").change_resource_record_sets(
        HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": by_hand}]}
    )
    repaired = converge(stage, "aliases")

    assert changed(repaired.resources) == ["media.dev.iotile.cloud."]
    assert repaired.resources[2].drift == ("DNS records 1 differ",)
    media = record_sets(stage, zone_id)[("media.dev.iotile.cloud.", "AAAA")]["AliasTarget"]
    assert media["DNSName"] == "d222media.cloudfront.net."


def test_a_record_whose_target_is_missing_is_pending_with_no_step(
    make_stage, config_copy, targets, monkeypatch
) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", ZONE))
    zone_id = public_zone(stage)
    targets["app"] = None
    # The cdn area not built at all: its module cannot be imported.
    monkeypatch.setitem(sys.modules, "deploy.areas.cdn", None)
    monkeypatch.delattr(sys.modules["deploy.areas"], "cdn")

    outcome = converge(stage, "aliases")

    states = {r.name: (r.state, r.steps, r.drift) for r in outcome.resources}
    assert states["dev.iotile.cloud."] == (
        "pending",
        (),
        ("pending: Beanstalk environment iotile-cloud-dev not created yet",),
    )
    assert states["statics.dev.iotile.cloud."][0] == "pending"
    assert states["statics.dev.iotile.cloud."][2] == (
        "pending: statics distribution not created yet (no cdn area)",
    )
    assert outcome.calls == 0
    assert set(record_sets(stage, zone_id)) == {("iotile.cloud.", "NS"), ("iotile.cloud.", "SOA")}


def test_dry_run_of_aliases_makes_no_mutating_call(make_stage, config_copy, call_log, targets) -> None:
    folder = config_copy("dev", ZONE)
    public_zone(make_stage("dev", config_dir=folder))
    stage = make_stage("dev", read_only=True, config_dir=folder, log=call_log)

    preview = converge(stage, "aliases", dry_run=True)

    assert operations(preview.resources) == ["ChangeResourceRecordSets"] * 3
    assert call_log.mutating == []


def test_alias_records_go_through_the_same_record_code() -> None:
    record = dns.Record("dev.iotile.cloud", "A", alias=dns.Alias("X.cloudfront.net", "Z2FDTNDATAQYW2"))
    batch = dns.change_batch([record], "c")["Changes"][0]["ResourceRecordSet"]

    assert batch == {
        "Name": "dev.iotile.cloud.",
        "Type": "A",
        "AliasTarget": {
            "HostedZoneId": "Z2FDTNDATAQYW2",
            "DNSName": "x.cloudfront.net.",
            "EvaluateTargetHealth": False,
        },
    }
    assert dns.describe_records([record]) == [
        "dev.iotile.cloud. A x.cloudfront.net. (alias, zone Z2FDTNDATAQYW2)"
    ]
    plain = {"Name": "dev.iotile.cloud.", "Type": "A", "TTL": 300, "ResourceRecords": [{"Value": "1.2.3.4"}]}
    assert not dns._same(record, plain), "a plain record where an alias belongs is drift"
    assert dns._same(record, batch)
