"""Redshift planner against moto: encrypted private clusters, password kept out of every output,
drift repaired in place, the time series cluster only when enabled, busy clusters only awaited."""

from __future__ import annotations

import json
from typing import Any

import pytest

from deploy.areas import network, redshift
from deploy.plan import Wait
from deploy.report import Reporter
from deploy.stack import converge_areas
from deploy.stage import Stage
from tests.helpers import changed, converge, operations

STREAM = "iotile-stream-data-dev"
TIMESERIES = "iotile-timeseries-dev"
TIMESERIES_ON = "redshift:\n  timeseries:\n    enabled: true\n"


def cluster(stage: Stage, identifier: str = STREAM) -> dict[str, Any]:
    return stage.client("redshift").describe_clusters(ClusterIdentifier=identifier)["Clusters"][0]


def identifiers(stage: Stage) -> list[str]:
    return sorted(c["ClusterIdentifier"] for c in stage.client("redshift").describe_clusters()["Clusters"])


def secret(stage: Stage, name: str) -> str:
    parameter = f"{stage.config.secrets.prefix}/{name}"
    return stage.client("ssm").get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]


def moto_cluster(stage: Stage, identifier: str = STREAM) -> Any:
    from moto.redshift.models import redshift_backends

    return redshift_backends[stage.account_id][stage.region].clusters[identifier]


def ready(stage: Stage) -> None:
    """What the earlier waves make: the data security group and the cluster subnet group."""
    converge(stage, "network")


@pytest.fixture
def dev(make_stage) -> Stage:
    stage = make_stage("dev")
    ready(stage)
    return stage


def assert_secure(stage: Stage, identifier: str) -> None:
    found = cluster(stage, identifier)
    data_group = network.security_group_id(stage, stage.config.network.data_security_group)
    assert found["Encrypted"] is True
    assert found["PubliclyAccessible"] is False
    assert found["EnhancedVpcRouting"] is True
    assert found["ClusterSubnetGroupName"] == stage.config.network.redshift_subnet_group
    assert [g["VpcSecurityGroupId"] for g in found["VpcSecurityGroups"]] == [data_group]
    role = f"arn:aws:iam::{stage.account_id}:role/{stage.config.iam.redshift_role}"
    assert [r["IamRoleArn"] for r in found["IamRoles"]] == [role]
    assert found["AutomatedSnapshotRetentionPeriod"] == stage.config.redshift.snapshot_retention_days


def test_creates_the_stream_data_cluster_encrypted_private_in_the_data_group(dev: Stage) -> None:
    outcome = converge(dev, "redshift")

    assert [(r.name, r.state) for r in outcome.resources] == [(STREAM, "missing")]
    assert identifiers(dev) == [STREAM]  # time series is off by default
    assert_secure(dev, STREAM)
    found, config = cluster(dev), dev.config.redshift.stream_data
    assert (found["NodeType"], found["NumberOfNodes"]) == (config.node_type, config.nodes)
    assert (found["DBName"], found["MasterUsername"]) == (config.database, config.master_username)
    assert {t["Key"]: t["Value"] for t in found["Tags"]}["Stage"] == "dev"
    password = secret(dev, config.password_secret)
    assert len(password) == redshift.PASSWORD_LENGTH
    assert moto_cluster(dev).master_user_password == password
    address = found["Endpoint"]["Address"]
    assert redshift.endpoint(dev) == f"{address}:5439"
    assert redshift.jdbc_url(dev) == f"jdbc:redshift://{address}:5439/iotile"
    assert redshift.endpoint(dev, "timeseries") is None
    assert redshift.jdbc_url(dev, "timeseries") is None
    assert [r.detail for r in redshift.plan(dev)] == [f"{address}:5439"]


def test_password_appears_in_no_plan_table_or_json(make_stage, capsys) -> None:
    stage = make_stage("dev")
    ready(stage)
    capsys.readouterr()

    shown = converge_areas(stage, [("redshift",)], Reporter(as_json=False), dry_run=False)
    Reporter(as_json=True).outcome(shown.resources, stage="dev", dry_run=False, calls=shown.calls)

    password = secret(stage, "REDSHIFT_PASSWORD")
    output = capsys.readouterr()
    described = json.dumps([s.describe() for r in shown.resources for s in r.steps])
    assert "CreateCluster" in output.out and "CreateCluster" in described
    for text in (output.out, output.err, described):
        assert password not in text
    create = next(s for r in shown.resources for s in r.calls if s.operation == "CreateCluster")
    assert create.shown_params()["MasterUserPassword"] == "********"


