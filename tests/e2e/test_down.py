"""`down` end to end through the CLI on one emulator: after `up` and some data, a dry run that
changes nothing, a refusal without confirmation that calls nothing, the compute and front end
removed with the data intact, a second `down` with nothing to do, and `up` bringing it all back."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import CONFIG
from tests.helpers import emulator_client

pytestmark = pytest.mark.e2e

STAGE = ("--stage", "dev")
QUEUE = "iotile-report-dev"  # no worker reads it, so a message stays until someone does
TABLE = "iotile-worker-logs-dev"
BUCKET = "iotile-cloud-media"
SECRET = "/iotile-cloud/dev/SECRET_KEY"


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """The dev stage, with its distributions removed on down too."""
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config)
    with (config / "dev.yaml").open("a", encoding="utf-8") as handle:
        handle.write("\ncdn:\n  remove_on_down: true\n")
    return {"DEPLOY_CONFIG_DIR": str(config)}


def client(emulator, service: str):
    return emulator_client(emulator.endpoint_url, service)


def put_data(emulator) -> None:
    sqs = client(emulator, "sqs")
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"], MessageBody="kept")
    client(emulator, "dynamodb").put_item(TableName=TABLE, Item={"task_id": {"S": "kept"}})
    client(emulator, "s3").put_object(Bucket=BUCKET, Key="dev/kept.txt", Body=b"kept")
    client(emulator, "ssm").put_parameter(Name=SECRET, Value="kept-value", Type="SecureString")


def data(emulator) -> tuple[str, bool, bytes, str]:
    sqs = client(emulator, "sqs")
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    count = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    item = client(emulator, "dynamodb").get_item(TableName=TABLE, Key={"task_id": {"S": "kept"}})
    body = client(emulator, "s3").get_object(Bucket=BUCKET, Key="dev/kept.txt")["Body"].read()
    secret = client(emulator, "ssm").get_parameter(Name=SECRET, WithDecryption=True)["Parameter"]["Value"]
    return count["Attributes"]["ApproximateNumberOfMessages"], "Item" in item, body, secret


KEPT = ("1", True, b"kept", "kept-value")


def compute(emulator) -> dict[str, object]:
    """What `down` removes, as AWS reports it."""
    environments = client(emulator, "elasticbeanstalk").describe_environments(
        EnvironmentNames=["iotile-cloud-dev"], IncludeDeleted=False
    )["Environments"]
    services = client(emulator, "ecs").describe_services(
        cluster="iotile-cloud-cluster-dev", services=["iotile-cloud-sqs-worker-service"]
    )["services"]
    groups = client(emulator, "autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    distributions = client(emulator, "cloudfront").list_distributions()["DistributionList"].get("Items") or []
    return {
        "environment": [e["Status"] for e in environments if e["Status"] != "Terminated"],
        "service": [s["status"] for s in services],
        "capacity": [(g["MinSize"], g["DesiredCapacity"]) for g in groups],
        "functions": len(client(emulator, "lambda").list_functions()["Functions"]),
        "distributions": len(distributions),
    }


def test_down_keeps_the_data_and_up_brings_the_stage_back(inv, emulator, env) -> None:
    assert inv("up", *STAGE, env=env).code == 0
    put_data(emulator)
    before = compute(emulator)
    assert before["environment"] == ["Ready"] and before["service"] == ["ACTIVE"]
    assert before["functions"] == 4 and before["distributions"] == 2
    emulator.clear()

    preview = inv("down", *STAGE, "--dry-run", "--json", env=env)
    assert preview.code == 0, preview.output
    planned = [
        f"{step['service']}:{step['operation']}"
        for change in json.loads(preview.stdout)["changes"]
        for step in change["steps"]
        if step["kind"] == "call"
    ]
    for operation in ("TerminateEnvironment", "DeleteService", "DeleteFunction", "DeleteDistribution"):
        assert any(p.endswith(f":{operation}") for p in planned), operation
    assert emulator.mutating() == []
    emulator.clear()

    refused = inv("down", *STAGE, env=env, stdin="")
    assert refused.code == 2, refused.output
    assert "--yes" in refused.stderr
    assert emulator.requests() == [], "no call before the confirmation"

    done = inv("down", *STAGE, "--yes", env=env)
    assert done.code == 0, done.output
    made = emulator.mutating()
    assert len(made) == len(planned), f"the dry run showed exactly what went: {planned} / {made}"
    after = compute(emulator)
    assert after["environment"] == [] and after["service"] in ([], ["INACTIVE"])
    assert after["capacity"] == [(0, 0)] and after["functions"] == 0 and after["distributions"] == 0
    assert data(emulator) == KEPT
    emulator.clear()

    again = inv("down", *STAGE, "--yes", env=env)
    assert again.code == 0, again.output
    assert emulator.mutating() == [], "a second down finds nothing to remove"
    assert "no compute or front end left for `down` to remove" in again.stdout

    back = inv("up", *STAGE, env=env)
    assert back.code == 0, back.output
    restored = compute(emulator)
    assert restored["environment"] == ["Ready"] and restored["service"] == ["ACTIVE"]
    assert restored["functions"] == 4 and restored["distributions"] == 2
    assert restored["capacity"] != [(0, 0)]
    assert data(emulator) == KEPT
