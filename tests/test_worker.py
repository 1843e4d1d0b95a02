"""The reference worker (server/apps/sqsworker) against moto: every task recorded, a message deleted
only after its action succeeded, failures left for the dead-letter queue, a shutdown acknowledged
(found the way the deploy tool looks for it), notified and followed by no more messages, a stale
shutdown ignored, and SIGTERM finishing the message in hand (a real process against the emulator)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import ROOT

SERVER = ROOT / "server"
sys.path.insert(0, str(SERVER))

from apps.sqsworker.worker import (  # noqa: E402
    ACK_ACTION,
    MODULE,
    ConfigError,
    Worker,
    WorkerConfig,
    WorkerContext,
    iso_utc,
    worker_identity,
)

REGION = "us-east-1"
QUEUE, DLQ, TABLE, INDEX = (
    "iotile-worker-test",
    "iotile-worker-test-dlq",
    "iotile-worker-logs-test",
    "action-started-index",
)
WORKER_ID = "arn:aws:ecs:us-east-1:123456789012:task/iotile-cloud-cluster-test/0123456789abcdef"


def message(action: str, **arguments: Any) -> str:
    return json.dumps({"module": MODULE, "class": action, "arguments": arguments})


class Stack:
    """The queue (with its dead-letter queue), the log table and the staff topic a worker uses."""

    def __init__(self, endpoint_url: str | None = None, visibility: int = 0) -> None:
        kwargs = {"region_name": REGION, "endpoint_url": endpoint_url}
        self.sqs = boto3.client("sqs", **kwargs)
        self.ddb = boto3.client("dynamodb", **kwargs)
        self.sns = boto3.client("sns", **kwargs)
        dlq_url = self.sqs.create_queue(QueueName=DLQ)["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
        redrive = {"deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"], "maxReceiveCount": 2}
        self.dlq_url = dlq_url
        self.url = self.sqs.create_queue(
            QueueName=QUEUE,
            Attributes={"VisibilityTimeout": str(visibility), "RedrivePolicy": json.dumps(redrive)},
        )["QueueUrl"]
        self.ddb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "task_id", "KeyType": "HASH"}],
            AttributeDefinitions=[
                {"AttributeName": name, "AttributeType": "S"} for name in ("task_id", "action", "started_at")
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": INDEX,
                    "KeySchema": [
                        {"AttributeName": "action", "KeyType": "HASH"},
                        {"AttributeName": "started_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        self.topic = self.sns.create_topic(Name="StaffNotifications")["TopicArn"]
        self.inbox = self.sqs.create_queue(QueueName="staff-inbox")["QueueUrl"]
        inbox_arn = self.sqs.get_queue_attributes(QueueUrl=self.inbox, AttributeNames=["QueueArn"])
        self.sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=inbox_arn["Attributes"]["QueueArn"])

    def environ(self, **extra: str) -> dict[str, str]:
        return {
            "IOTILE_STAGE": "test",
            "WORKER_QUEUE_NAME": QUEUE,
            "WORKER_LOG_TABLE": TABLE,
            "STAFF_NOTIFICATIONS_TOPIC_ARN": self.topic,
            "WORKER_LOG_TTL_DAYS": "31",
            "WORKER_WAIT_SECONDS": "0",  # short polls: a stopped loop ends within IDLE_SECONDS
            "AWS_DEFAULT_REGION": REGION,
            **extra,
        }

    def send(self, body: str) -> str:
        return self.sqs.send_message(QueueUrl=self.url, MessageBody=body)["MessageId"]

    def record(self, task_id: str) -> dict[str, str] | None:
        item = self.ddb.get_item(TableName=TABLE, Key={"task_id": {"S": task_id}}, ConsistentRead=True)
        found = item.get("Item")
        return {k: next(iter(v.values())) for k, v in found.items()} if found else None

    def acknowledgements(self, deploy_id: str, since: float) -> list[dict[str, str]]:
        """As the deploy tool finds them: the log index by action and start time, then the deploy."""
        answer = self.ddb.query(
            TableName=TABLE,
            IndexName=INDEX,
            KeyConditionExpression="#a = :ack AND started_at >= :since",
            FilterExpression="deploy_id = :deploy",
            ExpressionAttributeNames={"#a": "action"},
            ExpressionAttributeValues={
                ":ack": {"S": ACK_ACTION},
                ":since": {"S": iso_utc(since)},
                ":deploy": {"S": deploy_id},
            },
        )
        return [{k: next(iter(v.values())) for k, v in item.items()} for item in answer["Items"]]

    def counts(self, url: str | None = None) -> tuple[int, int]:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url or self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]), int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )


def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {condition}")


@pytest.fixture
def stack(aws: None) -> Stack:
    return Stack()


@pytest.fixture
def running(stack: Stack) -> Iterator[Callable[..., Worker]]:
    """Start the worker loop in a thread (as its process would run it); stopped after the test."""
    started: list[tuple[Worker, threading.Thread]] = []

    def start(started_at: float | None = None) -> Worker:
        config = WorkerConfig.from_environ(stack.environ())
        worker = Worker(WorkerContext(config, WORKER_ID, started_at or time.time()))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread))
        return worker

    yield start
    for worker, thread in started:
        worker.request_stop()
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_health_check_is_recorded_and_its_message_deleted(
    stack: Stack, running: Callable[..., Worker]
) -> None:
    before = time.time()
    task_id = stack.send(message("WorkerHealthCheckAction"))
    running()

    record = wait_for(lambda: stack.record(task_id))

    assert record["action"] == "WorkerHealthCheckAction"
    assert record["status"] == "ok" and "error" not in record
    assert record["worker"] == WORKER_ID
    assert iso_utc(before) <= record["started_at"] <= record["finished_at"]
    assert len(record["started_at"]) == len("2026-01-01T00:00:00.000000Z")
    assert abs(int(record["expires_at"]) - (before + 31 * 86400)) < 60
    assert wait_for(lambda: stack.counts() == (0, 0))


def test_a_failed_action_keeps_its_message_until_the_dead_letter_queue_takes_it(
    stack: Stack, running: Callable[..., Worker]
) -> None:
    task_id = stack.send(json.dumps({"module": MODULE, "class": "NoSuchAction", "arguments": {}}))
    running()

    # maxReceiveCount 2: received twice, failed twice, then moved by SQS on the next receive.
    assert wait_for(lambda: stack.counts(stack.dlq_url)[0] == 1)
    record = stack.record(task_id)
    assert record["status"] == "failed" and "unknown action" in record["error"]
    assert stack.counts() == (0, 0)


def test_shutdown_is_acknowledged_notified_and_then_no_more_messages_are_taken(
    stack: Stack, running: Callable[..., Worker]
) -> None:
    sent = time.time()
    shutdown = stack.send(message("WorkerShutDownAction", deploy_id="d-1", timestamp=iso_utc(sent)))
    worker = running()

    (ack,) = wait_for(lambda: stack.acknowledgements("d-1", sent - 5))
    later = [stack.send(message("WorkerHealthCheckAction")) for _ in range(3)]
    time.sleep(1.0)  # five polls' time: a worker still polling would have taken one

    assert ack["task_id"] == f"shutdown/d-1/{WORKER_ID}" and ack["worker"] == WORKER_ID
    assert stack.record(shutdown)["status"] == "ok"
    assert stack.acknowledgements("d-2", sent - 5) == []
    assert worker.state == "stopped"
    assert [stack.record(task_id) for task_id in later] == [None, None, None]
    assert stack.counts() == (3, 0)
    (note,) = stack.sqs.receive_message(QueueUrl=stack.inbox)["Messages"]
    assert "d-1" in json.loads(note["Body"])["Message"]


def test_a_shutdown_sent_before_the_worker_started_is_deleted_and_ignored(
    stack: Stack, running: Callable[..., Worker]
) -> None:
    stale = stack.send(
        message("WorkerShutDownAction", deploy_id="old", timestamp=iso_utc(time.time() - 3600))
    )
    after = stack.send(message("WorkerHealthCheckAction"))
    worker = running()

    assert wait_for(lambda: stack.record(after))
    assert stack.record(stale)["status"] == "ok"
    assert stack.acknowledgements("old", 0) == []
    assert worker.state != "stopped"


def test_a_shutdown_without_deploy_id_fails_and_the_worker_keeps_going(
    stack: Stack, running: Callable[..., Worker]
) -> None:
    bad = stack.send(message("WorkerShutDownAction"))
    worker = running()

    assert wait_for(lambda: (stack.record(bad) or {}).get("status") == "failed")
    assert worker.state != "stopped"


def test_a_queue_that_cannot_be_read_is_retried_then_the_worker_exits_1(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apps.sqsworker import worker as module

    monkeypatch.setattr(module, "RECEIVE_RETRY_SECONDS", 0.01)
    worker = Worker(WorkerContext(WorkerConfig.from_environ(stack.environ()), WORKER_ID, time.time()))
    stack.sqs.delete_queue(QueueUrl=stack.url)

    assert worker.run() == 1


def test_config_comes_from_the_environment() -> None:
    config = WorkerConfig.from_environ({"IOTILE_STAGE": "dev"})

    assert (config.queue_name, config.log_table) == ("iotile-worker-dev", "iotile-worker-logs-dev")
    assert (config.wait_seconds, config.ttl_days, config.staff_topic) == (20, 31, None)
    with pytest.raises(ConfigError, match="IOTILE_STAGE"):
        WorkerConfig.from_environ({})
    with pytest.raises(ConfigError, match="WORKER_LOG_TTL_DAYS"):
        WorkerConfig.from_environ({"IOTILE_STAGE": "dev", "WORKER_LOG_TTL_DAYS": "a month"})


def test_identity_is_the_task_arn_then_the_worker_id_then_host_and_pid() -> None:
    metadata = {"ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/abc"}
    asked: list[str] = []

    def fetch(url: str) -> bytes:
        asked.append(url)
        return json.dumps({"TaskARN": WORKER_ID, "Cluster": "c"}).encode()

    def unreachable(url: str) -> bytes:
        raise OSError("no route")

    assert worker_identity(metadata, fetch) == WORKER_ID
    assert asked == ["http://169.254.170.2/v4/abc/task"]
    assert worker_identity({**metadata, "IOTILE_WORKER_ID": "w-1"}, unreachable) == "w-1"
    assert worker_identity({}).endswith(f":{os.getpid()}")


# -- the worker as a process, against the emulator --------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    from deploy.emulator.server import EmulatorServer

    with EmulatorServer() as server:
        yield server


def spawn(stack: Stack, endpoint_url: str, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": endpoint_url,
        **stack.environ(IOTILE_WORKER_ID=WORKER_ID, **extra),
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "apps.sqsworker"],
            cwd=SERVER,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_sigterm_finishes_the_message_in_hand_then_exits(emulator: Any, tmp_path: Path) -> None:
    emulator.reset()
    stack = Stack(emulator.endpoint_url, visibility=60)
    task_id = stack.send(message("WorkerSleepAction", seconds=1.5))
    process = spawn(stack, emulator.endpoint_url, tmp_path / "worker.log")
    try:
        wait_for(lambda: stack.counts() == (0, 1))  # taken: in hand
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0, (tmp_path / "worker.log").read_text()
    finally:
        process.kill()
        process.wait()

    assert stack.record(task_id)["status"] == "ok"
    assert stack.counts() == (0, 0)


def test_sigterm_ends_a_long_poll_at_once(emulator: Any, tmp_path: Path) -> None:
    emulator.reset()
    stack = Stack(emulator.endpoint_url)
    process = spawn(stack, emulator.endpoint_url, tmp_path / "worker.log", WORKER_WAIT_SECONDS="20")
    try:
        wait_for(lambda: b"polling" in (tmp_path / "worker.log").read_bytes())
        time.sleep(0.2)
        stopped = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        assert time.monotonic() - stopped < 2
    finally:
        process.kill()
        process.wait()


def test_the_process_refuses_an_environment_without_a_queue(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "apps.sqsworker"],
        cwd=SERVER,
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert "IOTILE_STAGE" in result.stderr
