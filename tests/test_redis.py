"""Redis planner against moto: an encrypted replication group with an AUTH token from Parameter
Store that no output shows, failover on prod, drift repaired in place, busy groups only awaited."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from deploy.areas import network, redis
from deploy.plan import Call, Wait
from deploy.report import Reporter
from deploy.stack import converge_areas
from deploy.stage import Stage
from tests.helpers import changed, converge, operations

GROUP = "iotile-redis-dev"


def group(stage: Stage) -> dict[str, Any]:
    name = stage.config.redis.replication_group
    return stage.client("elasticache").describe_replication_groups(ReplicationGroupId=name)[
        "ReplicationGroups"
    ][0]


def moto_group(stage: Stage) -> Any:
    """moto's own record: it keeps what DescribeReplicationGroups does not return (AWS reports those
    per member cluster, which moto does not make for a replication group)."""
    from moto.elasticache.models import elasticache_backends

    backend = elasticache_backends[stage.account_id][stage.region]
    return backend.replication_groups[stage.config.redis.replication_group]


def secret(stage: Stage, name: str = "REDIS_AUTH_TOKEN") -> str:
    parameter = f"{stage.config.secrets.prefix}/{name}"
    return stage.client("ssm").get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]


def ready(stage: Stage) -> None:
    """What the earlier waves make: security and subnet groups, the notifications key and topic."""
    converge(stage, "network", "kms")
    converge(stage, "sns")


def sent_auth_tokens(stage: Stage) -> list[str]:
    """AuthToken of each CreateReplicationGroup the stage sends (moto keeps only AuthTokenEnabled)."""
    sent: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        sent.append(params["AuthToken"])

    stage.client("elasticache").meta.events.register(
        "provide-client-params.elasticache.CreateReplicationGroup", record
    )
    return sent


@pytest.fixture
def dev(make_stage) -> Stage:
    stage = make_stage("dev")
    ready(stage)
    return stage


def assert_secure(stage: Stage) -> None:
    found, stored = group(stage), moto_group(stage)
    config = stage.config.redis
    assert found["AtRestEncryptionEnabled"] is True
    assert found["TransitEncryptionEnabled"] is True
    assert found["AuthTokenEnabled"] is True
    assert found["SnapshotRetentionLimit"] == config.snapshot_retention_days
    assert found["CacheNodeType"] == config.node_type
    assert len(found["MemberClusters"]) == 1 + config.replicas
    data_group = network.security_group_id(stage, stage.config.network.data_security_group)
    assert stored.security_group_ids == [data_group]
    assert stored.cache_subnet_group_name == stage.config.network.cache_subnet_group
    assert stored.notification_topic_arn == stage.arn("sns", f"iotile-cache-events-{stage.name}")
    assert (stored.engine, stored.engine_version, stored.port) == ("redis", config.engine_version, 6379)


def test_creates_an_encrypted_group_with_the_token_from_parameter_store(dev: Stage) -> None:
    sent = sent_auth_tokens(dev)

    outcome = converge(dev, "redis")

    assert [(r.name, r.state) for r in outcome.resources] == [(GROUP, "missing")]
    assert_secure(dev)
    found = group(dev)
    assert (found["AutomaticFailover"], found["MultiAZ"]) == ("disabled", "disabled")
    token = secret(dev)
    assert len(token) == redis.AUTH_TOKEN_LENGTH and token.isalnum()
    assert sent == [token]
    tags = dev.client("elasticache").list_tags_for_resource(ResourceName=found["ARN"])["TagList"]
    assert {t["Key"]: t["Value"] for t in tags}["Stage"] == "dev"
    address = found["NodeGroups"][0]["PrimaryEndpoint"]["Address"]
    assert redis.endpoint(dev) == f"{address}:6379"
    assert [r.detail for r in redis.plan(dev)] == [f"{address}:6379"]


def test_prod_has_automatic_failover_across_zones_and_two_replicas(make_stage) -> None:
    prod = make_stage("prod")
    ready(prod)

    converge(prod, "redis")

    assert_secure(prod)
    found = group(prod)
    assert (found["AutomaticFailover"], found["MultiAZ"]) == ("enabled", "enabled")
    assert len(found["MemberClusters"]) == 3
    assert found["SnapshotRetentionLimit"] == 7


def test_token_appears_in_no_plan_table_or_json(make_stage, capsys) -> None:
    stage = make_stage("dev")
    ready(stage)
    capsys.readouterr()

    shown = converge_areas(stage, [("redis",)], Reporter(as_json=False), dry_run=False)
    Reporter(as_json=True).outcome(shown.resources, stage="dev", dry_run=False, calls=shown.calls)
    Reporter(as_json=False).status(redis.plan(stage))

    token = secret(stage)
    output = capsys.readouterr()
    described = json.dumps([s.describe() for r in shown.resources for s in r.steps])
    assert "CreateReplicationGroup" in output.out and "CreateReplicationGroup" in described
    for text in (output.out, output.err, described):
        assert token not in text
    create = next(s for r in shown.resources for s in r.calls if s.operation == "CreateReplicationGroup")
    assert create.shown_params()["AuthToken"] == "********"


def test_second_run_and_dry_run_make_no_mutating_call(make_stage, call_log) -> None:
    preview = converge(make_stage("dev", read_only=True, log=call_log), "redis", dry_run=True)
    (resource,) = preview.resources
    assert operations(preview.resources) == ["PutParameter", "CreateReplicationGroup"]
    assert isinstance(resource.steps[-1], Wait)
    create = resource.steps[1].shown_params()
    assert create["SecurityGroupIds"] == ["<id of security group iotile-cloud-data-dev>"]
    assert create["AuthToken"] == "********"
    assert call_log.mutating == []

    stage = make_stage("dev", log=call_log)
    ready(stage)
    converge(stage, "redis")
    call_log.clear()
    again = converge(stage, "redis")
    assert changed(again.resources) == []
    assert [r.state for r in again.resources] == ["present"]
    assert call_log.mutating == []


def test_a_token_already_in_parameter_store_is_used_not_replaced(dev: Stage) -> None:
    dev.client("ssm").put_parameter(
        Name="/iotile-cloud/dev/REDIS_AUTH_TOKEN", Value="k" * 30 + "Q7", Type="SecureString"
    )
    sent = sent_auth_tokens(dev)

    outcome = converge(dev, "redis")

    assert operations(outcome.resources) == ["CreateReplicationGroup"]
    assert sent == ["k" * 30 + "Q7"] and secret(dev) == "k" * 30 + "Q7"


def test_snapshot_retention_and_failover_changed_by_hand_are_set_back_by_one_modify(
    dev: Stage, call_log
) -> None:
    converge(dev, "redis")
    dev.client("elasticache").modify_replication_group(
        ReplicationGroupId=GROUP,
        SnapshotRetentionLimit=0,
        AutomaticFailoverEnabled=True,
        MultiAZEnabled=True,
        ApplyImmediately=True,
    )
    dev.on_call(call_log)

    drifted = converge(dev, "redis")

    (resource,) = drifted.resources
    assert resource.state == "drifted"
    (modify,) = resource.calls
    assert modify.operation == "ModifyReplicationGroup"
    assert modify.params == {
        "ReplicationGroupId": GROUP,
        "AutomaticFailoverEnabled": False,
        "MultiAZEnabled": False,
        "SnapshotRetentionLimit": 1,
        "ApplyImmediately": True,
    }
    assert isinstance(resource.steps[-1], Wait)
    assert call_log.mutating == [("elasticache", "ModifyReplicationGroup")]
    found = group(dev)
    assert (found["SnapshotRetentionLimit"], found["AutomaticFailover"], found["MultiAZ"]) == (
        1,
        "disabled",
        "disabled",
    )
    assert changed(converge(dev, "redis").resources) == []


def test_removed_tag_is_added_back_alone(dev: Stage) -> None:
    converge(dev, "redis")
    client = dev.client("elasticache")
    client.remove_tags_from_resource(ResourceName=group(dev)["ARN"], TagKeys=["Stage"])

    drifted = converge(dev, "redis")

    assert operations(drifted.resources) == ["AddTagsToResource"]
    assert drifted.resources[0].calls[0].params["Tags"] == [{"Key": "Stage", "Value": "dev"}]
    tags = client.list_tags_for_resource(ResourceName=group(dev)["ARN"])["TagList"]
    assert {"Key": "Stage", "Value": "dev"} in tags


def test_a_busy_group_is_only_awaited(dev: Stage) -> None:
    converge(dev, "redis")
    moto_group(dev).status = "modifying"
    moto_group(dev).snapshot_retention_limit = 0  # a change AWS is still applying

    (resource,) = redis.plan(dev)

    assert resource.state == "pending"
    (wait,) = resource.steps
    assert isinstance(wait, Wait)
    assert wait.ready == {"available"} and "create-failed" in wait.failed
    assert wait.timeout_seconds == dev.config.redis.wait_minutes * 60
    assert wait.probe(dev) == "modifying"
    moto_group(dev).status = "available"
    assert wait.probe(dev) == "available"


def test_a_rerun_during_creation_waits_instead_of_creating_again(
    make_stage, config_copy, monkeypatch
) -> None:
    quick = config_copy("dev", "waits: {poll_seconds: 0.01, timeout_seconds: 5}\n")
    stage = make_stage("dev", config_dir=quick)
    ready(stage)
    converge(stage, "redis")
    moto_group(stage).status = "creating"
    polled: list[str] = []
    read = redis.probe

    def probe(probed: Stage, name: str) -> str:
        polled.append(read(probed, name))
        if len(polled) == 3:  # AWS finishes while the rerun waits
            moto_group(stage).status = "available"
        return polled[-1]

    monkeypatch.setattr(redis, "probe", probe)
    outcome = converge(stage, "redis")

    assert outcome.calls == 0
    assert [r.state for r in outcome.resources] == ["pending"]
    assert polled == ["creating", "creating", "creating", "available"]


def test_not_encrypted_at_rest_is_reported_not_recreated(dev: Stage) -> None:
    converge(dev, "redis")
    moto_group(dev).at_rest_encryption_enabled = False

    (resource,) = redis.plan(dev)

    assert resource.state == "drifted"
    assert resource.steps == ()
    assert "recreate needed: not encrypted at rest" in resource.drift


def test_kms_key_from_config_is_used_and_matched_by_arn(make_stage, config_copy) -> None:
    with_key = config_copy("dev", "redis:\n  kms_key: alias/iotile-redis\n")
    stage = make_stage("dev", config_dir=with_key)
    ready(stage)
    kms = stage.client("kms")
    key = kms.create_key(Description="redis")["KeyMetadata"]
    kms.create_alias(AliasName="alias/iotile-redis", TargetKeyId=key["KeyId"])

    converge(stage, "redis")

    assert group(stage)["KmsKeyId"] == "alias/iotile-redis"
    moto_group(stage).kms_key_id = key["Arn"]  # AWS reports the key by ARN
    assert changed(redis.plan(stage)) == []
    assert redis.plan(stage)[0].state == "present"
    moto_group(stage).kms_key_id = "arn:aws:kms:us-east-1:123456789012:key/another"
    (resource,) = redis.plan(stage)
    assert resource.state == "drifted" and resource.steps == ()
    assert any(reason.startswith("recreate needed: encrypted with") for reason in resource.drift)


# -- what moto does not report: the planner on hand-made states ----------------------------------


def spec_and_state(stage: Stage, **node: Any) -> tuple[redis.RedisSpec, redis.RedisState]:
    spec = redis.replication_group_spec(stage)
    base = {
        "engine_version": "7.1.0",
        "security_group_ids": frozenset({"sg-data"}),
        "notification_topic": spec.notification_topic,
        "subnet_group": spec.subnet_group,
    }
    state = redis.RedisState(
        True,
        status="available",
        arn=f"arn:aws:elasticache:us-east-1:123456789012:replicationgroup:{GROUP}",
        node_type=spec.node_type,
        members=1 + spec.replicas,
        automatic_failover="disabled",
        multi_az="disabled",
        snapshot_retention_days=spec.snapshot_retention_days,
        at_rest_encryption=True,
        transit_encryption=True,
        transit_mode="required",
        auth_token=True,
        endpoint="master.example:6379",
        tags=spec.tags,
        node=redis.NodeState(**{**base, **node}),
    )
    return spec, state


def calls(resource) -> list[tuple[str, dict[str, Any]]]:
    return [(c.operation, dict(c.params)) for c in resource.calls]


def test_member_cluster_settings_are_compared(make_stage) -> None:
    stage = make_stage("dev", read_only=True)
    spec, state = spec_and_state(stage)
    assert redis.plan_replication_group(stage, spec, state, "sg-data").state == "present"

    _, opened = spec_and_state(
        stage, security_group_ids=frozenset({"sg-data", "sg-open"}), notification_topic=None
    )
    resource = redis.plan_replication_group(stage, spec, opened, "sg-data")
    (modify,) = resource.calls
    assert modify.params["SecurityGroupIds"] == ["sg-data"]
    assert modify.params["NotificationTopicArn"] == spec.notification_topic
    assert modify.params["ApplyImmediately"] is True


def test_engine_is_only_ever_upgraded_in_the_maintenance_window(make_stage) -> None:
    stage = make_stage("dev", read_only=True)
    spec, old = spec_and_state(stage, engine_version="6.2.6")
    assert calls(redis.plan_replication_group(stage, spec, old, "sg-data")) == [
        (
            "ModifyReplicationGroup",
            {"ReplicationGroupId": GROUP, "EngineVersion": "7.1", "ApplyImmediately": False},
        )
    ]
    _, scheduled = spec_and_state(stage, engine_version="6.2.6", pending={"EngineVersion": "7.1.0"})
    assert redis.plan_replication_group(stage, spec, scheduled, "sg-data").calls == []
    _, newer = spec_and_state(stage, engine_version="7.2.4")
    assert redis.plan_replication_group(stage, spec, newer, "sg-data").calls == []


def test_in_transit_encryption_is_turned_on_in_two_steps_on_redis_7(make_stage) -> None:
    stage = make_stage("dev", read_only=True)
    spec, state = spec_and_state(stage)
    plain = replace(state, transit_encryption=False, transit_mode=None)
    (first,) = redis.plan_replication_group(stage, spec, plain, "sg-data").calls
    assert first.params["TransitEncryptionEnabled"] is True
    assert first.params["TransitEncryptionMode"] == "preferred"

    preferred = replace(state, transit_mode="preferred")
    (second,) = redis.plan_replication_group(stage, spec, preferred, "sg-data").calls
    assert second.params["TransitEncryptionMode"] == "required"

    _, old = spec_and_state(stage, engine_version="6.2.6")
    old_plain = replace(old, transit_encryption=False, transit_mode=None)
    resource = redis.plan_replication_group(stage, spec, old_plain, "sg-data")
    assert "TransitEncryptionEnabled" not in {k for c in resource.calls for k in c.params}
    assert any("not encrypted in transit" in reason for reason in resource.drift)


def test_no_auth_token_and_a_failed_group_are_reported_without_steps(make_stage) -> None:
    stage = make_stage("dev", read_only=True)
    spec, state = spec_and_state(stage)
    open_group = redis.plan_replication_group(stage, spec, replace(state, auth_token=False), "sg-data")
    assert open_group.state == "drifted" and open_group.steps == ()
    assert any(reason.startswith("no AUTH token") for reason in open_group.drift)

    failed = redis.plan_replication_group(stage, spec, replace(state, status="create-failed"), "x")
    assert failed.state == "drifted" and failed.steps == ()
    assert all(not isinstance(step, Call) for step in failed.steps)


def test_more_replicas_are_added_before_failover_goes_on(make_stage, config_copy) -> None:
    more = config_copy("dev", "redis:\n  replicas: 2\n  automatic_failover: true\n")
    stage = make_stage("dev", read_only=True, config_dir=more)
    spec, state = spec_and_state(stage)
    alone = replace(state, members=1)

    resource = redis.plan_replication_group(stage, spec, alone, "sg-data")

    # moto 5.2.5 lacks IncreaseReplicaCount and DecreaseReplicaCount: the plan is checked, not run.
    assert calls(resource) == [
        (
            "IncreaseReplicaCount",
            {"ReplicationGroupId": GROUP, "NewReplicaCount": 2, "ApplyImmediately": True},
        ),
        (
            "ModifyReplicationGroup",
            {
                "ReplicationGroupId": GROUP,
                "AutomaticFailoverEnabled": True,
                "MultiAZEnabled": True,
                "ApplyImmediately": True,
            },
        ),
    ]
    assert [type(step).__name__ for step in resource.steps] == ["Call", "Wait", "Call", "Wait"]


def test_fewer_replicas_are_removed_after_failover_goes_off(make_stage) -> None:
    stage = make_stage("dev", read_only=True)
    spec, state = spec_and_state(stage)
    failover = replace(state, members=3, automatic_failover="enabled", multi_az="enabled")

    resource = redis.plan_replication_group(stage, spec, failover, "sg-data")

    assert [c.operation for c in resource.calls] == ["ModifyReplicationGroup", "DecreaseReplicaCount"]
    assert resource.calls[0].params["AutomaticFailoverEnabled"] is False
    assert resource.calls[1].params["NewReplicaCount"] == spec.replicas == 1


def test_events_go_to_the_plain_topic_and_an_inactive_one_is_reactivated(make_stage) -> None:
    """ElastiCache cannot publish to an encrypted topic (the emulator refuses one): its events go to
    sns.topics.cache_events, and a topic ElastiCache reports `inactive` is drift."""
    from dataclasses import replace

    stage = make_stage("dev")
    spec, state = spec_and_state(stage)
    assert spec.notification_topic == stage.arn("sns", "iotile-cache-events-dev")
    inactive = replace(state, node=replace(state.node, notification_status="inactive"))
    assert redis.plan_replication_group(stage, spec, state, "sg-data").state == "present"
    resource = redis.plan_replication_group(stage, spec, inactive, "sg-data")
    (call,) = [c for c in resource.calls if c.operation == "ModifyReplicationGroup"]
    assert call.params["NotificationTopicStatus"] == "active"
    assert "inactive" in call.reason
