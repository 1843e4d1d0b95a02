"""`down`'s teardown planners against moto plus the fill-ins: compute and front end removed in the
reverse of `up`'s order, data kept, never a deleting call on a data store, a dry run that changes
nothing, a second run that finds nothing, and `up` bringing it all back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from invoke import Context, Exit

from deploy import stack
from deploy.areas import cdn, eb, ecs, lambdas
from deploy.execute import converge_waves
from deploy.plan import Call, Resource
from deploy.report import Reporter
from deploy.stage import Stage
from tests.conftest import CallLog
from tests.helpers import converge, operations

# IAM attaches AWS managed policies to the Beanstalk roles.
pytestmark = pytest.mark.aws_managed_policies
# The compute and front end, and what they need (no slow data store: down never touches one).
AREAS = (
    "network",
    "iam",
    "kms",
    "dns",
    "ecr",
    "s3",
    "sns",
    "sqs",
    "dynamodb",
    "acm",
    "cdn",
    "ecs",
    "lambdas",
    "eb",
    "aliases",
)
CONFIG = (
    "waits: {poll_seconds: 0.05, timeout_seconds: 60}\n"
    "dns: {hosted_zone: iotile.cloud}\n"
    "cdn: {remove_on_down: true}\n"
)
# Operations that delete or empty a data store, a bucket, a queue, a key or a secret: no teardown
# step may be one of them, whatever the area.
DENIED = frozenset(
    {
        "DeleteDBInstance",
        "DeleteDBCluster",
        "DeleteCluster",
        "DeleteTable",
        "DeleteItem",
        "BatchWriteItem",
        "UpdateTable",
        "DeleteBucket",
        "DeleteObject",
        "DeleteObjects",
        "PutBucketLifecycleConfiguration",
        "DeleteQueue",
        "PurgeQueue",
        "DeleteMessage",
        "ScheduleKeyDeletion",
        "DisableKey",
        "DeleteAlias",
        "DeleteParameter",
        "DeleteParameters",
        "DeleteSecret",
        "DeleteReplicationGroup",
        "DeleteCacheCluster",
        "DeleteDomain",
        "DeleteDeliveryStream",
        "DeleteRepository",
        "DeleteLogGroup",
        "DeleteHostedZone",
        "DeleteApplication",
        "DeleteApplicationVersion",
    }
)


@pytest.fixture(autouse=True)
def fillins(aws: None) -> Iterator[None]:
    from deploy.emulator.fillins.inprocess import serving_in_process

    with serving_in_process():
        yield


@pytest.fixture
def folder(config_copy) -> Path:
    return config_copy("dev", CONFIG)


@pytest.fixture
def dev(make_stage, folder: Path, call_log: CallLog) -> Stage:
    """The dev stage with its compute and front end up, and some data in its stores."""
    stage = make_stage("dev", config_dir=folder, log=call_log)
    stage.client("route53").create_hosted_zone(Name="iotile.cloud", CallerReference="down")
    up(stage)
    put_data(stage)
    call_log.clear()
    return stage


def up(stage: Stage) -> None:
    waves = [[a for a in wave if a in AREAS] for wave in stack.WAVES]
    converge_waves(stage, stack.waves_of([w for w in waves if w]), Reporter(as_json=True), dry_run=False)


def down(stage: Stage, *, dry_run: bool = False) -> list[Resource]:
    reporter = Reporter(as_json=True)
    return converge_waves(stage, stack.teardown_waves(), reporter, dry_run=dry_run).resources


def put_data(stage: Stage) -> None:
    queue = stage.client("sqs").get_queue_url(QueueName="iotile-worker-dev")["QueueUrl"]
    stage.client("sqs").send_message(QueueUrl=queue, MessageBody="kept")
    stage.client("dynamodb").put_item(TableName="iotile-worker-logs-dev", Item=item())
    stage.client("s3").put_object(Bucket=stage.config.s3.buckets.media.name, Key="dev/kept.txt", Body=b"kept")


def item() -> dict:
    return {"task_id": {"S": "kept"}}


def aliases_in_zone(stage: Stage) -> list[str]:
    route53 = stage.client("route53")
    (zone,) = route53.list_hosted_zones()["HostedZones"]
    sets = route53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
    return sorted(f"{s['Name']} {s['Type']}" for s in sets if "AliasTarget" in s)


def data_is_intact(stage: Stage) -> None:
    queue = stage.client("sqs").get_queue_url(QueueName="iotile-worker-dev")["QueueUrl"]
    attributes = stage.client("sqs").get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "1"
    kept = stage.client("dynamodb").get_item(TableName="iotile-worker-logs-dev", Key=item())
    assert "Item" in kept
    body = stage.client("s3").get_object(Bucket=stage.config.s3.buckets.media.name, Key="dev/kept.txt")[
        "Body"
    ]
    assert body.read() == b"kept"


def assert_never_deletes_data(planned: list[Resource]) -> None:
    """Every teardown step is checked against the deny list, and the services it may touch at all."""
    steps = [step for resource in planned for step in resource.steps if isinstance(step, Call)]
    assert [s.operation for s in steps if s.operation in DENIED] == []
    assert {s.service for s in steps} <= {
        "elasticbeanstalk",
        "ecs",
        "autoscaling",
        "lambda",
        "events",
        "sns",
        "s3",
        "cloudfront",
        "route53",
    }
    assert all(s.operation == "PutBucketNotificationConfiguration" for s in steps if s.service == "s3")


def test_down_removes_compute_and_front_end_never_deletes_data_and_up_brings_it_back(
    dev: Stage, call_log: CallLog, make_stage
) -> None:
    assert cdn.find_summary(dev, "statics") is not None
    assert len(aliases_in_zone(dev)) == 5, "A to the app, A and AAAA to each distribution"
    assert cdn.teardown(make_stage("dev")) == [], "distributions stay unless cdn.remove_on_down"
    preview = down(dev, dry_run=True)
    assert call_log.mutating == []
    assert set(operations(preview)) == {
        "TerminateEnvironment",
        "UpdateService",
        "DeleteService",
        "UpdateAutoScalingGroup",
        "RemoveTargets",
        "DeleteRule",
        "Unsubscribe",
        "PutBucketNotificationConfiguration",
        "DeleteFunction",
        "UpdateDistribution",
        "DeleteDistribution",
        "ChangeResourceRecordSets",
    }
    assert_never_deletes_data(preview)
    assert next(r.area for r in preview if r.steps) == "aliases", "records go before their targets"

    removed = down(dev)

    assert operations(removed) == operations(preview), "the dry run showed exactly what went"
    assert eb.environment_status(dev) == "missing"
    assert ecs.service_status(dev) == "INACTIVE"
    group = ecs.read_group(dev)
    assert group is not None and (group["MinSize"], group["DesiredCapacity"]) == (0, 0)
    assert not any(lambdas.read_function(dev, spec.name).exists for spec in lambdas.function_specs(dev))
    assert dev.client("events").list_rules(NamePrefix="day-clean-up")["Rules"] == []
    notification = dev.client("s3").get_bucket_notification_configuration(
        Bucket=dev.config.s3.buckets.media.name
    )
    assert notification.get("LambdaFunctionConfigurations", []) == []
    assert [cdn.find_summary(dev, which) for which in cdn.WHICH] == [None, None]
    assert aliases_in_zone(dev) == []
    data_is_intact(dev)

    call_log.clear()
    assert [r for r in down(dev) if r.steps] == [] and call_log.mutating == [], "a second down finds nothing"

    up(dev)
    assert eb.environment_status(dev) == "Ready"
    assert ecs.service_status(dev) == "ACTIVE"
    assert all(lambdas.read_function(dev, spec.name).exists for spec in lambdas.function_specs(dev))
    assert len(aliases_in_zone(dev)) == 5
    data_is_intact(dev)


def test_down_asks_for_the_stage_name_and_prod_needs_prod(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOY_CONFIG_DIR", str(folder))
    with pytest.raises(Exit) as refused:
        stack.down(Context(), stage="dev")
    assert refused.value.code == 2
    with pytest.raises(Exit) as prod:
        stack.down(Context(), stage="prod", yes=True)
    assert prod.value.code == 2


def test_a_distribution_disabled_before_down_is_only_awaited_and_deleted(make_stage, folder: Path) -> None:
    """What a rerun finds after Ctrl-C between disabling and deleting: no second update."""
    stage = make_stage("dev", config_dir=folder)
    converge(stage, "kms", "s3", "cdn")
    found = cdn.read_distribution(stage, cdn.find_summary(stage, "media"))
    config = {**found.config, "Enabled": False}
    stage.client("cloudfront").update_distribution(Id=found.id, IfMatch=found.etag, DistributionConfig=config)

    planned = {r.name: operations([r]) for r in cdn.teardown(stage)}

    assert planned == {
        "iotile-deploy:dev:statics": ["UpdateDistribution", "DeleteDistribution"],
        "iotile-deploy:dev:media": ["DeleteDistribution"],
    }
    converge_waves(stage, [{"cdn": cdn.teardown}], Reporter(as_json=True), dry_run=False)
    assert [cdn.find_summary(stage, which) for which in cdn.WHICH] == [None, None]
