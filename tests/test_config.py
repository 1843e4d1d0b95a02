"""Stage configuration: the shipped files are valid, hold DESIGN's names, and errors name file + key."""

from __future__ import annotations

import pytest

from deploy.config import load_config, stage_names
from deploy.errors import ConfigError
from tests.conftest import CONFIG


def test_every_shipped_stage_is_valid() -> None:
    assert stage_names(CONFIG) == ["dev", "local", "prod", "stage"]
    for stage in stage_names(CONFIG):
        assert load_config(stage, CONFIG).region


def test_names_are_the_ones_in_design() -> None:
    config = load_config("prod", CONFIG)
    assert [b.name for _, b in config.s3.buckets] == [
        "iotile-cloud-statics",
        "iotile-cloud-media",
        "iotile-cloud-reports",
        "iotile-cloud-stream-event-data",
        "iotile-cloud-streamers",
        "iotile-streamer-dropdown",
        "iotile-stream-in",
        "iotile-timeseries-kinesis",
    ]
    assert dict(config.sqs.queues) == {"worker": "iotile-worker-prod", "report": "iotile-report-prod"}
    assert set(dict(config.sns.topics).values()) == {
        "SESIssues",
        "StaffNotifications",
        "IotileCloudEBNotifications",
        "iotile--delete-s3--prod",
        "iotile--upload-sxd--prod",
        "dynamodb",
    }
    assert dict(config.dynamodb.tables) == {
        "worker_logs": "iotile-worker-logs-prod",
        "filter_log": "iotile-filter-log-prod",
    }
    assert config.lambdas.health_schedules == [
        "hour-worker-check-prod",
        "device_check-prod",
        "hour-stream-data-check-prod",
        "day-clean-up-prod",
        "day-collect-stats-prod",
        "day-collect-dbstats-prod",
    ]
    assert (config.ecs.cluster, config.ecs.task_definition, config.ecs.service, config.ecs.workers) == (
        "iotile-cloud-cluster",
        "iotile-cloud-sqs-worker-task",
        "iotile-cloud-sqs-worker-service",
        3,
    )
    assert (config.eb.min_instances, config.eb.max_instances, config.eb.health_url) == (
        2,
        4,
        "/api/v1/server/",
    )
    iam = config.iam
    assert (iam.dev_group, iam.production_role, iam.ecs_instance_role, iam.eb_ec2_role) == (
        "IOTileDevGroup",
        "IOTileProductionRole",
        "ECSInstanceIotileRole",
        "aws-elasticbeanstalk-ec2-role",
    )
    assert (iam.streamer_upload_policy, iam.search_policy) == (
        "iotile-streamer-upload-prod",
        "iotile-search-prod",
    )
    assert config.secrets.prefix == "/iotile-cloud/prod"


def test_prod_overrides_defaults() -> None:
    assert load_config("prod", CONFIG).rds.multi_az is True
    assert load_config("dev", CONFIG).rds.multi_az is False


def test_shared_and_stage_scoped_names() -> None:
    config = load_config("dev", CONFIG)
    assert config.is_shared("iotile-cloud-media")
    assert config.is_shared("StaffNotifications")
    assert not config.is_shared("iotile-worker-dev")


def test_error_in_stage_file_names_that_file(config_copy) -> None:
    folder = config_copy("prod", "rds:\n  instance_class: 42\n")
    with pytest.raises(ConfigError) as error:
        load_config("prod", folder)
    assert error.value.path.endswith("prod.yaml")
    assert error.value.key == "rds.instance_class"


def test_error_in_defaults_names_defaults(config_copy) -> None:
    folder = config_copy("dev", "")
    text = (folder / "defaults.yaml").read_text().replace("max_receive_count: 5", "max_receive_count: -1")
    (folder / "defaults.yaml").write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config("dev", folder)
    assert error.value.path.endswith("defaults.yaml")
    assert error.value.key == "sqs.max_receive_count"
