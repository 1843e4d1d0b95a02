"""RDS planner against moto: an encrypted, private PostgreSQL instance with its parameter group, drift
repaired, a password nobody sees, and the encrypt migration of an unencrypted instance."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import pytest
from rich.console import Console

from deploy.areas import rds
from deploy.errors import ArgumentError, BadInput
from deploy.plan import Wait
from deploy.report import Reporter
from deploy.stack import converge_areas
from deploy.stage import Stage
from tests.helpers import changed, converge, operations

DB = "iotile-cloud-dev"
GROUP = f"parameter-group/{DB}"
COPY = f"{DB}-encrypted"
SUBNET_GROUP = "iotile-cloud-db-dev"
DATA_GROUP = "iotile-cloud-data-dev"
PASSWORD = "/iotile-cloud/dev/RDS_MASTER_PASSWORD"


@pytest.fixture(autouse=True)
def no_default_amis(monkeypatch: pytest.MonkeyPatch) -> None:
    """No machine images needed here; loading moto's thousands of them is most of a test's time."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


def instance(stage: Stage, identifier: str = DB) -> dict[str, Any]:
    return stage.client("rds").describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]


def moto_instance(stage: Stage, identifier: str = DB) -> Any:
    from moto.rds.models import rds_backends

    return rds_backends[stage.account_id][stage.region].databases[identifier]


def data_group_id(stage: Stage) -> str:
    filters = [{"Name": "group-name", "Values": [DATA_GROUP]}]
    return stage.client("ec2").describe_security_groups(Filters=filters)["SecurityGroups"][0]["GroupId"]


def password(stage: Stage) -> str:
    return stage.client("ssm").get_parameter(Name=PASSWORD, WithDecryption=True)["Parameter"]["Value"]


def resource(resources: list[Any], name: str) -> Any:
    (found,) = [r for r in resources if r.name == name]
    return found


def created(make_stage, name: str = "dev", **kwargs: Any) -> Stage:
    stage = make_stage(name, **kwargs)
    converge(stage, "network")
    converge(stage, "rds")
    return stage


def unencrypted_instance(stage: Stage, identifier: str = DB) -> None:
    """What the old scripts made: plain storage, in the stage's network, autoscaling to 200 GiB."""
    client = stage.client("rds")
    client.create_db_parameter_group(
        DBParameterGroupName="legacy-postgres", DBParameterGroupFamily="postgres16", Description="old"
    )
    client.create_db_instance(
        DBInstanceIdentifier=identifier,
        Engine="postgres",
        EngineVersion="16.8",
        DBInstanceClass="db.t4g.large",
        AllocatedStorage=120,
        MaxAllocatedStorage=200,
        StorageType="gp2",
        MasterUsername="iotile",
        MasterUserPassword="legacy-password-1",
        DBSubnetGroupName=SUBNET_GROUP,
        VpcSecurityGroupIds=[data_group_id(stage)],
        DBParameterGroupName="legacy-postgres",
        BackupRetentionPeriod=1,
        PubliclyAccessible=False,
        StorageEncrypted=False,
        Tags=[{"Key": "Owner", "Value": "data-team"}],
    )


# -- create and converge -------------------------------------------------------------------------


def test_creates_encrypted_private_instance_in_the_data_network(make_stage) -> None:
    stage = created(make_stage)

    found = instance(stage)
    config = stage.config.rds
    assert found["Engine"] == "postgres"
    assert found["EngineVersion"] == config.engine_version
    assert found["DBInstanceClass"] == config.instance_class
    assert found["StorageEncrypted"] is True
    assert found["PubliclyAccessible"] is False
    assert found["DeletionProtection"] is True
    assert found["BackupRetentionPeriod"] == config.backup_retention_days >= 7
    assert found["MultiAZ"] is False
    assert found["CopyTagsToSnapshot"] is True
    assert (found["AllocatedStorage"], found["MaxAllocatedStorage"]) == (100, 500)
    assert found["StorageType"] == "gp3"
    assert [g["VpcSecurityGroupId"] for g in found["VpcSecurityGroups"]] == [data_group_id(stage)]
    assert found["DBSubnetGroup"]["DBSubnetGroupName"] == SUBNET_GROUP
    assert [g["DBParameterGroupName"] for g in found["DBParameterGroups"]] == [DB]
    assert (found["DBName"], found["MasterUsername"]) == ("iotile", "iotile")
    tags = {t["Key"]: t["Value"] for t in found["TagList"]}
    assert tags["FinalSnapshot"] == "required" and tags["Stage"] == "dev"
    parameters = stage.client("rds").describe_db_parameters(DBParameterGroupName=DB)["Parameters"]
    assert {p["ParameterName"]: p["ParameterValue"] for p in parameters} == dict(
        config.parameter_group.parameters
    )
    group = stage.client("rds").describe_db_parameter_groups(DBParameterGroupName=DB)["DBParameterGroups"][0]
    assert group["DBParameterGroupFamily"] == "postgres16"
    # The instance was made with the password generated into Parameter Store, and nothing else.
    assert len(password(stage)) == rds.PASSWORD_LENGTH
    assert moto_instance(stage)._master_user_password == password(stage)
    assert rds.endpoint(stage) == f"{found['Endpoint']['Address']}:5432"


