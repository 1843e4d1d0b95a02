"""Beanstalk area against moto plus the emulator's Beanstalk fill-in: option settings from config with
secrets only by ARN, the environment converged (never recreated), drift put back by one update,
versions deployed once and failures reported with their events, and a guarded terminate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from invoke import Context, Exit

from deploy.areas import eb
from deploy.emulator.fillins.elasticbeanstalk.models import fail_next_update
from deploy.errors import AwsError
from deploy.plan import Deferred
from deploy.policies import known_secrets
from deploy.report import Reporter
from deploy.stage import Stage
from tests.conftest import ROOT, CallLog
from tests.helpers import converge, operations

ENV = "iotile-cloud-dev"
FAST_WAITS = "waits: {poll_seconds: 0.05, timeout_seconds: 60}\n"
BUNDLE_BUCKET = "iotile-cloud-deploy-bundles"


@pytest.fixture(autouse=True)
def fillins(aws: None) -> Iterator[None]:
    from deploy.emulator.fillins.inprocess import serving_in_process

    with serving_in_process():
        yield


@pytest.fixture
def fast_config(config_copy) -> Path:
    return config_copy("dev", FAST_WAITS)


@pytest.fixture
def dev(make_stage, fast_config: Path) -> Stage:
    stage = make_stage("dev", config_dir=fast_config)
    converge(stage, "network")
    return stage


def environment(stage: Stage) -> dict[str, Any]:
    (env,) = stage.client("elasticbeanstalk").describe_environments(EnvironmentNames=[ENV])["Environments"]
    return env


def live_settings(stage: Stage) -> dict[tuple[str, str], str]:
    described = stage.client("elasticbeanstalk").describe_configuration_settings(
        ApplicationName="iotile-cloud", EnvironmentName=ENV
    )["ConfigurationSettings"][0]["OptionSettings"]
    return {(o["Namespace"], o["OptionName"]): o["Value"] for o in described}


def wait_ready(stage: Stage, emulator_clock: Any) -> None:
    emulator_clock.advance(5)
    assert environment(stage)["Status"] == "Ready"


def bundle(stage: Stage, key: str = "bundles/v1.zip") -> str:
    s3 = stage.client("s3")
    if not s3.list_buckets()["Buckets"]:
        s3.create_bucket(Bucket=BUNDLE_BUCKET)
    s3.put_object(Bucket=BUNDLE_BUCKET, Key=key, Body=b"PK\x05\x06" + b"\0" * 18)
    return key


# -- rendering ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dev", "stage", "prod", "local"])
def test_rendered_settings_hold_secrets_only_as_parameter_arns(make_stage, name: str) -> None:
    stage = make_stage(name)
    ssm = stage.client("ssm")
    values = {}
    for secret in sorted(known_secrets(stage)):
        values[secret] = f"do-not-leak-{secret.lower()}-{name}-Zq9"
        parameter = f"{stage.config.secrets.prefix}/{secret}"
        ssm.put_parameter(Name=parameter, Value=values[secret], Type="SecureString")

    settings = eb.option_settings(
        stage,
        eb.read_placement(stage),
        eb.read_endpoints(stage),
        eb.read_topic_arn(stage),
        eb.read_certificate_arn(stage),
    )
    rendered = repr(eb.as_option_list(settings)) + eb.eb_cli_config(stage)
    extensions = ROOT / "server" / ".ebextensions"
    if extensions.is_dir():
        rendered += "".join(p.read_text() for p in sorted(extensions.iterdir()) if p.is_file())

    for value in values.values():
        assert value not in rendered
    secrets = {o: v for (ns, o), v in settings.items() if ns == eb.SECRETS_NAMESPACE}
    assert set(secrets) == set(stage.config.secrets.readers["app"])
    prefix = f"arn:aws:ssm:us-east-1:{stage.account_id}:parameter{stage.config.secrets.prefix}/"
    assert all(arn == f"{prefix}{secret}" for secret, arn in secrets.items())
    plain = {o for (ns, o) in settings if ns == eb.ENV_NAMESPACE}
    assert not plain & set(secrets), "a secret's name never carries a value"
    assert settings[(eb.ENV_NAMESPACE, "IOTILE_STAGE")] == name


def test_settings_follow_config(make_stage, config_copy) -> None:
    cert = "arn:aws:acm:us-east-1:123456789012:certificate/abc"
    folder = config_copy(
        "dev", f"eb: {{certificate_arn: {cert}, key_name: ops, environment_variables: {{DEBUG: 'false'}}}}\n"
    )
    stage = make_stage("dev", config_dir=folder)
    settings = eb.option_settings(
        stage, eb.Placement("vpc-1", "sg-1", ["s-2", "s-1"], ["p-1"]), eb.Endpoints(), "t"
    )

    assert settings[("aws:elbv2:listener:443", "SSLCertificateArns")] == cert
    assert settings[("aws:elbv2:listener:443", "Protocol")] == "HTTPS"
    assert settings[("aws:autoscaling:launchconfiguration", "EC2KeyName")] == "ops"
    assert (
        settings[("aws:autoscaling:launchconfiguration", "IamInstanceProfile")] == "IOTileProductionRole-dev"
    )
    assert settings[("aws:ec2:vpc", "Subnets")] == "s-2,s-1"
    assert settings[("aws:ec2:vpc", "ELBSubnets")] == "p-1"
    assert (settings[("aws:autoscaling:asg", "MinSize")], settings[("aws:autoscaling:asg", "MaxSize")]) == (
        "2",
        "4",
    )
    assert (
        settings[("aws:elasticbeanstalk:environment:process:default", "HealthCheckPath")] == "/api/v1/server/"
    )
    assert settings[(eb.ENV_NAMESPACE, "DEBUG")] == "false"
    from_acm = eb.option_settings(stage, eb.Placement("v", "g", [], []), eb.Endpoints(), "t", "arn:other")
    assert from_acm[("aws:elbv2:listener:443", "SSLCertificateArns")] == cert, "config wins over the acm area"


def test_the_acm_certificate_gives_the_https_listener(make_stage) -> None:
    stage = make_stage("dev")
    placement = eb.Placement("v", "g", [], [])
    assert ("aws:elbv2:listener:443", "Protocol") not in eb.option_settings(
        stage, placement, eb.Endpoints(), "t"
    )
    issued = "arn:aws:acm:us-east-1:123456789012:certificate/issued"
    settings = eb.option_settings(stage, placement, eb.Endpoints(), "t", issued)
    assert settings[("aws:elbv2:listener:443", "SSLCertificateArns")] == issued


def test_a_secret_as_a_plain_variable_is_bad_input(config_copy) -> None:
    from deploy.config import load_config
    from deploy.errors import ConfigError

    folder = config_copy("dev", "eb: {environment_variables: {SECRET_KEY: x}}\n")
    with pytest.raises(
        ConfigError, match=r"dev\.yaml: eb\.environment_variables: SECRET_KEY is a secret"
    ) as bad:
        load_config("dev", folder)
    assert bad.value.exit_code == 2


def test_live_values_are_compared_as_beanstalk_answers_them() -> None:
    group, subnets, role = (
        ("aws:autoscaling:launchconfiguration", "SecurityGroups"),
        ("aws:ec2:vpc", "Subnets"),
        ("aws:elasticbeanstalk:environment", "ServiceRole"),
    )
    wanted = {group: "sg-app", subnets: "subnet-b,subnet-a", role: "beanstalk-service"}
    live = {
        group: "sg-app,sg-awseb-own",
        subnets: "subnet-a, subnet-b",
        role: "arn:aws:iam::123456789012:role/beanstalk-service",
    }
    assert eb.settings_drift(wanted, live) == {}
    assert eb.settings_drift(wanted, {**live, group: "sg-other"}) == {group: "sg-app"}
    assert eb.settings_drift(wanted, {**live, subnets: "subnet-a"}) == {subnets: "subnet-b,subnet-a"}


def test_subnets_not_made_yet_are_one_deferred_value() -> None:
    later = Deferred("subnet a", lambda stage: "subnet-a")
    joined = eb._joined(["subnet-b", later])
    assert isinstance(joined, Deferred) and joined.resolve(None) == "subnet-b,subnet-a"  # type: ignore[arg-type]


# -- converging -------------------------------------------------------------------------------------


def test_create_makes_application_and_environment_and_a_second_run_makes_no_call(
    make_stage, fast_config: Path, call_log: CallLog
) -> None:
    stage = make_stage("dev", config_dir=fast_config, log=call_log)
    converge(stage, "network")
    call_log.clear()

    first = converge(stage, "eb")

    assert operations(first.resources) == ["CreateApplication", "CreateEnvironment"]
    env = environment(stage)
    assert (env["Status"], env["Health"]) == ("Ready", "Green")
    settings = live_settings(stage)
    assert settings[("aws:elasticbeanstalk:environment", "LoadBalancerType")] == "application"
    assert settings[("aws:ec2:vpc", "VPCId")].startswith("vpc-")
    assert settings[("aws:autoscaling:launchconfiguration", "SecurityGroups")].startswith("sg-")
    tags = stage.client("elasticbeanstalk").list_tags_for_resource(ResourceArn=env["EnvironmentArn"])
    assert {"Key": "Stage", "Value": "dev"} in tags["ResourceTags"]

    call_log.clear()
    second = converge(stage, "eb")

    assert not second.changed and call_log.mutating == []
    assert [r.state for r in second.resources] == ["present", "present"]


def test_a_hand_changed_setting_is_put_back_by_one_update(dev: Stage, emulator_clock: Any) -> None:
    converge(dev, "eb")
    client = dev.client("elasticbeanstalk")
    hand = [{"Namespace": "aws:autoscaling:asg", "OptionName": "MaxSize", "Value": "9"}]
    client.update_environment(EnvironmentName=ENV, OptionSettings=hand)
    wait_ready(dev, emulator_clock)

    (_, env) = eb.plan(dev)
    assert env.state == "drifted" and "asg:MaxSize" in env.drift[0]
    (call,) = env.calls
    assert call.operation == "UpdateEnvironment"
    assert call.params["OptionSettings"] == [
        {"Namespace": "aws:autoscaling:asg", "OptionName": "MaxSize", "Value": "4"}
    ]

    converge(dev, "eb")
    assert live_settings(dev)[("aws:autoscaling:asg", "MaxSize")] == "4"
    assert operations(eb.plan(dev)) == []


def test_a_new_platform_in_config_updates_the_environment_in_place(
    dev: Stage, config_copy, make_stage, emulator_clock: Any
) -> None:
    converge(dev, "eb")
    newer = "64bit Amazon Linux 2023 v4.7.0 running Python 3.13"
    stage = make_stage("dev", config_dir=config_copy("dev", f"{FAST_WAITS}eb: {{solution_stack: {newer}}}\n"))

    (_, env) = eb.plan(stage)
    (call,) = env.calls
    assert call.operation == "UpdateEnvironment" and call.params["SolutionStackName"] == newer
    assert "OptionSettings" not in call.params

    converge(stage, "eb")
    assert environment(stage)["SolutionStackName"] == newer
    assert operations(eb.plan(stage)) == []


def test_an_environment_on_its_way_is_only_awaited(dev: Stage) -> None:
    converge(dev, "eb")
    dev.client("elasticbeanstalk").update_environment(
        EnvironmentName=ENV,
        OptionSettings=[{"Namespace": "aws:autoscaling:asg", "OptionName": "MinSize", "Value": "3"}],
    )
    (_, env) = eb.plan(dev)
    assert env.state == "pending" and env.calls == []


def test_dry_run_makes_no_mutating_call(make_stage, fast_config: Path, call_log: CallLog) -> None:
    converge(make_stage("dev", config_dir=fast_config), "network")
    stage = make_stage("dev", config_dir=fast_config, read_only=True, log=call_log)

    outcome = converge(stage, "eb", dry_run=True)

    assert outcome.changed and call_log.mutating == []
    assert stage.client("elasticbeanstalk").describe_environments()["Environments"] == []


def test_create_task_writes_the_eb_cli_config(dev: Stage, tmp_path: Path) -> None:
    path = eb.write_eb_cli_config(dev, tmp_path)
    assert path == tmp_path / "server" / ".elasticbeanstalk" / "config.yml"
    text = path.read_text()
    assert "environment: iotile-cloud-dev" in text and "application_name: iotile-cloud" in text


# -- deploying ----------------------------------------------------------------------------------------


def test_deploy_version_creates_a_version_once_and_ends_ready_and_green(
    make_stage, fast_config: Path, call_log: CallLog
) -> None:
    stage = make_stage("dev", config_dir=fast_config, log=call_log)
    converge(stage, "network")
    converge(stage, "eb")
    key = bundle(stage)
    call_log.clear()

    assert eb.deploy_version(stage, "abc123", BUNDLE_BUCKET, key, Reporter(as_json=True))

    assert [op for _, op in call_log.mutating] == ["CreateApplicationVersion", "UpdateEnvironment"]
    env = environment(stage)
    assert (env["VersionLabel"], env["Status"], env["Health"]) == ("abc123", "Ready", "Green")

    call_log.clear()
    assert not eb.deploy_version(stage, "abc123", BUNDLE_BUCKET, key, Reporter(as_json=True))
    assert call_log.mutating == []


def test_an_existing_version_is_reused_never_created_again(dev: Stage, call_log: CallLog) -> None:
    converge(dev, "eb")
    key = bundle(dev)
    reporter = Reporter(as_json=True)
    eb.deploy_version(dev, "one", BUNDLE_BUCKET, key, reporter)
    eb.deploy_version(dev, "two", BUNDLE_BUCKET, bundle(dev, "bundles/v2.zip"), reporter)
    dev.on_call(call_log)

    eb.deploy_version(dev, "one", BUNDLE_BUCKET, key, reporter)

    assert [op for _, op in call_log.mutating] == ["UpdateEnvironment"]
    assert environment(dev)["VersionLabel"] == "one"


def test_a_failed_update_raises_with_its_events(dev: Stage, capsys: pytest.CaptureFixture[str]) -> None:
    converge(dev, "eb")
    key = bundle(dev)
    eb.deploy_version(dev, "good", BUNDLE_BUCKET, key, Reporter(as_json=True))
    fail_next_update(dev.account_id, dev.region, ENV, "Command failed on instance: migrate exited 1")

    with pytest.raises(AwsError) as raised:
        eb.deploy_version(dev, "bad", BUNDLE_BUCKET, key, Reporter())

    assert raised.value.code == "DeploymentFailed"
    assert "migrate exited 1" in raised.value.message and "on version good, not bad" in raised.value.message
    assert "ERROR Command failed on instance" in capsys.readouterr().err
    assert environment(dev)["VersionLabel"] == "good"


def test_dry_run_deploy_changes_nothing(make_stage, fast_config: Path, call_log: CallLog) -> None:
    stage = make_stage("dev", config_dir=fast_config)
    converge(stage, "network")
    converge(stage, "eb")
    key = bundle(stage)
    reading = make_stage("dev", config_dir=fast_config, read_only=True, log=call_log)

    assert eb.deploy_version(reading, "v9", BUNDLE_BUCKET, key, Reporter(as_json=True))
    assert call_log.mutating == []


def test_deploy_without_an_environment_says_what_to_run(make_stage, fast_config: Path) -> None:
    stage = make_stage("dev", config_dir=fast_config)
    with pytest.raises(AwsError, match=r"inv eb\.create --stage dev"):
        eb.deploy_version(stage, "v1", BUNDLE_BUCKET, "k", Reporter(as_json=True))


# -- status and terminate -------------------------------------------------------------------------------


def test_report_shows_health_version_instances_and_events(dev: Stage) -> None:
    converge(dev, "eb")
    report = eb.environment_report(dev)
    assert (report["status"], report["health"], report["version"]) == ("Ready", "Green", "Sample Application")
    assert len(report["instances"]) == 2
    assert any("Successfully launched environment" in line for line in report["events"])


def test_terminate_refuses_without_confirmation(
    dev: Stage, fast_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    converge(dev, "eb")
    monkeypatch.setenv("DEPLOY_CONFIG_DIR", str(fast_config))
    with pytest.raises(Exit) as refused:
        eb.terminate(Context(), stage="dev")
    assert refused.value.code == 2
    with pytest.raises(Exit) as prod:
        eb.terminate(Context(), stage="prod", yes=True)
    assert prod.value.code == 2
    assert environment(dev)["Status"] == "Ready"

    eb.terminate(Context(), stage="dev", yes=True)
    assert environment(dev)["Status"] == "Terminating"


def test_up_and_create_write_the_eb_cli_config_once_the_stack_converged(
    make_stage, monkeypatch, tmp_path
) -> None:
    """`inv create` / `inv up` leave server/.elasticbeanstalk/config.yml for `eb logs`, `eb ssh`."""
    from deploy import stack

    monkeypatch.chdir(tmp_path)
    stage = make_stage("dev")

    stack.finish_areas(stage)

    written = (tmp_path / "server" / ".elasticbeanstalk" / "config.yml").read_text()
    assert stage.config.eb.environment in written and stage.config.eb.application in written