def test_second_run_and_dry_run_make_no_mutating_call(make_stage, call_log) -> None:
    preview = converge(make_stage("dev", read_only=True, log=call_log), "redshift", dry_run=True)
    (resource,) = preview.resources
    assert operations(preview.resources) == ["PutParameter", "CreateCluster"]
    assert isinstance(resource.steps[-1], Wait)
    create = resource.steps[1].shown_params()
    assert create["VpcSecurityGroupIds"] == ["<id of security group iotile-cloud-data-dev>"]
    assert create["MasterUserPassword"] == "********"
    assert call_log.mutating == []

    stage = make_stage("dev", log=call_log)
    ready(stage)
    converge(stage, "redshift")
    call_log.clear()
    again = converge(stage, "redshift")
    assert changed(again.resources) == []
    assert [r.state for r in again.resources] == ["present"]
    assert call_log.mutating == []


def test_public_access_and_snapshot_retention_set_back_by_one_modify(dev: Stage, call_log) -> None:
    converge(dev, "redshift")
    dev.client("redshift").modify_cluster(
        ClusterIdentifier=STREAM, PubliclyAccessible=True, AutomatedSnapshotRetentionPeriod=1
    )
    dev.on_call(call_log)

    drifted = converge(dev, "redshift")

    (resource,) = drifted.resources
    assert resource.state == "drifted"
    assert operations(drifted.resources) == ["ModifyCluster"]
    assert resource.calls[0].params == {
        "ClusterIdentifier": STREAM,
        "PubliclyAccessible": False,
        "AutomatedSnapshotRetentionPeriod": 7,
    }
    assert isinstance(resource.steps[1], Wait)
    assert [op for _, op in call_log.mutating] == ["ModifyCluster"]
    assert_secure(dev, STREAM)
    assert changed(converge(dev, "redshift").resources) == []


def test_unencrypted_cluster_is_encrypted_in_place_and_security_groups_restored(dev: Stage) -> None:
    converge(dev, "redshift")
    app_group = network.security_group_id(dev, dev.config.network.app_security_group)
    dev.client("redshift").modify_cluster(
        ClusterIdentifier=STREAM, Encrypted=False, VpcSecurityGroupIds=[app_group]
    )

    drifted = converge(dev, "redshift")

    calls = drifted.resources[0].calls
    assert [c.operation for c in calls] == ["ModifyCluster", "ModifyCluster"]
    assert "security groups differ" in calls[0].reason
    assert calls[1].params == {"ClusterIdentifier": STREAM, "Encrypted": True}
    assert_secure(dev, STREAM)
    assert changed(converge(dev, "redshift").resources) == []


def test_more_nodes_in_config_is_a_resize(make_stage, config_copy) -> None:
    stage = make_stage("dev")
    ready(stage)
    converge(stage, "redshift")
    bigger = make_stage("dev", config_dir=config_copy("dev", "redshift:\n  stream_data:\n    nodes: 4\n"))

    drifted = converge(bigger, "redshift")

    (call,) = drifted.resources[0].calls
    assert call.operation == "ModifyCluster" and "resize" in call.reason
    assert call.params == {
        "ClusterIdentifier": STREAM,
        "ClusterType": "multi-node",
        "NodeType": "ra3.xlplus",
        "NumberOfNodes": 4,
    }
    assert cluster(bigger)["NumberOfNodes"] == 4
    assert changed(converge(bigger, "redshift").resources) == []


def test_missing_copy_role_is_added_to_the_cluster(make_stage, config_copy, call_log) -> None:
    stage = make_stage("dev")
    ready(stage)
    converge(stage, "redshift")
    moved = config_copy("dev", "iam:\n  redshift_role: iotile-redshift-copy-v2-{stage}\n")
    preview_stage = make_stage("dev", read_only=True, log=call_log, config_dir=moved)

    # moto 5.2.5 lacks ModifyClusterIamRoles (NotImplementedError): checked as a plan only.
    preview = converge(preview_stage, "redshift", dry_run=True)

    (call,) = preview.resources[0].calls
    assert call.operation == "ModifyClusterIamRoles"
    assert call.params["AddIamRoles"] == [f"arn:aws:iam::{stage.account_id}:role/iotile-redshift-copy-v2-dev"]
    assert "RemoveIamRoles" not in call.params  # other roles an operator attached stay
    assert call_log.mutating == []