def test_prod_is_multi_az_with_two_weeks_of_backups(make_stage) -> None:
    stage = created(make_stage, "prod")

    found = instance(stage, "iotile-cloud-prod")
    assert found["MultiAZ"] is True
    assert found["BackupRetentionPeriod"] == 14
    assert found["DBInstanceClass"] == "db.m6g.large"
    assert found["StorageEncrypted"] is True and found["PubliclyAccessible"] is False


def test_kms_key_from_config_and_a_different_key_is_reported_not_fixed(make_stage, config_copy) -> None:
    config = config_copy("dev", "rds:\n  kms_key: alias/iotile-rds\n")
    stage = make_stage("dev", config_dir=config)
    kms = stage.client("kms")
    key = kms.create_key(Description="rds")["KeyMetadata"]
    kms.create_alias(AliasName="alias/iotile-rds", TargetKeyId=key["KeyId"])
    converge(stage, "network")

    converge(stage, "rds")

    assert instance(stage)["KmsKeyId"] == "alias/iotile-rds"
    # AWS answers the key's ARN where config names an alias: the same key, no drift.
    moto_instance(stage).kms_key_id = key["Arn"]
    assert changed(converge(stage, "rds").resources) == []
    other = kms.create_key(Description="another")["KeyMetadata"]
    moto_instance(stage).kms_key_id = other["Arn"]
    again = resource(converge(stage, "rds").resources, DB)
    assert again.state == "drifted" and again.steps == ()
    assert any("only a restore can change it" in line for line in again.drift)


def test_second_run_and_dry_run_make_no_mutating_call(make_stage, call_log) -> None:
    preview = converge(make_stage("dev", read_only=True, log=call_log), "rds", dry_run=True)
    assert operations(preview.resources, GROUP) == ["CreateDBParameterGroup", "ModifyDBParameterGroup"]
    assert operations(preview.resources, DB) == ["PutParameter", "CreateDBInstance"]
    assert isinstance(resource(preview.resources, DB).steps[-1], Wait)
    assert resource(preview.resources, DB).depends_on == (GROUP,)
    assert call_log.mutating == []

    stage = make_stage("dev", log=call_log)
    converge(stage, "network")
    converge(stage, "rds")
    call_log.clear()
    rerun = converge(stage, "rds")
    assert changed(rerun.resources) == []
    assert [r.state for r in rerun.resources] == ["present", "present"]
    assert call_log.mutating == []


def test_generated_password_never_appears_in_any_output(make_stage, capsys) -> None:
    stage = make_stage("dev")
    converge(stage, "network")
    text = io.StringIO()
    reporter = Reporter(out=Console(file=text, width=300))
    outcome = converge_areas(stage, [("rds",)], reporter, dry_run=False)
    Reporter(as_json=True).outcome(outcome.resources, stage="dev", dry_run=False, calls=outcome.calls)
    reporter.status(outcome.resources)

    secret = password(stage)
    captured = capsys.readouterr()
    described = json.dumps([step.describe() for r in outcome.resources for step in r.steps])
    rows = json.dumps([r.row() for r in outcome.resources])
    assert "CreateDBInstance" in captured.out and "MasterUserPassword" in described
    for output in (text.getvalue(), captured.out, captured.err, described, rows):
        assert secret not in output
    create = next(c for r in outcome.resources for c in r.calls if c.operation == "CreateDBInstance")
    assert create.shown_params()["MasterUserPassword"] == "********"


