"""The functions end to end through the CLI on the emulator: every function, schedule and trigger
with its original name, a second deploy that changes nothing, one function's code change updating
it alone, `lambdas.invoke` running the real health handler, and a bad function.yaml refused."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import CONFIG, ROOT
from tests.helpers import emulator_client

pytestmark = pytest.mark.e2e

SCHEDULES = {
    "hour-worker-check-dev",
    "device_check-dev",
    "hour-stream-data-check-dev",
    "day-clean-up-dev",
    "day-collect-stats-dev",
    "day-collect-dbstats-dev",
}


@pytest.fixture
def functions_env(tmp_path) -> dict[str, str]:
    """serverless/ copied with s3image's requirements emptied (no pip, no network in tests), and a
    config folder pointing lambdas.source at the copy."""
    source = tmp_path / "serverless"
    shutil.copytree(ROOT / "serverless", source)
    (source / "s3image" / "requirements.txt").write_text("")
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config)
    with (config / "dev.yaml").open("a", encoding="utf-8") as handle:
        handle.write(f"\nlambdas:\n  source: {source}\n")
    return {"DEPLOY_CONFIG_DIR": str(config), "DEPLOY_CACHE_DIR": str(tmp_path / "cache")}


def client(emulator, service: str):
    return emulator_client(emulator.endpoint_url, service)


def test_deploy_deploy_again_change_one_and_invoke(inv, emulator, functions_env, tmp_path) -> None:
    for area in ("iam", "s3", "sns", "sqs"):
        made = inv(f"{area}.create", "--stage", "dev", env=functions_env)
        assert made.code == 0, made.output

    deployed = inv("lambdas.deploy", "--stage", "dev", env=functions_env)

    assert deployed.code == 0, deployed.output
    functions = client(emulator, "lambda").list_functions()["Functions"]
    assert {f["FunctionName"] for f in functions} == {
        "iotile-health-dev",
        "iotile-utils-deleteS3Obj-dev",
        "iotile-s3image-dev",
        "iotile-process-upload-sxd-dev",
    }
    rules = {r["Name"]: r["State"] for r in client(emulator, "events").list_rules()["Rules"]}
    assert set(rules) == SCHEDULES and rules["day-collect-stats-dev"] == "DISABLED"
    sns = client(emulator, "sns")
    endpoints = {
        topic: [s["Endpoint"] for s in sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]]
        for topic, arn in (
            (t["TopicArn"].rsplit(":", 1)[1], t["TopicArn"]) for t in sns.list_topics()["Topics"]
        )
    }
    assert endpoints["iotile--delete-s3--dev"][0].endswith(":function:iotile-utils-deleteS3Obj-dev")
    assert endpoints["iotile--upload-sxd--dev"][0].endswith(":function:iotile-process-upload-sxd-dev")
    notification = client(emulator, "s3").get_bucket_notification_configuration(Bucket="iotile-cloud-media")
    (image,) = notification["LambdaFunctionConfigurations"]
    assert image["LambdaFunctionArn"].endswith(":function:iotile-s3image-dev")

    status = inv("lambdas.status", "--stage", "dev", "--json", env=functions_env)
    assert status.code == 0, status.output
    rows = {row["folder"]: row for row in json.loads(status.stdout)}
    assert {row["state"] for row in rows.values()} == {"present"}
    assert rows["health"]["code_sha256"] and rows["health"]["last_modified"]
    assert "schedule day-collect-stats-dev (cron(0 12 * * ? *), disabled)" in rows["health"]["triggers"]
    assert rows["s3image"]["triggers"] == ["s3 iotile-cloud-media/dev/incoming/*"]

    emulator.clear()
    again = inv("lambdas.deploy", "--stage", "dev", env=functions_env)
    assert again.code == 0, again.output
    assert emulator.mutating() == [], "unchanged code and config: no call that changes anything"

    with (tmp_path / "serverless" / "utils" / "handler.py").open("a", encoding="utf-8") as handle:
        handle.write("\n# a change\n")
    emulator.clear()
    changed = inv("lambdas.deploy", "--stage", "dev", env=functions_env)
    assert changed.code == 0, changed.output
    made = emulator.mutating()
    assert any(m.startswith("s3:PUT /cloud.iotile.serverless.utils/") for m in made), made
    lambda_calls = [m for m in made if m.startswith("lambda:")]
    assert lambda_calls == ["lambda:PUT /2015-03-31/functions/iotile-utils-deleteS3Obj-dev/code"]

    invoked = inv(
        "lambdas.invoke",
        "health",
        "--stage",
        "dev",
        "--payload",
        '{"action": "worker_healthcheck"}',
        env=functions_env,
    )

    assert invoked.code == 0, invoked.output
    assert json.loads(invoked.stdout)["statusCode"] == 200
    assert "START RequestId" in invoked.stderr
    sqs = client(emulator, "sqs")
    url = sqs.get_queue_url(QueueName="iotile-worker-dev")["QueueUrl"]
    (message,) = sqs.receive_message(QueueUrl=url)["Messages"]
    body = json.loads(message["Body"])
    assert (body["module"], body["class"]) == ("apps.sqsworker.worker", "WorkerHealthCheckAction")


def test_bad_function_yaml_exits_2_naming_file_and_key(inv, emulator, functions_env, tmp_path) -> None:
    path = tmp_path / "serverless" / "health" / "function.yaml"
    path.write_text(path.read_text().replace("memory: 256", "memory: 64"))

    result = inv("lambdas.deploy", "--stage", "dev", "--dry-run", env=functions_env)

    assert result.code == 2, result.output
    assert "serverless/health/function.yaml: memory:" in result.stderr
    assert emulator.requests() == [] or all(not r["mutating"] for r in emulator.requests())
