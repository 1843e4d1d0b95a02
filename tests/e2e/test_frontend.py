"""The front end end to end through the CLI on the emulator: create, deploy, deploy again, a failed
update, and a terminate that asks first."""

from __future__ import annotations

import shutil

import boto3
import pytest

from tests.conftest import CONFIG

pytestmark = pytest.mark.e2e


@pytest.fixture
def frontend_env(tmp_path) -> dict[str, str]:
    """A config folder whose dev stage ships statics from a folder of the test's own."""
    statics = tmp_path / "staticfiles"
    (statics / "css").mkdir(parents=True)
    (statics / "css" / "app.css").write_text("body { color: #123; }\n")
    (statics / "app.js").write_text("console.log('iotile');\n")
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config)
    with (config / "dev.yaml").open("a", encoding="utf-8") as handle:
        handle.write(f"\ncdn:\n  statics:\n    source: {statics}\n")
    return {"DEPLOY_CONFIG_DIR": str(config)}


def beanstalk(emulator):
    return boto3.client(
        "elasticbeanstalk",
        endpoint_url=emulator.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_create_deploy_and_deploy_again(inv, emulator, frontend_env) -> None:
    created = inv("create", "--stage", "dev", env=frontend_env)
    assert created.code == 0, created.output
    environment = beanstalk(emulator).describe_environments(EnvironmentNames=["iotile-cloud-dev"])
    assert environment["Environments"][0]["Status"] == "Ready"

    emulator.clear()
    deployed = inv("deploy", "--stage", "dev", "--skip-workers", env=frontend_env)

    assert deployed.code == 0, deployed.output
    made = emulator.mutating()
    assert "elasticbeanstalk:CreateApplicationVersion" in made
    assert "elasticbeanstalk:UpdateEnvironment" in made
    assert "s3:PUT /iotile-cloud-statics/dev/static/css/app.css" in made
    (live,) = beanstalk(emulator).describe_environments(EnvironmentNames=["iotile-cloud-dev"])["Environments"]
    versions = beanstalk(emulator).describe_application_versions(ApplicationName="iotile-cloud")
    assert [v["VersionLabel"] for v in versions["ApplicationVersions"]] == [live["VersionLabel"]]
    assert (live["Status"], live["Health"]) == ("Ready", "Green")

    emulator.clear()
    again = inv("deploy", "--stage", "dev", "--skip-workers", env=frontend_env)
    assert again.code == 0, again.output
    assert emulator.mutating() == [], "the same commit again: no version, no static file, no update"


def test_a_failed_update_exits_1_with_the_events(inv, emulator, frontend_env) -> None:
    assert inv("create", "--stage", "dev", env=frontend_env).code == 0
    client = beanstalk(emulator)
    (live,) = client.describe_environments(EnvironmentNames=["iotile-cloud-dev"])["Environments"]
    # The emulator's switch: the next update of this environment fails (see its fill-in).
    client.update_tags_for_resource(
        ResourceArn=live["EnvironmentArn"],
        TagsToAdd=[{"Key": "emulator:fail-next-update", "Value": "health check failed"}],
    )

    failed = inv("deploy", "--stage", "dev", "--skip-statics", "--skip-workers", env=frontend_env)

    assert failed.code == 1, failed.output
    assert "health check failed" in failed.output
    assert "Traceback" not in failed.output


def test_terminate_asks_for_the_stage_name(inv, emulator) -> None:
    refused = inv("eb.terminate", "--stage", "dev", stdin="")
    assert refused.code == 2, refused.output
    assert emulator.mutating() == []