def test_public_access_turned_on_by_hand_is_turned_off_at_once(make_stage) -> None:
    stage = created(make_stage)
    stage.client("rds").modify_db_instance(
        DBInstanceIdentifier=DB, PubliclyAccessible=True, ApplyImmediately=True
    )

    drifted = converge(stage, "rds")

    assert changed(drifted.resources) == [DB]
    modify, wait = resource(drifted.resources, DB).steps
    assert modify.operation == "ModifyDBInstance"
    assert modify.params == {
        "DBInstanceIdentifier": DB,
        "PubliclyAccessible": False,
        "ApplyImmediately": True,
    }
    assert isinstance(wait, Wait)
    assert instance(stage)["PubliclyAccessible"] is False


def test_safety_settings_apply_now_and_the_class_waits_for_the_maintenance_window(make_stage) -> None:
    stage = created(make_stage)
    stage.client("rds").modify_db_instance(
        DBInstanceIdentifier=DB,
        DBInstanceClass="db.t4g.small",
        BackupRetentionPeriod=1,
        DeletionProtection=False,
        ApplyImmediately=True,
    )

    drifted = converge(stage, "rds")

    calls = resource(drifted.resources, DB).calls
    assert [c.params for c in calls] == [
        {
            "DBInstanceIdentifier": DB,
            "DeletionProtection": True,
            "BackupRetentionPeriod": 7,
            "ApplyImmediately": True,
        },
        {"DBInstanceIdentifier": DB, "DBInstanceClass": "db.t4g.medium", "ApplyImmediately": False},
    ]
    assert "maintenance window" in calls[1].reason
    found = instance(stage)
    assert (found["DeletionProtection"], found["BackupRetentionPeriod"]) == (True, 7)
    assert changed(converge(stage, "rds").resources) == []


def test_major_upgrade_in_config_brings_its_new_parameter_group(make_stage, config_copy) -> None:
    stage = created(make_stage)
    upgrade = (
        'rds:\n  engine_version: "17.2"\n  parameter_group:\n    name: iotile-cloud-dev-pg17\n'
        "    family: postgres17\n    parameters: {work_mem: '8192'}\n"
    )
    upgraded = make_stage("dev", config_dir=config_copy("dev", upgrade))

    outcome = converge(upgraded, "rds")

    new_group = resource(outcome.resources, "parameter-group/iotile-cloud-dev-pg17")
    assert [c.operation for c in new_group.calls] == ["CreateDBParameterGroup", "ModifyDBParameterGroup"]
    (modify,) = resource(outcome.resources, DB).calls
    assert modify.params == {
        "DBInstanceIdentifier": DB,
        "EngineVersion": "17.2",
        "AllowMajorVersionUpgrade": True,
        "DBParameterGroupName": "iotile-cloud-dev-pg17",
        "ApplyImmediately": False,
    }
    found = instance(upgraded)
    assert found["EngineVersion"] == "17.2"
    assert found["DBParameterGroups"][0]["DBParameterGroupName"] == "iotile-cloud-dev-pg17"
    assert changed(rds.plan(upgraded)) == []
    # Back on the old config, only the parameter group moves back: versions are never downgraded.
    (back,) = resource(rds.plan(stage), DB).calls
    assert back.params == {"DBInstanceIdentifier": DB, "DBParameterGroupName": DB, "ApplyImmediately": True}


def test_parameter_changed_by_hand_is_set_back_alone(make_stage) -> None:
    stage = created(make_stage)
    stage.client("rds").modify_db_parameter_group(
        DBParameterGroupName=DB,
        Parameters=[{"ParameterName": "rds.force_ssl", "ParameterValue": "0", "ApplyMethod": "immediate"}],
    )

    drifted = converge(stage, "rds")

    assert changed(drifted.resources) == [GROUP]
    (call,) = resource(drifted.resources, GROUP).calls
    assert call.params["Parameters"] == [
        {"ParameterName": "rds.force_ssl", "ParameterValue": "1", "ApplyMethod": "pending-reboot"}
    ]
    parameters = stage.client("rds").describe_db_parameters(DBParameterGroupName=DB)["Parameters"]
    assert {p["ParameterName"]: p["ParameterValue"] for p in parameters}["rds.force_ssl"] == "1"


