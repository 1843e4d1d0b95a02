"""The workers end to end on the local stage: the emulator runs the service's tasks as real reference
worker processes. Three workers consume 500 tasks while `shutdown-ecs-workers` returns after exactly
three acknowledgements and `deploy-worker --skip-build` replaces them; the new workers drain the
rest. Every task is processed once, none is lost, none by a worker after its acknowledgement, a
rerun of `deploy-worker` registers nothing and makes no mutating call, a revision whose tasks fail
is rolled back, and terminate-ecs leaves no task."""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

import pytest

from tests.conftest import CONFIG
from tests.helpers import emulator_client

pytestmark = pytest.mark.e2e

STAGE = "local"
CLUSTER, SERVICE = "iotile-cloud-cluster-local", "iotile-cloud-sqs-worker-service"
QUEUE, TABLE = "iotile-worker-local", "iotile-worker-logs-local"
TASKS = 500


def client(emulator: Any, service: str) -> Any:
    return emulator_client(emulator.endpoint_url, service)


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def running(emulator: Any) -> int:
    (service,) = client(emulator, "ecs").describe_services(cluster=CLUSTER, services=[SERVICE])["services"]
    return service["runningCount"] if len(service["deployments"]) == 1 else 0


def send_tasks(emulator: Any, url: str, count: int) -> list[str]:
    sqs = client(emulator, "sqs")
    body = json.dumps(
        {"module": "apps.sqsworker.worker", "class": "WorkerHealthCheckAction", "arguments": {}}
    )
    sent: list[str] = []
    for start in range(0, count, 10):
        entries = [{"Id": str(n), "MessageBody": body} for n in range(start, start + 10)]
        sent += [
            item["MessageId"] for item in sqs.send_message_batch(QueueUrl=url, Entries=entries)["Successful"]
        ]
    return sent


def log_items(emulator: Any) -> list[dict[str, str]]:
    items: list[dict[str, str]] = []
    paginator = client(emulator, "dynamodb").get_paginator("scan")
    for page in paginator.paginate(TableName=TABLE):
        items += [{key: next(iter(value.values())) for key, value in item.items()} for item in page["Items"]]
    return items


def queue_empty(emulator: Any, url: str) -> bool:
    attributes = client(emulator, "sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return attributes == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}


def test_rolling_the_workers_loses_no_task_and_needs_no_manual_step(inv, emulator, tmp_path) -> None:
    up = inv("up", "--stage", STAGE)
    assert up.code == 0, up.output
    wait_for(lambda: running(emulator) == 3, 30, "three workers running")
    url = client(emulator, "sqs").get_queue_url(QueueName=QUEUE)["QueueUrl"]
    described = inv("describe-ecs", "--stage", STAGE, "--json")
    assert described.code == 0, described.output
    service = json.loads(described.stdout)["service"]
    assert (service["running"], service["desired"], service["revision"]) == (
        3,
        3,
        "iotile-cloud-sqs-worker-task-local:1",
    )
    emulator.clear()
    image = service["image"].rsplit(":", 1)[0] + ":preview"
    preview = inv("deploy-worker", "--stage", STAGE, "--image", image, "--dry-run")
    assert preview.code == 0, preview.output
    assert "would shut the workers down, register a new revision" in preview.output
    assert emulator.mutating() == []

    # Three workers busy with 300 tasks when the shutdown comes: it waits until each took its
    # shutdown message (behind those tasks), then 200 more arrive that no worker takes until the deploy.
    sent = send_tasks(emulator, url, 300)
    shutdown = inv("shutdown-ecs-workers", "--stage", STAGE, "--json")
    assert shutdown.code == 0, shutdown.output
    report = json.loads(shutdown.stdout)
    old_workers = report["acknowledged"]
    assert len(old_workers) == 3 and report["missing"] == []
    acks = [i for i in log_items(emulator) if i.get("action") == "WorkerShutDownAck"]
    assert sorted(i["worker"] for i in acks if i["deploy_id"] == report["deploy_id"]) == sorted(old_workers)
    sent += send_tasks(emulator, url, TASKS - 300)

    deployed = inv("deploy-worker", "--stage", STAGE, "--skip-build")
    assert deployed.code == 0, deployed.output
    assert "runs iotile-cloud-sqs-worker-task-local:1, stable" in deployed.output
    wait_for(lambda: queue_empty(emulator, url), 60, "the new workers drain the queue")

    records = {i["task_id"]: i for i in log_items(emulator) if i.get("action") == "WorkerHealthCheckAction"}
    assert len(sent) == TASKS and set(records) == set(sent), "every task processed, none lost"
    assert all(records[m]["status"] == "ok" for m in sent)
    for worker, acknowledged_at in old_workers.items():
        after = [r for r in records.values() if r["worker"] == worker and r["started_at"] > acknowledged_at]
        assert after == [], f"{worker} took tasks after its acknowledgement"
    new_workers = {r["worker"] for r in records.values()} - set(old_workers)
    assert new_workers, "the new workers drained the rest"
    dead_letters = client(emulator, "sqs").get_queue_url(QueueName=f"{QUEUE}-dlq")["QueueUrl"]
    assert queue_empty(emulator, dead_letters)

    emulator.clear()
    again = inv("deploy-worker", "--stage", STAGE, "--skip-build")
    assert again.code == 0, again.output
    assert "nothing to deploy" in again.output, again.output
    assert emulator.mutating() == [], "nothing changed: no revision, no shutdown, no update"
    family = "iotile-cloud-sqs-worker-task-local"
    assert len(client(emulator, "ecs").list_task_definitions(familyPrefix=family)["taskDefinitionArns"]) == 1

    # `deploy` ships the workers the same way after the app: nothing changed for them, so no
    # shutdown is sent and no ECS call mutates.
    emulator.clear()
    shipped = inv("deploy", "--stage", STAGE, "--skip-statics", "--skip-lambdas", "--json")
    assert shipped.code == 0, shipped.output
    assert json.loads(shipped.stdout)["workers"]["changed"] is False
    assert [c for c in emulator.mutating() if c.startswith(("ecs:", "sqs:"))] == []

    # A revision whose tasks fail: EMULATOR_FAIL_START=1 in the container's environment makes the
    # emulator's task exit 1 at start. The deploy fails fast on the service's events and the
    # service goes back to the revision it ran.
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config)
    with (config / "local.yaml").open("a", encoding="utf-8") as handle:
        handle.write('\necs:\n  environment: {EMULATOR_FAIL_START: "1"}\n')
    failed = inv("update-ecs", "--stage", STAGE, "--timeout", "60", env={"DEPLOY_CONFIG_DIR": str(config)})
    assert failed.code == 1, failed.output
    assert "Essential container in task exited" in failed.output
    assert "rolled back to iotile-cloud-sqs-worker-task-local:1" in failed.output
    assert "Traceback" not in failed.output
    wait_for(lambda: running(emulator) == 3, 30, "the first revision runs again")
    (service,) = client(emulator, "ecs").describe_services(cluster=CLUSTER, services=[SERVICE])["services"]
    assert service["taskDefinition"].endswith(":1")

    gone = inv("terminate-ecs", "--stage", STAGE, "--yes")
    assert gone.code == 0, gone.output
    wait_for(lambda: not client(emulator, "ecs").list_tasks(cluster=CLUSTER)["taskArns"], 30, "no task left")
