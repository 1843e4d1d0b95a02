"""The acm area against moto with the emulator's rule that ACM issues only once the validation
CNAME records exist: requested once, records written in the same run, issued, or pending."""

from __future__ import annotations

import pytest

from deploy.areas import acm
from deploy.plan import Check, Wait
from deploy.report import Reporter
from deploy.stack import converge_areas
from deploy.stage import Stage
from tests.helpers import changed, converge, operations

FAST = "waits: {poll_seconds: 0.05, timeout_seconds: 10}\n"
ZONE = "dns:\n  hosted_zone: iotile.cloud\n"
NO_WAIT = "acm: {wait_minutes: 0}\n"
NAMES = ["dev.iotile.cloud", "*.dev.iotile.cloud"]


def public_zone(stage: Stage) -> str:
    zone = stage.client("route53").create_hosted_zone(Name="iotile.cloud", CallerReference="test")
    return zone["HostedZone"]["Id"].rsplit("/", 1)[-1]


def certificates(stage: Stage) -> list[dict]:
    client = stage.client("acm")
    arns = [c["CertificateArn"] for c in client.list_certificates()["CertificateSummaryList"]]
    return [client.describe_certificate(CertificateArn=arn)["Certificate"] for arn in arns]


def cnames(stage: Stage, zone_id: str) -> dict[str, list[str]]:
    sets = stage.client("route53").list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    return {s["Name"]: [r["Value"] for r in s["ResourceRecords"]] for s in sets if s["Type"] == "CNAME"}


def test_no_domains_no_certificate(make_stage, config_copy, call_log) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", "acm: {domains: []}\n"), log=call_log)

    assert acm.plan(stage) == []
    assert call_log.calls == []


def test_requested_once_records_written_in_the_same_run_then_issued(
    make_stage, config_copy, call_log
) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", FAST + ZONE), log=call_log)
    zone_id = public_zone(stage)

    first = converge(stage, "acm")

    assert operations(first.resources) == ["RequestCertificate", "ChangeResourceRecordSets"]
    assert first.calls == 2
    [certificate] = certificates(stage)
    assert certificate["Status"] == "ISSUED", "the run waited for ACM once the records were written"
    assert sorted(certificate["SubjectAlternativeNames"]) == sorted(NAMES)
    # `dev.iotile.cloud` and `*.dev.iotile.cloud` share one validation record.
    record = certificate["DomainValidationOptions"][0]["ResourceRecord"]
    assert cnames(stage, zone_id) == {record["Name"]: [record["Value"]]}
    assert acm.certificate_arn(stage) == certificate["CertificateArn"]
    tags = stage.client("acm").list_tags_for_certificate(CertificateArn=certificate["CertificateArn"])
    assert {t["Key"]: t["Value"] for t in tags["Tags"]}["Stage"] == "dev"

    call_log.clear()
    second = converge(stage, "acm")

    assert second.calls == 0 and call_log.mutating == []
    assert changed(second.resources) == []
    assert [r.state for r in second.resources] == ["present", "present"]
    assert len(certificates(stage)) == 1, "never requested twice"


def test_pending_not_failed_when_validation_outlasts_the_wait(
    make_stage, config_copy, call_log, emulator_clock, monkeypatch
) -> None:
    from deploy.emulator import strict

    # ACM takes its minutes: nothing is issued while this test runs unless the clock moves.
    monkeypatch.setattr(strict, "ACM_VALIDATION_SECONDS", 300.0)
    stage = make_stage("dev", config_dir=config_copy("dev", FAST + ZONE + NO_WAIT), log=call_log)
    public_zone(stage)

    first = converge(stage, "acm")

    assert first.calls == 2, "requested and its records written; ISSUED left for later, no error"
    assert acm.certificate_arn(stage) is None, "eb and cdn get no certificate that is not issued"
    call_log.clear()
    waiting = converge(stage, "acm")
    assert waiting.calls == 0 and call_log.mutating == []
    validation = waiting.resources[1]
    assert validation.state == "pending" and validation.steps == ()
    assert "PENDING_VALIDATION" in validation.drift[0]

    emulator_clock.advance(300)
    issued = converge(stage, "acm")

    assert issued.calls == 0
    assert [r.state for r in issued.resources] == ["present", "present"]
    assert acm.certificate_arn(stage) == certificates(stage)[0]["CertificateArn"]


