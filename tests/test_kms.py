"""KMS planner against moto: the notifications key, its policy and rotation, resume and drift repaired."""

from __future__ import annotations

import json

import pytest

from deploy.areas import kms
from deploy.stage import Stage
from tests.helpers import changed, converge, operations

ALIAS = "alias/iotile-cloud-notifications"
SERVICES = [
    "cloudwatch.amazonaws.com",
    "events.amazonaws.com",
    "s3.amazonaws.com",
    "ses.amazonaws.com",
]


@pytest.fixture
def dev(make_stage, call_log) -> Stage:
    return make_stage("dev", log=call_log)


def key_id(stage: Stage, alias: str = ALIAS) -> str:
    return stage.client("kms").describe_key(KeyId=alias)["KeyMetadata"]["KeyId"]


def policy(stage: Stage) -> dict:
    return json.loads(stage.client("kms").get_key_policy(KeyId=key_id(stage), PolicyName="default")["Policy"])


def test_creates_a_customer_managed_key_with_rotation_and_a_policy_for_aws_services(dev: Stage) -> None:
    outcome = converge(dev, "kms")

    assert operations(outcome.resources) == ["CreateKey", "CreateAlias", "EnableKeyRotation"]
    client = dev.client("kms")
    metadata = client.describe_key(KeyId=ALIAS)["KeyMetadata"]
    assert metadata["KeyManager"] == "CUSTOMER"
    assert metadata["KeySpec"] == "SYMMETRIC_DEFAULT" and metadata["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert metadata["KeyState"] == "Enabled"
    assert client.get_key_rotation_status(KeyId=metadata["KeyId"])["KeyRotationEnabled"] is True
    statements = {s["Sid"]: s for s in policy(dev)["Statement"]}
    root = statements[kms.ROOT_SID]
    assert root["Principal"] == {"AWS": f"arn:aws:iam::{dev.account_id}:root"}
    assert (root["Action"], root["Resource"], root["Effect"]) == ("kms:*", "*", "Allow")
    services = statements[kms.SERVICES_SID]
    assert sorted(services["Principal"]["Service"]) == SERVICES
    assert sorted(services["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert services["Condition"] == {
        "StringEquals": {"aws:SourceAccount": dev.account_id},
        "StringLike": {kms.SNS_CONTEXT: f"arn:aws:sns:us-east-1:{dev.account_id}:*"},
    }
    tags = {t["TagKey"]: t["TagValue"] for t in client.list_resource_tags(KeyId=metadata["KeyId"])["Tags"]}
    assert tags["Stage"] == "shared" and tags[kms.KEY_TAG] == "notifications"
    assert tags["ManagedBy"] == "iotile-deploy"


def test_second_run_and_dry_run_make_no_mutating_call(make_stage, call_log) -> None:
    preview = converge(make_stage("dev", read_only=True, log=call_log), "kms", dry_run=True)
    assert operations(preview.resources) == ["CreateKey", "CreateAlias", "EnableKeyRotation"]
    assert call_log.mutating == []

    stage = make_stage("dev", log=call_log)
    converge(stage, "kms")
    call_log.clear()
    second = converge(stage, "kms")
    assert changed(second.resources) == []
    assert second.resources[0].state == "present"
    assert call_log.mutating == []


def test_a_run_that_died_before_the_alias_resumes_with_its_own_key(dev: Stage) -> None:
    spec = kms.key_specs(dev)[0]
    client = dev.client("kms")
    elsewhere = {**spec.tags, "Project": "someone-else"}
    client.create_key(Tags=[{"TagKey": k, "TagValue": v} for k, v in elsewhere.items()])
    orphan = client.create_key(Tags=[{"TagKey": k, "TagValue": v} for k, v in spec.tags.items()])
    orphan_id = orphan["KeyMetadata"]["KeyId"]

    resumed = converge(dev, "kms")

    steps = operations(resumed.resources)
    assert "CreateKey" not in steps
    assert steps[0] == "CreateAlias"
    assert key_id(dev) == orphan_id
    assert len(client.list_keys()["Keys"]) == 2, "no second key made"
    assert changed(converge(dev, "kms").resources) == []


def test_policy_changed_by_hand_is_put_back_alone(dev: Stage) -> None:
    converge(dev, "kms")
    wanted = policy(dev)
    narrowed = {**wanted, "Statement": wanted["Statement"][:1]}
    dev.client("kms").put_key_policy(KeyId=key_id(dev), PolicyName="default", Policy=json.dumps(narrowed))

    drifted = converge(dev, "kms")

    assert operations(drifted.resources) == ["PutKeyPolicy"]
    assert drifted.resources[0].drift == ("key policy differs from config",)
    assert policy(dev) == wanted


def test_same_policy_in_another_shape_is_not_drift(dev: Stage) -> None:
    converge(dev, "kms")
    reshaped = policy(dev)
    reshaped["Statement"].reverse()
    for statement in reshaped["Statement"]:
        statement["Action"] = (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"][::-1]
        )
        statement["Resource"] = ["*"]
    services = reshaped["Statement"][0]
    services["Principal"]["Service"] = services["Principal"]["Service"][::-1]
    dev.client("kms").put_key_policy(
        KeyId=key_id(dev), PolicyName="default", Policy=json.dumps(reshaped, indent=4)
    )

    assert changed(converge(dev, "kms").resources) == []


def test_rotation_off_key_disabled_and_deletion_scheduled_are_each_undone(dev: Stage) -> None:
    converge(dev, "kms")
    client = dev.client("kms")
    client.disable_key_rotation(KeyId=key_id(dev))
    assert operations(converge(dev, "kms").resources) == ["EnableKeyRotation"]
    assert client.get_key_rotation_status(KeyId=key_id(dev))["KeyRotationEnabled"] is True

    client.disable_key(KeyId=key_id(dev))
    assert operations(converge(dev, "kms").resources) == ["EnableKey"]

    client.schedule_key_deletion(KeyId=key_id(dev), PendingWindowInDays=7)
    rescued = converge(dev, "kms")

    assert operations(rescued.resources) == ["CancelKeyDeletion", "EnableKey"]
    assert rescued.resources[0].drift == ("key is scheduled for deletion",)
    assert client.describe_key(KeyId=ALIAS)["KeyMetadata"]["KeyState"] == "Enabled"
    assert changed(converge(dev, "kms").resources) == []


def test_service_principals_and_alias_come_from_config(make_stage, config_copy) -> None:
    text = (
        "kms:\n  notifications:\n    alias: alias/iotile-{stage}-alerts\n"
        "    service_principals: [ses.amazonaws.com]\n"
    )
    stage = make_stage("dev", config_dir=config_copy("dev", text))

    converge(stage, "kms")

    assert kms.key_alias(stage) == "alias/iotile-dev-alerts"
    client = stage.client("kms")
    found = client.describe_key(KeyId="alias/iotile-dev-alerts")["KeyMetadata"]["KeyId"]
    statements = {
        s["Sid"]: s
        for s in json.loads(client.get_key_policy(KeyId=found, PolicyName="default")["Policy"])["Statement"]
    }
    assert statements[kms.SERVICES_SID]["Principal"]["Service"] == ["ses.amazonaws.com"]
    tags = {t["TagKey"]: t["TagValue"] for t in client.list_resource_tags(KeyId=found)["Tags"]}
    assert tags["Stage"] == "dev"


def test_sns_topics_are_encrypted_with_this_key(make_stage) -> None:
    stage = make_stage("dev")
    assert stage.config.sns.kms_key == kms.key_alias(stage)
