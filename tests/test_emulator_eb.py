"""The emulator's Elastic Beanstalk fill-in, through the emulator's server and in-process: versions
refused twice or without their bundle, environments that move to Ready and Green and keep their
option settings, events newest first, a failed update on request, and termination."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from deploy.emulator.fillins.elasticbeanstalk.models import (
    FAIL_NEXT_UPDATE_TAG,
    TRANSITION_SECONDS,
    fail_next_update,
)
from deploy.emulator.server import EmulatorServer

ACCOUNT, REGION = "123456789012", "us-east-1"
APP, ENV = "iotile-cloud", "iotile-cloud-local"
STACK = "64bit Amazon Linux 2023 v4.6.0 running Python 3.12"
SECRET_ARN = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/iotile-cloud/local/SECRET_KEY"


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer() as running:
        yield running


@pytest.fixture
def clients(server: EmulatorServer) -> Iterator[tuple[Any, Any]]:
    server.reset()
    server.clear_requests()

    def make(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=server.endpoint_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    yield make("elasticbeanstalk"), make("s3")


def _bundle(s3: Any, key: str = "app/v1.zip") -> tuple[str, str]:
    if not s3.list_buckets()["Buckets"]:
        s3.create_bucket(Bucket="iotile-bundles")
    s3.put_object(Bucket="iotile-bundles", Key=key, Body=b"zip")
    return "iotile-bundles", key


def _environment(eb: Any) -> dict[str, Any]:
    (env,) = eb.describe_environments(ApplicationName=APP, EnvironmentNames=[ENV])["Environments"]
    return env


def _launch(eb: Any, **extra: Any) -> dict[str, Any]:
    eb.create_application(ApplicationName=APP, Tags=[{"Key": "Stage", "Value": "local"}])
    settings = [
        {"Namespace": "aws:autoscaling:asg", "OptionName": "MinSize", "Value": "2"},
        {
            "Namespace": "aws:elasticbeanstalk:application:environmentsecrets",
            "OptionName": "SECRET_KEY",
            "Value": SECRET_ARN,
        },
    ]
    return eb.create_environment(
        ApplicationName=APP, EnvironmentName=ENV, SolutionStackName=STACK, OptionSettings=settings, **extra
    )


def _until_ready(eb: Any) -> dict[str, Any]:
    for _ in range(3):
        env = _environment(eb)
        if env["Status"] == "Ready":
            return env
    raise AssertionError(f"still {env['Status']}")


def test_an_environment_launches_to_ready_and_green_and_keeps_its_settings(clients) -> None:
    eb, _ = clients
    made = _launch(eb)

    assert (made["Status"], made["Health"]) == ("Launching", "Grey")
    assert made["CNAME"] == f"{ENV}.{REGION}.elasticbeanstalk.com"
    assert _environment(eb)["Status"] == "Launching", "one describe is not enough"
    env = _environment(eb)
    assert (env["Status"], env["Health"], env["HealthStatus"]) == ("Ready", "Green", "Ok")
    (described,) = eb.describe_configuration_settings(ApplicationName=APP, EnvironmentName=ENV)[
        "ConfigurationSettings"
    ]
    options = {(o["Namespace"], o["OptionName"]): o["Value"] for o in described["OptionSettings"]}
    assert options[("aws:autoscaling:asg", "MinSize")] == "2"
    assert options[("aws:autoscaling:asg", "MaxSize")] == "4", "platform defaults fill the rest"
    assert options[("aws:elasticbeanstalk:application:environmentsecrets", "SECRET_KEY")] == SECRET_ARN
    assert described["SolutionStackName"] == STACK
    resources = eb.describe_environment_resources(EnvironmentName=ENV)["EnvironmentResources"]
    assert len(resources["Instances"]) == 2
    health = eb.describe_environment_health(EnvironmentName=ENV, AttributeNames=["All"])
    assert (health["Color"], health["HealthStatus"]) == ("Green", "Ok")
    with pytest.raises(ClientError, match="Environment iotile-cloud-local already exists"):
        _launch_again(eb)


def _launch_again(eb: Any) -> None:
    eb.create_environment(ApplicationName=APP, EnvironmentName=ENV, SolutionStackName=STACK)


def test_a_version_is_made_once_and_only_from_a_bundle_in_s3(clients) -> None:
    eb, s3 = clients
    eb.create_application(ApplicationName=APP)
    bucket, key = _bundle(s3)
    source = {"S3Bucket": bucket, "S3Key": key}

    made = eb.create_application_version(ApplicationName=APP, VersionLabel="abc", SourceBundle=source)

    assert made["ApplicationVersion"]["SourceBundle"] == source
    with pytest.raises(ClientError, match="Application Version abc already exists") as twice:
        eb.create_application_version(ApplicationName=APP, VersionLabel="abc", SourceBundle=source)
    assert twice.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(ClientError, match="Unable to download from S3 location"):
        missing = {"S3Bucket": bucket, "S3Key": "nope.zip"}
        eb.create_application_version(ApplicationName=APP, VersionLabel="def", SourceBundle=missing)
    with pytest.raises(ClientError, match="No Application named 'other' found"):
        eb.create_application_version(ApplicationName="other", VersionLabel="x", SourceBundle=source)
    found = eb.describe_application_versions(ApplicationName=APP, VersionLabels=["abc"])
    assert [v["VersionLabel"] for v in found["ApplicationVersions"]] == ["abc"]
    assert (
        eb.describe_application_versions(ApplicationName=APP, VersionLabels=["def"])["ApplicationVersions"]
        == []
    )


def test_an_update_goes_through_updating_and_records_events(clients) -> None:
    eb, s3 = clients
    _launch(eb)
    _until_ready(eb)
    bucket, key = _bundle(s3)
    eb.create_application_version(
        ApplicationName=APP, VersionLabel="v1", SourceBundle={"S3Bucket": bucket, "S3Key": key}
    )
    before = datetime.now(UTC) - timedelta(seconds=0.001)

    updating = eb.update_environment(EnvironmentName=ENV, VersionLabel="v1")

    assert updating["Status"] == "Updating"
    with pytest.raises(ClientError, match=r"invalid state for this operation\. Must be Ready"):
        eb.update_environment(EnvironmentName=ENV, VersionLabel="v1")
    env = _until_ready(eb)
    assert (env["VersionLabel"], env["Health"]) == ("v1", "Green")
    recent = eb.describe_events(ApplicationName=APP, EnvironmentName=ENV, StartTime=before)["Events"]
    assert [e["Message"] for e in recent] == [
        "Environment update completed successfully.",
        "Deploying new version to instance(s).",
        "Environment update is starting.",
    ], "newest first, only since StartTime"
    everything = eb.describe_events(ApplicationName=APP)["Events"]
    assert len(everything) > len(recent)
    with pytest.raises(ClientError, match="No Application Version named 'v9' found"):
        eb.update_environment(EnvironmentName=ENV, VersionLabel="v9")


def test_a_failed_update_ends_red_on_the_previous_version(clients) -> None:
    eb, s3 = clients
    _launch(eb)
    _until_ready(eb)
    bucket, key = _bundle(s3)
    for label in ("v1", "v2"):
        eb.create_application_version(
            ApplicationName=APP, VersionLabel=label, SourceBundle={"S3Bucket": bucket, "S3Key": key}
        )
    eb.update_environment(EnvironmentName=ENV, VersionLabel="v1")
    _until_ready(eb)
    fail_next_update(ACCOUNT, REGION, ENV, "Instance deployment failed: migrate exited 1")

    eb.update_environment(EnvironmentName=ENV, VersionLabel="v2")
    env = _until_ready(eb)

    assert (env["VersionLabel"], env["Health"], env["HealthStatus"]) == ("v1", "Red", "Severe")
    errors = eb.describe_events(EnvironmentName=ENV, Severity="ERROR")["Events"]
    assert "Instance deployment failed: migrate exited 1" in [e["Message"] for e in errors]
    assert {e["Severity"] for e in errors} == {"ERROR"}

    eb.update_environment(EnvironmentName=ENV, VersionLabel="v2")
    assert _until_ready(eb)["VersionLabel"] == "v2", "only the next update fails"


def test_a_tag_asks_for_a_failure_over_http(clients) -> None:
    eb, _ = clients
    arn = _launch(eb)["EnvironmentArn"]
    _until_ready(eb)
    tag = [{"Key": FAIL_NEXT_UPDATE_TAG, "Value": "boom"}]

    eb.update_tags_for_resource(ResourceArn=arn, TagsToAdd=tag)
    eb.update_environment(
        EnvironmentName=ENV,
        OptionSettings=[{"Namespace": "aws:autoscaling:asg", "OptionName": "MaxSize", "Value": "6"}],
    )

    assert _until_ready(eb)["Health"] == "Red"
    tags = eb.list_tags_for_resource(ResourceArn=arn)["ResourceTags"]
    assert tags == [], "the request is not kept as a tag"


def test_settings_change_and_secrets_must_be_arns(clients) -> None:
    eb, _ = clients
    _launch(eb)
    _until_ready(eb)
    plain = {
        "Namespace": "aws:elasticbeanstalk:application:environmentsecrets",
        "OptionName": "SECRET_KEY",
        "Value": "the-value-itself",
    }
    with pytest.raises(ClientError, match="specify the ARN"):
        eb.update_environment(EnvironmentName=ENV, OptionSettings=[plain])
    eb.update_environment(
        EnvironmentName=ENV,
        OptionSettings=[{"Namespace": "aws:autoscaling:asg", "OptionName": "MinSize", "Value": "3"}],
        OptionsToRemove=[{"Namespace": "aws:autoscaling:asg", "OptionName": "MaxSize"}],
    )
    _until_ready(eb)
    described = eb.describe_configuration_settings(ApplicationName=APP, EnvironmentName=ENV)
    options = {
        (o["Namespace"], o["OptionName"]): o["Value"]
        for o in described["ConfigurationSettings"][0]["OptionSettings"]
    }
    assert options[("aws:autoscaling:asg", "MinSize")] == "3"
    assert ("aws:autoscaling:asg", "MaxSize") not in options


def test_terminate_and_the_clock(clients, emulator_clock) -> None:
    eb, _ = clients
    _launch(eb)
    emulator_clock.advance(TRANSITION_SECONDS)
    assert eb.describe_environment_health(EnvironmentName=ENV, AttributeNames=["All"])["Status"] == "Ready", (
        "the emulator's clock ends a change as well as polls do"
    )

    assert eb.terminate_environment(EnvironmentName=ENV)["Status"] == "Terminating"
    emulator_clock.advance(TRANSITION_SECONDS)

    assert eb.describe_environments(ApplicationName=APP, IncludeDeleted=False)["Environments"] == []
    (gone,) = eb.describe_environments(ApplicationName=APP)["Environments"]
    assert gone["Status"] == "Terminated"
    with pytest.raises(ClientError, match="No Environment found"):
        eb.update_environment(EnvironmentName=ENV, VersionLabel="x")
    _launch_again(eb)
    assert _environment(eb)["Status"] == "Launching", "a terminated name can be used again"


def test_create_storage_location_makes_the_beanstalk_bucket_once(clients) -> None:
    eb, s3 = clients
    bucket = f"elasticbeanstalk-{REGION}-{ACCOUNT}"

    assert eb.create_storage_location()["S3Bucket"] == bucket
    assert eb.create_storage_location()["S3Bucket"] == bucket
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [bucket]


def test_the_server_logs_the_calls(clients, server: EmulatorServer) -> None:
    eb, _ = clients
    _launch(eb)
    assert {
        "service": "elasticbeanstalk",
        "operation": "CreateEnvironment",
        "mutating": True,
    } in server.requests()


def test_in_process_clients_get_the_same_fillin() -> None:
    from moto import mock_aws

    from deploy.emulator.fillins.inprocess import serving_in_process

    with mock_aws(), serving_in_process():
        eb = boto3.client("elasticbeanstalk", region_name=REGION)
        _launch(eb)
        assert _until_ready(eb)["Health"] == "Green"
        stacks = eb.list_available_solution_stacks()["SolutionStacks"]
        assert STACK in stacks, "moto answers the rest"