def test_dry_run_shows_the_steps_and_makes_no_mutating_call(make_stage, config_copy, call_log) -> None:
    folder = config_copy("dev", ZONE)
    public_zone(make_stage("dev", config_dir=folder))
    stage = make_stage("dev", read_only=True, config_dir=folder, log=call_log)

    preview = converge(stage, "acm", dry_run=True)

    certificate, validation = preview.resources
    request = certificate.steps[0]
    assert request.operation == "RequestCertificate"
    assert request.params["ValidationMethod"] == "DNS"
    assert request.params["IdempotencyToken"] == acm.idempotency_token("dev", "us-east-1", tuple(NAMES))
    assert isinstance(validation.steps[0], Wait)
    assert isinstance(validation.steps[-1], Check)
    assert str(validation.steps[1].params["ChangeBatch"]).startswith("<validation CNAME records")
    assert call_log.mutating == []
    assert certificates(stage) == []


def test_without_a_zone_the_operator_gets_the_records(make_stage, config_copy, call_log) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", FAST), log=call_log)

    first = converge(stage, "acm")

    assert operations(first.resources) == ["RequestCertificate"]
    assert not [call for call in call_log.calls if call[0] == "route53"]
    call_log.clear()
    second = converge(stage, "acm")
    assert second.calls == 0 and call_log.mutating == []
    validation = second.resources[1]
    assert validation.state == "pending"
    assert "dns.hosted_zone is not set" in validation.drift[0]
    assert " CNAME _" in validation.drift[1] and "acm-validations.aws." in validation.drift[1]


def test_found_again_by_domain_and_tags_only(make_stage, config_copy) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", FAST))
    client = stage.client("acm")
    # The same names, but not this stage's: another stage's, or made by hand.
    client.request_certificate(DomainName=NAMES[0], SubjectAlternativeNames=NAMES[1:], ValidationMethod="DNS")
    client.request_certificate(
        DomainName=NAMES[0],
        SubjectAlternativeNames=NAMES[1:],
        ValidationMethod="DNS",
        Tags=[{"Key": "ManagedBy", "Value": "iotile-deploy"}, {"Key": "Stage", "Value": "stage"}],
    )

    assert operations(converge(stage, "acm").resources) == ["RequestCertificate"]
    assert operations(converge(stage, "acm").resources) == []
    assert len(certificates(stage)) == 3


def test_a_drifted_validation_record_is_repaired(make_stage, config_copy) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", FAST + ZONE))
    zone_id = public_zone(stage)
    converge(stage, "acm")
    [name] = cnames(stage, zone_id)
    wrong = {"Name": name, "Type": "CNAME", "TTL": 300, "ResourceRecords": [{"Value": "stale.example."}]}
    stage.client("route53").change_resource_record_sets(
        HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": wrong}]}
    )

    repaired = converge(stage, "acm")

    assert operations(repaired.resources) == ["ChangeResourceRecordSets"]
    assert cnames(stage, zone_id)[name] != ["stale.example."]


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_cloudfront_certificate_outside_us_east_1_is_reported(make_stage, config_copy, region) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", f"region: {region}\n"))

    resources = acm.plan(stage)

    gaps = [r for r in resources if r.name == "dev.iotile.cloud (us-east-1)" and r.state == "pending"]
    assert len(gaps) == (region != "us-east-1")
    assert acm.certificate_arn(stage, region="us-east-1") is None


def test_idempotency_token_is_what_acm_takes() -> None:
    import re

    token = acm.idempotency_token("prod", "us-east-1", ("iotile.cloud", "*.iotile.cloud"))
    assert re.fullmatch(r"\w{1,32}", token)
    assert token != acm.idempotency_token("dev", "us-east-1", ("iotile.cloud", "*.iotile.cloud"))


def test_zone_made_and_certificate_issued_in_one_run(make_stage, config_copy, call_log) -> None:
    folder = config_copy("dev", FAST + "dns:\n  hosted_zone: iotile.cloud\n  create_zone: true\n")
    preview_log = type(call_log)()
    preview_stage = make_stage("dev", read_only=True, config_dir=folder, log=preview_log)
    preview = converge_areas(preview_stage, [("dns",), ("acm",)], Reporter(as_json=True), dry_run=True)
    write = next(
        step
        for r in preview.resources
        for step in r.steps
        if getattr(step, "service", "") == "route53" and step.operation == "ChangeResourceRecordSets"
    )
    assert str(write.params["HostedZoneId"]) == "<id of the hosted zone iotile.cloud.>", (
        "made earlier in the run"
    )
    assert preview_log.mutating == []

    stage = make_stage("dev", config_dir=folder, log=call_log)
    outcome = converge_areas(stage, [("dns",), ("acm",)], Reporter(as_json=True), dry_run=False)

    assert outcome.calls == 4
    assert certificates(stage)[0]["Status"] == "ISSUED"
    call_log.clear()
    again = converge_areas(stage, [("dns",), ("acm",)], Reporter(as_json=True), dry_run=False)
    assert again.calls == 0 and call_log.mutating == []
