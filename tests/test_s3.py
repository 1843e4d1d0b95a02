"""S3 planner against moto: create from nothing, converge drift, nothing to do when it matches."""

from __future__ import annotations

import json

import pytest

from deploy.areas import s3
from deploy.stage import Stage
from tests.helpers import changed, converge, operations

BUCKETS = {
    "iotile-cloud-statics",
    "iotile-cloud-media",
    "iotile-cloud-reports",
    "iotile-cloud-stream-event-data",
    "iotile-cloud-streamers",
    "iotile-streamer-dropdown",
    "iotile-stream-in",
    "iotile-timeseries-kinesis",
}
DATA_BUCKETS = BUCKETS - {"iotile-cloud-statics", "iotile-stream-in", "iotile-timeseries-kinesis"}


@pytest.fixture
def dev(make_stage, call_log) -> Stage:
    return make_stage("dev", log=call_log)


def test_creates_every_bucket_private_encrypted_and_tls_only(dev: Stage) -> None:
    outcome = converge(dev, "s3")

    assert {r.name for r in outcome.resources if r.state == "missing"} == BUCKETS
    client = dev.client("s3")
    assert {b["Name"] for b in client.list_buckets()["Buckets"]} == BUCKETS
    for name in BUCKETS:
        block = client.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
        assert block == s3.PRIVATE
        rule = client.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]
        assert rule["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        policy = json.loads(client.get_bucket_policy(Bucket=name)["Policy"])
        deny = [s for s in policy["Statement"] if s["Sid"] == s3.TLS_ONLY_SID]
        assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        versioning = client.get_bucket_versioning(Bucket=name).get("Status")
        assert (versioning == "Enabled") == (name in DATA_BUCKETS)
        tags = {t["Key"]: t["Value"] for t in client.get_bucket_tagging(Bucket=name)["TagSet"]}
        assert tags["Stage"] == "shared" and tags["ManagedBy"] == "iotile-deploy"


def test_streamers_errors_expire_and_multipart_uploads_are_aborted(dev: Stage) -> None:
    converge(dev, "s3")

    rules = dev.client("s3").get_bucket_lifecycle_configuration(Bucket="iotile-cloud-streamers")
    by_id = {rule["ID"]: rule for rule in rules["Rules"]}
    expire = by_id["iotile-deploy-dev-expire-errors"]
    assert expire["Filter"]["Prefix"] == "dev/errors/"
    assert expire["Expiration"]["Days"] == dev.config.s3.errors_expire_days
    abort = by_id[s3.ABORT_RULE]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
    assert abort == dev.config.s3.abort_multipart_days


def test_media_bucket_allows_browser_uploads_from_configured_origins(dev: Stage) -> None:
    converge(dev, "s3")

    cors = dev.client("s3").get_bucket_cors(Bucket="iotile-cloud-media")["CORSRules"]
    assert len(cors) == 1
    assert cors[0]["AllowedOrigins"] == dev.config.s3.cors_origins
    assert "PUT" in cors[0]["AllowedMethods"] and "POST" in cors[0]["AllowedMethods"]


def test_second_run_plans_nothing_and_makes_no_mutating_call(dev: Stage, call_log) -> None:
    converge(dev, "s3")
    call_log.clear()

    outcome = converge(dev, "s3")

    assert changed(outcome.resources) == []
    assert all(r.state == "present" for r in outcome.resources)
    assert call_log.calls, "the second run must still read"
    assert call_log.mutating == []


@pytest.mark.parametrize(
    ("break_it", "repair"),
    [
        (lambda c, b: c.delete_bucket_encryption(Bucket=b), "PutBucketEncryption"),
        (lambda c, b: c.delete_public_access_block(Bucket=b), "PutPublicAccessBlock"),
        (
            lambda c, b: c.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"}),
            "PutBucketVersioning",
        ),
        (lambda c, b: c.delete_bucket_policy(Bucket=b), "PutBucketPolicy"),
        (lambda c, b: c.delete_bucket_lifecycle(Bucket=b), "PutBucketLifecycleConfiguration"),
        (lambda c, b: c.delete_bucket_tagging(Bucket=b), "PutBucketTagging"),
    ],
    ids=["encryption", "public-access", "versioning", "policy", "lifecycle", "tags"],
)
def test_drift_made_by_hand_is_repaired_with_one_call(dev: Stage, break_it, repair) -> None:
    converge(dev, "s3")
    break_it(dev.client("s3"), "iotile-cloud-reports")

    drifted = converge(dev, "s3")

    assert changed(drifted.resources) == ["iotile-cloud-reports"]
    assert operations(drifted.resources) == [repair]
    assert drifted.resources[2].state == "drifted"
    assert changed(converge(dev, "s3").resources) == []


def test_kms_encryption_from_config(make_stage, config_copy) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", "s3:\n  kms_key: alias/iotile\n"))

    converge(stage, "s3")

    rule = stage.client("s3").get_bucket_encryption(Bucket="iotile-cloud-media")
    default = rule["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]
    assert default == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/iotile"}


def test_stages_share_buckets_without_undoing_each_other(make_stage) -> None:
    dev, prod = make_stage("dev"), make_stage("prod")
    converge(dev, "s3")
    client = dev.client("s3")
    hand_made = {"ID": "keep-me", "Status": "Enabled", "Filter": {"Prefix": "x/"}, "Expiration": {"Days": 3}}
    rules = client.get_bucket_lifecycle_configuration(Bucket="iotile-cloud-streamers")["Rules"]
    client.put_bucket_lifecycle_configuration(
        Bucket="iotile-cloud-streamers", LifecycleConfiguration={"Rules": [*rules, hand_made]}
    )

    converge(prod, "s3")

    ids = {
        r["ID"] for r in client.get_bucket_lifecycle_configuration(Bucket="iotile-cloud-streamers")["Rules"]
    }
    assert {"iotile-deploy-dev-expire-errors", "iotile-deploy-prod-expire-errors", "keep-me"} <= ids
    assert changed(converge(dev, "s3").resources) == []
    assert changed(converge(prod, "s3").resources) == []


def test_dry_run_plans_everything_and_mutates_nothing(make_stage, call_log) -> None:
    stage = make_stage("dev", read_only=True, log=call_log)

    outcome = converge(stage, "s3", dry_run=True)

    assert operations(outcome.resources).count("CreateBucket") == len(BUCKETS)
    assert call_log.mutating == []
    assert outcome.calls == 0
    assert stage.client("s3").list_buckets()["Buckets"] == []


def test_bucket_outside_us_east_1_names_its_region(make_stage, config_copy) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", "region: eu-west-1\n"))

    plan = s3.plan(stage)

    create = next(s for r in plan for s in r.steps if s.operation == "CreateBucket")
    assert create.params["CreateBucketConfiguration"] == {"LocationConstraint": "eu-west-1"}


def _policy(stage: Stage, bucket: str) -> dict:
    return json.loads(stage.client("s3").get_bucket_policy(Bucket=bucket)["Policy"])


def _grant(sid: str | None, action: str) -> dict:
    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": action,
        "Resource": "arn:aws:s3:::iotile-cloud-reports/*",
    }
    return {"Sid": sid, **statement} if sid else statement


def test_hand_made_policy_statement_is_drift_and_goes_other_stages_stay(make_stage, call_log) -> None:
    dev = make_stage("dev", log=call_log)
    converge(dev, "s3")
    bucket = "iotile-cloud-reports"
    prods = _grant("iotile-deploy-prod-read-reports", "s3:GetObject")
    policy = _policy(dev, bucket)
    policy["Statement"] += [prods, _grant("ReadForPartner", "s3:GetObject"), _grant(None, "s3:PutObject")]
    dev.client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))

    (reports,) = [r for r in s3.plan(dev) if r.name == bucket]

    assert reports.state == "drifted"
    assert reports.drift == (
        "bucket policy has a statement not managed here: ReadForPartner, "
        'Allow "s3:PutObject" for {"AWS":"arn:aws:iam::123456789012:root"} (no Sid)',
    )
    repaired = converge(dev, "s3")
    assert operations(repaired.resources) == ["PutBucketPolicy"]
    assert {s["Sid"] for s in _policy(dev, bucket)["Statement"]} == {
        "iotile-deploy-prod-read-reports",
        s3.TLS_ONLY_SID,
    }
    call_log.clear()
    again = converge(dev, "s3")
    assert changed(again.resources) == [] and again.calls == 0
    assert call_log.mutating == []


def test_policy_statements_a_stage_no_longer_wants_go_and_only_its_own(make_stage) -> None:
    dev, prod = make_stage("dev"), make_stage("prod")
    converge(dev, "s3")
    bucket = "iotile-cloud-reports"
    policy = _policy(dev, bucket)
    policy["Statement"] += [_grant("iotile-deploy-dev-retired", "s3:GetObject")]
    dev.client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))

    assert bucket not in changed(converge(prod, "s3").resources)
    drifted = converge(dev, "s3")

    assert operations(drifted.resources) == ["PutBucketPolicy"]
    assert drifted.resources[2].drift == ("managed policy statements differ from config",)
    assert [s["Sid"] for s in _policy(dev, bucket)["Statement"]] == [s3.TLS_ONLY_SID]


def test_lone_statement_object_in_a_policy_is_read_as_a_list(dev: Stage) -> None:
    converge(dev, "s3")
    lone = {"Version": "2012-10-17", "Statement": s3.tls_only_statement("iotile-cloud-reports")}
    dev.client("s3").put_bucket_policy(Bucket="iotile-cloud-reports", Policy=json.dumps(lone))

    assert s3.plan_policy(dev, "iotile-cloud-reports", lone) is None
    assert changed(converge(dev, "s3").resources) == []