def test_dynamic_parameter_applies_immediately() -> None:
    spec = rds.ParameterGroupSpec("pg", "postgres16", {"work_mem": "8192", "shared_buffers": "1000"}, {})
    state = rds.ParameterGroupState(
        True, "postgres16", apply_types={"work_mem": "dynamic", "shared_buffers": "static"}
    )

    (call,) = rds._parameter_calls(spec, state, ["shared_buffers", "work_mem"])

    methods = {p["ParameterName"]: p["ApplyMethod"] for p in call.params["Parameters"]}
    assert methods == {"shared_buffers": "pending-reboot", "work_mem": "immediate"}


def test_instance_still_modifying_gets_only_a_wait(make_stage, config_copy, call_log) -> None:
    config = config_copy("dev", "waits: {poll_seconds: 0.01, timeout_seconds: 5}\n")
    stage = make_stage("dev", config_dir=config, log=call_log)
    converge(stage, "network")
    converge(stage, "rds")
    model = moto_instance(stage)
    model.status = "modifying"
    model.publicly_accessible = True  # not planned while AWS is still working on it

    call_log.clear()
    timer = threading.Timer(0.1, lambda: setattr(model, "status", "available"))
    timer.start()
    pending = converge(stage, "rds")
    timer.join()

    found = resource(pending.resources, DB)
    assert found.state == "pending"
    assert found.calls == [] and [type(s) for s in found.steps] == [Wait]
    assert call_log.mutating == []
    assert operations(converge(stage, "rds").resources) == ["ModifyDBInstance"]


def test_unencrypted_instance_is_reported_with_the_way_out_and_no_call(make_stage) -> None:
    stage = make_stage("dev")
    converge(stage, "network")
    unencrypted_instance(stage)

    status = converge(stage, "rds", dry_run=True)

    found = resource(status.resources, DB)
    assert found.state == "drifted"
    assert "not encrypted: run `inv rds.encrypt --stage dev`" in found.drift
    assert "CreateDBInstance" not in operations(status.resources)
    assert not any("StorageEncrypted" in c.params for c in found.calls)


# -- the encrypt migration -----------------------------------------------------------------------


def test_encrypt_migration_restores_an_encrypted_copy_and_keeps_the_original(
    make_stage, call_log, capsys
) -> None:
    stage = make_stage("dev", log=call_log)
    converge(stage, "network")
    unencrypted_instance(stage)
    source = instance(stage)
    call_log.clear()

    rds.run_encrypt(stage, Reporter(as_json=True))  # the plan_encrypt steps, run by the Executor

    assert [op for _, op in call_log.mutating] == [
        "CreateDBSnapshot",
        "CopyDBSnapshot",
        "RestoreDBInstanceFromDBSnapshot",
        "ModifyDBInstance",
    ]
    copy = instance(stage, COPY)
    key = stage.client("kms").describe_key(KeyId="alias/aws/rds")["KeyMetadata"]["Arn"]
    assert copy["StorageEncrypted"] is True and copy["KmsKeyId"] == key
    for same in ("DBInstanceClass", "StorageType", "AllocatedStorage", "MaxAllocatedStorage", "MultiAZ"):
        assert copy[same] == source[same], same
    assert copy["DBSubnetGroup"]["DBSubnetGroupName"] == SUBNET_GROUP
    assert [g["VpcSecurityGroupId"] for g in copy["VpcSecurityGroups"]] == [data_group_id(stage)]
    assert copy["DBParameterGroups"][0]["DBParameterGroupName"] == "legacy-postgres"
    assert copy["DeletionProtection"] is True and copy["PubliclyAccessible"] is False
    assert copy["BackupRetentionPeriod"] == 7 and copy["CopyTagsToSnapshot"] is True
    assert {"Key": "Owner", "Value": "data-team"} in copy["TagList"]
    assert instance(stage)["StorageEncrypted"] is False  # the original stays, untouched
    snapshots = stage.client("rds").describe_db_snapshots(DBInstanceIdentifier=DB, SnapshotType="manual")
    encrypted = {s["DBSnapshotIdentifier"]: s["Encrypted"] for s in snapshots["DBSnapshots"]}
    assert encrypted == {f"{COPY}-from-{DB}": False, f"{COPY}-encrypted-copy": True}

    report = json.loads(capsys.readouterr().out)
    assert (report["source"], report["target"], report["calls_made"]) == (DB, COPY, 4)
    assert report["endpoint"] == f"{copy['Endpoint']['Address']}:5432"
    point, verify, retire, kept = report["next_steps"]
    assert f"identifier: {COPY}" in point and "config/dev.yaml" in point
    # The source was not made by this tool: its password is not the stored one, and point says so.
    assert "did not generate" in point and "secrets.set RDS_MASTER_PASSWORD" in point
    assert "rds.status" in verify
    assert "--final-db-snapshot-identifier" in retire and DB in retire
    assert f"--region {stage.region}" in retire
    assert f"{COPY}-from-{DB}" in kept
    assert "legacy-password-1" not in json.dumps(report)