def test_timeseries_cluster_is_managed_only_when_enabled(make_stage, config_copy) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", TIMESERIES_ON))
    ready(stage)

    outcome = converge(stage, "redshift")

    assert [r.name for r in outcome.resources] == [STREAM, TIMESERIES]
    assert identifiers(stage) == [STREAM, TIMESERIES]
    assert_secure(stage, TIMESERIES)
    assert cluster(stage, TIMESERIES)["DBName"] == "timeseries"
    assert moto_cluster(stage, TIMESERIES).master_user_password == secret(
        stage, "TIMESERIES_REDSHIFT_PASSWORD"
    )
    assert redshift.jdbc_url(stage, "timeseries").endswith(":5439/timeseries")


def test_create_timeseries_makes_it_even_when_not_enabled(dev: Stage, call_log) -> None:
    assert [r.name for r in redshift.plan(dev)] == [STREAM]
    assert [(r.name, r.state) for r in redshift.plan_timeseries(dev)] == [(TIMESERIES, "missing")]

    outcome = redshift.converge_timeseries(dev, Reporter(as_json=True), dry_run=False)

    assert outcome.calls == 2  # PutParameter, CreateCluster
    assert identifiers(dev) == [TIMESERIES]
    assert_secure(dev, TIMESERIES)
    dev.on_call(call_log)
    again = redshift.converge_timeseries(dev, Reporter(as_json=True), dry_run=False)
    assert again.calls == 0 and call_log.mutating == []
    assert "create-timeseries" in redshift.collection.task_names


def test_busy_cluster_is_only_awaited(dev: Stage) -> None:
    converge(dev, "redshift")
    moto_cluster(dev).publicly_accessible = True  # drift too: still nothing but the wait
    for busy in ("creating", "modifying", "resizing"):
        moto_cluster(dev).status = busy

        (resource,) = redshift.plan(dev)

        assert resource.state == "pending" and resource.calls == []
        (step,) = resource.steps
        assert isinstance(step, Wait) and step.ready == {"available"}
        assert step.probe(dev) == busy
    moto_cluster(dev).status = "available"
    assert step.probe(dev) == "available"
    assert operations(redshift.plan(dev)) == ["ModifyCluster"]


def test_paused_cluster_is_left_alone(dev: Stage) -> None:
    converge(dev, "redshift")
    dev.client("redshift").pause_cluster(ClusterIdentifier=STREAM)
    moto_cluster(dev).publicly_accessible = True

    (resource,) = redshift.plan(dev)

    assert resource.steps == () and resource.detail.startswith("paused")


def test_kms_key_from_config(make_stage, config_copy) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", "redshift:\n  kms_key: alias/iotile-redshift\n"))
    ready(stage)

    converge(stage, "redshift")

    assert cluster(stage)["KmsKeyId"] == "alias/iotile-redshift"
    moto_cluster(stage).encrypted = False  # the key goes with an encrypt in place as well
    (call,) = redshift.plan(stage)[0].calls
    assert call.params == {
        "ClusterIdentifier": STREAM,
        "Encrypted": True,
        "KmsKeyId": "alias/iotile-redshift",
    }


def test_create_timeseries_task_dry_run_prints_the_plan_as_json(make_stage, capsys) -> None:
    from invoke import Context

    make_stage("dev")  # moto is on

    redshift.create_timeseries(Context(), stage="dev", dry_run=True, json=True)

    printed = json.loads(capsys.readouterr().out)
    assert printed["dry_run"] is True and printed["calls_made"] == 0
    (change,) = printed["changes"]
    assert change["name"] == TIMESERIES
    create = next(s for s in change["steps"] if s.get("operation") == "CreateCluster")
    assert create["params"]["MasterUserPassword"] == "********"
    assert create["params"]["Encrypted"] is True and create["params"]["PubliclyAccessible"] is False
