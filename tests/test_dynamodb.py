"""DynamoDB planner against moto: tables, index, encryption, PITR, TTL, autoscaling, drift repaired."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from deploy.areas import dynamodb
from deploy.plan import Call, Wait
from deploy.stage import Stage
from tests.helpers import changed, converge, operations

WORKER_LOGS = "iotile-worker-logs-dev"
FILTER_LOG = "iotile-filter-log-dev"
ON_DEMAND = "dynamodb:\n  capacity_mode: on-demand\n"


def table(stage: Stage, name: str) -> dict[str, Any]:
    return stage.client("dynamodb").describe_table(TableName=name)["Table"]


def targets(stage: Stage) -> dict[tuple[str, str], tuple[int, int]]:
    found = stage.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="dynamodb")
    return {
        (t["ResourceId"], t["ScalableDimension"]): (t["MinCapacity"], t["MaxCapacity"])
        for t in found["ScalableTargets"]
    }


def policies(stage: Stage) -> dict[tuple[str, str], dict[str, Any]]:
    found = stage.client("application-autoscaling").describe_scaling_policies(ServiceNamespace="dynamodb")
    return {(p["ResourceId"], p["ScalableDimension"]): p for p in found["ScalingPolicies"]}


def steps_of(outcome, name: str) -> list[Call]:
    resource = next(r for r in outcome.resources if r.name == name)
    return [step for step in resource.steps if isinstance(step, Call)]


def test_creates_tables_with_keys_index_encryption_and_protection(make_stage) -> None:
    stage = make_stage("dev")

    outcome = converge(stage, "dynamodb")

    assert [r.name for r in outcome.resources] == [WORKER_LOGS, FILTER_LOG]
    default_key = stage.client("kms").describe_key(KeyId="alias/aws/dynamodb")["KeyMetadata"]["Arn"]
    expected = {
        WORKER_LOGS: ("task_id", "action-started-index", "action", "started_at"),
        FILTER_LOG: ("filter_run_id", "target-timestamp-index", "target_slug", "timestamp"),
    }
    for name, (hash_key, index_name, index_hash, index_range) in expected.items():
        found = table(stage, name)
        assert found["KeySchema"] == [{"AttributeName": hash_key, "KeyType": "HASH"}]
        types = {a["AttributeName"]: a["AttributeType"] for a in found["AttributeDefinitions"]}
        assert types == {hash_key: "S", index_hash: "S", index_range: "S"}
        [index] = found["GlobalSecondaryIndexes"]
        assert index["IndexName"] == index_name
        assert index["KeySchema"] == [
            {"AttributeName": index_hash, "KeyType": "HASH"},
            {"AttributeName": index_range, "KeyType": "RANGE"},
        ]
        assert index["Projection"] == {"ProjectionType": "ALL"}
        assert found["SSEDescription"] == {
            "Status": "ENABLED",
            "SSEType": "KMS",
            "KMSMasterKeyArn": default_key,
        }
        assert found["DeletionProtectionEnabled"] is True
        assert found["BillingModeSummary"]["BillingMode"] == "PROVISIONED"
        assert found["ProvisionedThroughput"]["ReadCapacityUnits"] == 5
        assert index["ProvisionedThroughput"] == {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        backups = stage.client("dynamodb").describe_continuous_backups(TableName=name)
        pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
        assert pitr["PointInTimeRecoveryStatus"] == "ENABLED"
        tags = stage.client("dynamodb").list_tags_of_resource(ResourceArn=found["TableArn"])["Tags"]
        assert {t["Key"]: t["Value"] for t in tags} == stage.tags(name)
    ttl = stage.client("dynamodb").describe_time_to_live(TableName=WORKER_LOGS)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    no_ttl = stage.client("dynamodb").describe_time_to_live(TableName=FILTER_LOG)["TimeToLiveDescription"]
    assert no_ttl["TimeToLiveStatus"] == "DISABLED"


def test_autoscaling_of_tables_and_indexes_after_waiting_for_active(make_stage) -> None:
    stage = make_stage("dev")

    [worker_logs, _] = converge(stage, "dynamodb").resources

    kinds = [s.operation if isinstance(s, Call) else "Wait" for s in worker_logs.steps[:4]]
    assert kinds == ["CreateTable", "Wait", "UpdateContinuousBackups", "UpdateTimeToLive"]
    wait = worker_logs.steps[1]
    assert isinstance(wait, Wait) and wait.ready == {"ACTIVE"}
    assert wait.probe(stage) == "ACTIVE"
    assert dynamodb.table_status(stage, "no-such-table") == "NOT_FOUND"

    config = stage.config.dynamodb
    wanted = {}
    for resource in (
        f"table/{WORKER_LOGS}",
        f"table/{WORKER_LOGS}/index/action-started-index",
        f"table/{FILTER_LOG}",
        f"table/{FILTER_LOG}/index/target-timestamp-index",
    ):
        level = "index" if "/index/" in resource else "table"
        wanted[(resource, f"dynamodb:{level}:ReadCapacityUnits")] = config.read_capacity
        wanted[(resource, f"dynamodb:{level}:WriteCapacityUnits")] = config.write_capacity
    assert targets(stage) == {key: (c.min, c.max) for key, c in wanted.items()}
    found = policies(stage)
    assert set(found) == set(wanted)
    for (_, dimension), policy in found.items():
        assert policy["PolicyType"] == "TargetTrackingScaling"
        tracking = policy["TargetTrackingScalingPolicyConfiguration"]
        unit = "Read" if "Read" in dimension else "Write"
        assert tracking["PredefinedMetricSpecification"] == {
            "PredefinedMetricType": f"DynamoDB{unit}CapacityUtilization"
        }
        assert tracking["TargetValue"] == config.read_capacity.target


def test_second_run_and_dry_run_make_no_mutating_call(make_stage, call_log) -> None:
    preview = converge(make_stage("dev", read_only=True, log=call_log), "dynamodb", dry_run=True)
    assert operations(preview.resources, WORKER_LOGS) == [
        "CreateTable",
        "UpdateContinuousBackups",
        "UpdateTimeToLive",
        *["RegisterScalableTarget", "PutScalingPolicy"] * 4,
    ]
    assert operations(preview.resources, FILTER_LOG)[:2] == ["CreateTable", "UpdateContinuousBackups"]
    assert call_log.mutating == []

    stage = make_stage("dev", log=call_log)
    converge(stage, "dynamodb")
    call_log.clear()
    again = converge(stage, "dynamodb")
    assert changed(again.resources) == []
    assert [r.state for r in again.resources] == ["present", "present"]
    assert call_log.mutating == []


def test_pitr_and_ttl_turned_off_by_hand_are_turned_back_on(make_stage, call_log, emulator_clock) -> None:
    stage = make_stage("dev", log=call_log)
    converge(stage, "dynamodb")
    client = stage.client("dynamodb")
    emulator_clock.advance(3600)  # AWS takes one TTL change an hour: the hand change comes later
    client.update_continuous_backups(
        TableName=WORKER_LOGS, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False}
    )
    client.update_time_to_live(
        TableName=WORKER_LOGS, TimeToLiveSpecification={"Enabled": False, "AttributeName": "expires_at"}
    )
    call_log.clear()
    emulator_clock.advance(3600)

    drifted = converge(stage, "dynamodb")

    assert changed(drifted.resources) == [WORKER_LOGS]
    assert call_log.mutating == [
        ("dynamodb", "UpdateContinuousBackups"),
        ("dynamodb", "UpdateTimeToLive"),
    ]
    backups = client.describe_continuous_backups(TableName=WORKER_LOGS)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    ttl = client.describe_time_to_live(TableName=WORKER_LOGS)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"
    assert changed(converge(stage, "dynamodb").resources) == []


def test_scaling_range_and_target_changed_by_hand_are_set_back(make_stage) -> None:
    stage = make_stage("dev")
    converge(stage, "dynamodb")
    scaling = stage.client("application-autoscaling")
    table_reads = (f"table/{WORKER_LOGS}", "dynamodb:table:ReadCapacityUnits")
    index_writes = (f"table/{FILTER_LOG}/index/target-timestamp-index", "dynamodb:index:WriteCapacityUnits")
    scaling.register_scalable_target(
        ServiceNamespace="dynamodb",
        ResourceId=table_reads[0],
        ScalableDimension=table_reads[1],
        MinCapacity=1,
        MaxCapacity=2,
    )
    scaling.put_scaling_policy(
        PolicyName="iotile-deploy-write-capacity-utilization",
        ServiceNamespace="dynamodb",
        ResourceId=index_writes[0],
        ScalableDimension=index_writes[1],
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 30.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "DynamoDBWriteCapacityUtilization"},
        },
    )

    drifted = converge(stage, "dynamodb")

    [register] = steps_of(drifted, WORKER_LOGS)
    assert register.operation == "RegisterScalableTarget"
    assert register.params["ResourceId"] == table_reads[0]
    [put] = steps_of(drifted, FILTER_LOG)
    assert put.operation == "PutScalingPolicy"
    assert put.params["ResourceId"] == index_writes[0]
    assert targets(stage)[table_reads] == (5, 50)
    tracking = policies(stage)[index_writes]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 70
    assert changed(converge(stage, "dynamodb").resources) == []


def test_deletion_protection_and_tags_changed_by_hand_are_set_back(make_stage) -> None:
    stage = make_stage("dev")
    converge(stage, "dynamodb")
    client = stage.client("dynamodb")
    arn = table(stage, FILTER_LOG)["TableArn"]
    client.update_table(TableName=FILTER_LOG, DeletionProtectionEnabled=False)
    client.untag_resource(ResourceArn=arn, TagKeys=["Stage"])
    client.tag_resource(ResourceArn=arn, Tags=[{"Key": "Owner", "Value": "ops"}])

    drifted = converge(stage, "dynamodb")

    steps = steps_of(drifted, FILTER_LOG)
    assert [s.operation for s in steps] == ["UpdateTable", "TagResource"]
    assert steps[0].params == {"TableName": FILTER_LOG, "DeletionProtectionEnabled": True}
    assert steps[1].params["Tags"] == [{"Key": "Stage", "Value": "dev"}]
    assert table(stage, FILTER_LOG)["DeletionProtectionEnabled"] is True
    tags = {t["Key"]: t["Value"] for t in client.list_tags_of_resource(ResourceArn=arn)["Tags"]}
    assert tags == {**stage.tags(FILTER_LOG), "Owner": "ops"}  # a hand-made tag stays
    assert changed(converge(stage, "dynamodb").resources) == []


def test_on_demand_from_config(make_stage, config_copy) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", ON_DEMAND))

    outcome = converge(stage, "dynamodb")

    create = steps_of(outcome, WORKER_LOGS)[0]
    assert "ProvisionedThroughput" not in create.params
    for name in (WORKER_LOGS, FILTER_LOG):
        assert table(stage, name)["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert targets(stage) == {}
    assert changed(converge(stage, "dynamodb").resources) == []


def test_switching_to_on_demand_drops_autoscaling_and_back(make_stage, config_copy, call_log) -> None:
    converge(make_stage("dev"), "dynamodb")
    on_demand = make_stage("dev", config_dir=config_copy("dev", ON_DEMAND), log=call_log)

    switched = converge(on_demand, "dynamodb")

    assert operations(switched.resources, WORKER_LOGS) == ["DeregisterScalableTarget"] * 4 + ["UpdateTable"]
    assert steps_of(switched, WORKER_LOGS)[-1].params == {
        "TableName": WORKER_LOGS,
        "BillingMode": "PAY_PER_REQUEST",
    }
    assert table(on_demand, FILTER_LOG)["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert targets(on_demand) == {}
    call_log.clear()
    assert changed(converge(on_demand, "dynamodb").resources) == []
    assert call_log.mutating == []

    provisioned = make_stage("dev")
    back = converge(provisioned, "dynamodb")

    update = steps_of(back, WORKER_LOGS)[0]
    assert update.operation == "UpdateTable"
    assert update.params["BillingMode"] == "PROVISIONED"
    assert update.params["GlobalSecondaryIndexUpdates"] == [
        {
            "Update": {
                "IndexName": "action-started-index",
                "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
            }
        }
    ]
    assert len(targets(provisioned)) == 8
    assert changed(converge(provisioned, "dynamodb").resources) == []


def test_capacity_and_key_from_config(make_stage, config_copy) -> None:
    config = config_copy(
        "dev",
        "dynamodb:\n"
        "  kms_key: alias/iotile-dynamodb\n"
        "  read_capacity: {min: 2, max: 20, target: 50}\n"
        "  point_in_time_recovery: false\n",
    )
    stage = make_stage("dev", config_dir=config)
    key = stage.client("kms").create_key()["KeyMetadata"]
    stage.client("kms").create_alias(AliasName="alias/iotile-dynamodb", TargetKeyId=key["KeyId"])

    outcome = converge(stage, "dynamodb")

    create = steps_of(outcome, WORKER_LOGS)[0]
    assert create.params["SSESpecification"] == {
        "Enabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": "alias/iotile-dynamodb",
    }
    assert "UpdateContinuousBackups" not in operations(outcome.resources)
    assert table(stage, WORKER_LOGS)["ProvisionedThroughput"]["ReadCapacityUnits"] == 2
    found = targets(stage)
    assert found[(f"table/{WORKER_LOGS}", "dynamodb:table:ReadCapacityUnits")] == (2, 20)
    assert found[(f"table/{WORKER_LOGS}", "dynamodb:table:WriteCapacityUnits")] == (5, 50)
    policy = policies(stage)[(f"table/{FILTER_LOG}", "dynamodb:table:ReadCapacityUnits")]
    assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 50
    assert changed(converge(stage, "dynamodb").resources) == []


def test_adopts_a_hand_made_table_without_index_or_settings(make_stage) -> None:
    stage = make_stage("dev")
    stage.client("dynamodb").create_table(
        TableName=WORKER_LOGS,
        AttributeDefinitions=[{"AttributeName": "task_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "task_id", "KeyType": "HASH"}],
        BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 1, "WriteCapacityUnits": 1},
        SSESpecification={"Enabled": True, "SSEType": "KMS"},
    )

    outcome = converge(stage, "dynamodb")

    steps = steps_of(outcome, WORKER_LOGS)
    assert [s.operation for s in steps[:5]] == [
        "UpdateTable",  # the index
        "UpdateTable",  # deletion protection
        "UpdateContinuousBackups",
        "UpdateTimeToLive",
        "TagResource",
    ]
    create = steps[0].params["GlobalSecondaryIndexUpdates"][0]["Create"]
    assert create["IndexName"] == "action-started-index"
    [index] = table(stage, WORKER_LOGS)["GlobalSecondaryIndexes"]
    assert index["KeySchema"][1] == {"AttributeName": "started_at", "KeyType": "RANGE"}
    assert table(stage, WORKER_LOGS)["DeletionProtectionEnabled"] is True
    assert changed(converge(stage, "dynamodb").resources) == []


def test_unencrypted_table_gets_kms_and_other_keys_are_reported_not_recreated(make_stage) -> None:
    stage = make_stage("dev")
    stage.client("dynamodb").create_table(
        TableName=FILTER_LOG,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )

    plan = dynamodb.plan(make_stage("dev", read_only=True))

    [filter_log] = [r for r in plan if r.name == FILTER_LOG]
    assert filter_log.state == "drifted"
    assert any("table key differs" in reason for reason in filter_log.drift)
    sse = [s for s in filter_log.steps if isinstance(s, Call) and "SSESpecification" in s.params]
    assert [s.params["SSESpecification"] for s in sse] == [{"Enabled": True, "SSEType": "KMS"}]
    assert not any(s.operation in ("CreateTable", "DeleteTable") for s in sse)
    assert "CreateTable" not in operations([filter_log])

    converge(stage, "dynamodb")

    managed_key = stage.client("kms").describe_key(KeyId="alias/aws/dynamodb")["KeyMetadata"]["Arn"]
    assert table(stage, FILTER_LOG)["SSEDescription"] == {
        "Status": "ENABLED",
        "SSEType": "KMS",
        "KMSMasterKeyArn": managed_key,
    }
    assert table(stage, FILTER_LOG)["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    again = converge(stage, "dynamodb")
    assert changed(again.resources) == []


def test_a_new_ttl_attribute_turns_the_old_one_off_then_waits_an_hour(
    make_stage, config_copy, emulator_clock, call_log
) -> None:
    """AWS refuses a second UpdateTimeToLive on a table for about an hour (the emulator too)."""
    stage = make_stage("dev")
    converge(stage, "dynamodb")
    emulator_clock.advance(3600)
    renamed = make_stage(
        "dev", config_dir=config_copy("dev", "dynamodb:\n  ttl_attribute: purge_at\n"), log=call_log
    )

    first = converge(renamed, "dynamodb")

    [ttl_call] = [s for s in steps_of(first, WORKER_LOGS) if s.operation == "UpdateTimeToLive"]
    assert ttl_call.params["TimeToLiveSpecification"] == {"Enabled": False, "AttributeName": "expires_at"}
    assert "rerun after about an hour" in ttl_call.reason
    client = renamed.client("dynamodb")
    ttl = client.describe_time_to_live(TableName=WORKER_LOGS)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "DISABLED"

    emulator_clock.advance(3600)
    second = converge(renamed, "dynamodb")
    [ttl_call] = [s for s in steps_of(second, WORKER_LOGS) if s.operation == "UpdateTimeToLive"]
    assert ttl_call.params["TimeToLiveSpecification"] == {"Enabled": True, "AttributeName": "purge_at"}
    ttl = client.describe_time_to_live(TableName=WORKER_LOGS)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "purge_at"}
    call_log.clear()
    assert changed(converge(renamed, "dynamodb").resources) == [] and call_log.mutating == []


def test_ttl_still_switching_is_left_alone() -> None:
    from deploy.areas.dynamodb import TableSteps, plan_ttl

    spec = SimpleNamespace(ttl_attribute="purge_at", name=WORKER_LOGS)
    for status in ("ENABLING", "DISABLING"):
        state = SimpleNamespace(
            exists=True, status="ACTIVE", ttl={"TimeToLiveStatus": status, "AttributeName": "expires_at"}
        )
        out = TableSteps(spec, state)
        plan_ttl(out, state)
        assert out.steps == [], status


def test_point_in_time_recovery_refused_right_after_create_is_retried(make_stage, monkeypatch) -> None:
    """AWS may refuse PITR for a while after CreateTable; the emulator refuses it for a second."""
    from deploy.emulator import strict

    monkeypatch.setattr(strict, "PITR_UNAVAILABLE_SECONDS", 1.5)
    stage = make_stage("dev")

    outcome = converge(stage, "dynamodb")

    assert "UpdateContinuousBackups" in [s.operation for s in steps_of(outcome, WORKER_LOGS)]
    backups = stage.client("dynamodb").describe_continuous_backups(TableName=WORKER_LOGS)
    assert (
        backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"]
        == "ENABLED"
    )