def test_encrypt_rerun_continues_from_the_step_an_interrupted_run_reached(make_stage, call_log) -> None:
    stage = make_stage("dev", log=call_log)
    converge(stage, "network")
    unencrypted_instance(stage)
    # A run interrupted once its snapshot was taken.
    before, _ = rds.snapshot_names(DB, COPY)
    stage.client("rds").create_db_snapshot(DBSnapshotIdentifier=before, DBInstanceIdentifier=DB)
    call_log.clear()

    rds.run_encrypt(stage, Reporter(as_json=True))

    assert [op for _, op in call_log.mutating] == [
        "CopyDBSnapshot",
        "RestoreDBInstanceFromDBSnapshot",
        "ModifyDBInstance",
    ]
    call_log.clear()
    assert rds.plan_encrypt(stage, DB, COPY) == []  # done: a rerun has nothing to do
    assert call_log.mutating == []


def test_encrypt_dry_run_shows_every_step_and_changes_nothing(make_stage, call_log, capsys) -> None:
    setup = make_stage("dev")
    converge(setup, "network")
    unencrypted_instance(setup)
    moto_instance(setup).publicly_accessible = True
    stage = make_stage("dev", read_only=True, log=call_log)

    planned = rds.run_encrypt(stage, Reporter(as_json=True), dry_run=True)

    assert [c.operation for c in planned.calls] == [
        "CreateDBSnapshot",
        "CopyDBSnapshot",
        "RestoreDBInstanceFromDBSnapshot",
        "ModifyDBInstance",
    ]
    assert sum(isinstance(s, Wait) for s in planned.steps) == 4
    assert call_log.mutating == []
    report = json.loads(capsys.readouterr().out)
    assert report["dry_run"] is True and report["calls_made"] == 0
    assert len(report["changes"][0]["steps"]) == len(planned.steps)
    assert setup.client("rds").describe_db_snapshots(SnapshotType="manual")["DBSnapshots"] == []
    instances = setup.client("rds").describe_db_instances()["DBInstances"]
    assert [i["DBInstanceIdentifier"] for i in instances] == [DB]
    # The copy is private and protected whatever the source was.
    copy, restore = planned.calls[1], planned.calls[2]
    assert copy.params["KmsKeyId"] == "alias/aws/rds"
    assert restore.params["PubliclyAccessible"] is False
    assert restore.params["DeletionProtection"] is True
    assert restore.params["BackupRetentionPeriod"] == 7


def test_encrypt_refuses_bad_identifiers_an_encrypted_or_missing_source_or_a_taken_target(
    make_stage, call_log
) -> None:
    stage = make_stage("dev", log=call_log)
    with pytest.raises(ArgumentError, match="--target-identifier"):
        rds.plan_encrypt(stage, DB, "bad--name")
    with pytest.raises(ArgumentError, match="--target-identifier"):
        rds.plan_encrypt(stage, DB, DB)
    assert call_log.calls == []  # argument errors come before any AWS call

    converge(stage, "network")
    converge(stage, "rds")
    with pytest.raises(BadInput, match="already encrypted") as encrypted:
        rds.plan_encrypt(stage, DB, COPY)
    assert encrypted.value.exit_code == 2
    with pytest.raises(BadInput, match="does not exist"):
        rds.plan_encrypt(stage, "no-such-db", "no-such-db-encrypted")
    unencrypted_instance(stage, "legacy")
    with pytest.raises(BadInput, match=f"{DB} already exists .* no encrypted copy of legacy"):
        rds.plan_encrypt(stage, "legacy", DB)
