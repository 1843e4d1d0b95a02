"""The reference SQS worker: long-polls the stage's worker queue, runs the registered action of each
message, records every task in the worker log table, and stops taking messages on a shutdown.

A message is JSON: `{"module": "apps.sqsworker.worker", "class": "<Action>", "arguments": {...}}`.
It is deleted only after its action succeeded; a failed one is left in the queue, comes back after
the queue's visibility timeout and reaches the dead-letter queue after `maxReceiveCount` receives.

`WorkerShutDownAction` (arguments `deploy_id`, `timestamp`) is how `inv shutdown-ecs-workers` drains
the service before a deploy: the worker records an acknowledgement (`task_id`
`shutdown/{deploy_id}/{worker}`, `action` `WorkerShutDownAck`), notifies StaffNotifications, and
takes no more messages until it is stopped. A shutdown sent before this worker started was meant for
a worker that is gone: it is deleted and ignored, so a new worker never stops on an old deploy's
message. SIGTERM lets the message in hand finish, then the worker exits 0.

Standard library and boto3 only. The environment it reads is in `WorkerConfig.from_environ`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

MODULE = "apps.sqsworker.worker"
ACK_ACTION = "WorkerShutDownAck"
DEFAULT_WAIT_SECONDS = 20
DEFAULT_TTL_DAYS = 31
IDLE_SECONDS = 0.2
# A shutdown stamped this long before the worker started may still be meant for it (clock skew
# between the operator's machine and the instance).
SHUTDOWN_SKEW_SECONDS = 5.0
METADATA_TIMEOUT_SECONDS = 2.0
# Receive errors in a row before the worker exits 1 (ECS replaces it); the pause doubles each time.
MAX_RECEIVE_FAILURES = 5
RECEIVE_RETRY_SECONDS = 0.5

log = logging.getLogger("sqsworker")


class ConfigError(ValueError):
    """The environment does not say which queue or table to use."""


class ActionError(Exception):
    """A message this worker cannot run (bad JSON, unknown action, bad arguments)."""


def iso_utc(epoch: float) -> str:
    """ISO-8601 UTC with microseconds and a Z, e.g. `2026-11-28T16:02:21.123456Z`: one fixed width,
    so strings sort as the times they stand for (the log index's range key)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class WorkerConfig:
    stage: str
    queue_name: str
    log_table: str
    staff_topic: str | None
    ttl_days: int
    wait_seconds: int
    region: str | None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> WorkerConfig:
        stage = environ.get("IOTILE_STAGE", "")
        queue = environ.get("WORKER_QUEUE_NAME") or (f"iotile-worker-{stage}" if stage else "")
        table = environ.get("WORKER_LOG_TABLE") or (f"iotile-worker-logs-{stage}" if stage else "")
        if not queue or not table:
            raise ConfigError("set IOTILE_STAGE, or WORKER_QUEUE_NAME and WORKER_LOG_TABLE")
        return cls(
            stage=stage,
            queue_name=queue,
            log_table=table,
            staff_topic=environ.get("STAFF_NOTIFICATIONS_TOPIC_ARN") or None,
            ttl_days=_int(environ, "WORKER_LOG_TTL_DAYS", DEFAULT_TTL_DAYS),
            wait_seconds=min(_int(environ, "WORKER_WAIT_SECONDS", DEFAULT_WAIT_SECONDS), 20),
            region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None,
        )


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "")
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {text!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    return value


def worker_identity(environ: Mapping[str, str], fetch: Callable[[str], bytes] | None = None) -> str:
    """The ECS task ARN from the task metadata endpoint (real ECS sets the variable), else
    IOTILE_WORKER_ID (the emulator sets the task ARN there), else `hostname:pid`."""
    metadata = environ.get("ECS_CONTAINER_METADATA_URI_V4")
    if metadata:
        try:
            document = json.loads((fetch or _fetch)(metadata.rstrip("/") + "/task"))
            return str(document["TaskARN"])
        except (OSError, ValueError, KeyError) as exc:
            log.warning("task metadata unreadable (%s): using another identity", exc)
    return environ.get("IOTILE_WORKER_ID") or f"{socket.gethostname()}:{os.getpid()}"


def _fetch(url: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=METADATA_TIMEOUT_SECONDS) as response:
        return response.read()


class WorkerContext:
    """What an action may use: the config, the worker's identity and its AWS clients."""

    def __init__(self, config: WorkerConfig, identity: str, started: float) -> None:
        self.config, self.identity, self.started = config, identity, started
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                import boto3

                self._clients[service] = boto3.client(service, region_name=self.config.region)
            return self._clients[service]

    def expires_at(self, now: float) -> int:
        return int(now + self.config.ttl_days * 86400)

    def put_log(self, item: Mapping[str, str | int | float]) -> None:
        """One item in the worker log table (strings as S, numbers as N)."""
        typed = {
            key: {"N": str(value)} if isinstance(value, int | float) else {"S": str(value)}
            for key, value in item.items()
        }
        self.client("dynamodb").put_item(TableName=self.config.log_table, Item=typed)


class Action:
    """One kind of message. Subclasses set what `execute` does; registered by class name."""

    registry: ClassVar[dict[str, type[Action]]] = {}
    # Set by the shutdown: the worker takes no more messages after this one.
    stops_worker: ClassVar[bool] = False

    def __init__(self, context: WorkerContext, arguments: Mapping[str, Any]) -> None:
        self.context, self.arguments = context, arguments

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Action.registry[cls.__name__] = cls

    def execute(self) -> None:
        raise NotImplementedError


class WorkerHealthCheckAction(Action):
    """Proves a worker takes messages: its task record is the answer the health check reads."""

    def execute(self) -> None:
        log.info("health check ok (stage %s)", self.context.config.stage or "-")


class WorkerSleepAction(Action):
    """Stands for a long task (tests and benchmarks): sleeps `seconds` (at most 60)."""

    def execute(self) -> None:
        time.sleep(min(float(self.arguments.get("seconds", 1)), 60.0))


class WorkerShutDownAction(Action):
    """Acknowledge a deploy's shutdown, notify staff, then take no more messages."""

    stops_worker = True

    def execute(self) -> None:
        deploy_id = str(self.arguments.get("deploy_id") or "")
        if not deploy_id:
            raise ActionError("WorkerShutDownAction needs a deploy_id")
        self.context.put_log(self.acknowledgement(deploy_id, time.time()))
        self.notify(deploy_id)

    def is_stale(self) -> bool:
        """Sent before this worker started: meant for a worker that is gone."""
        stamp = self.arguments.get("timestamp")
        try:
            sent = parse_iso(str(stamp))
        except ValueError:
            return False
        return sent < self.context.started - SHUTDOWN_SKEW_SECONDS

    def acknowledgement(self, deploy_id: str, now: float) -> dict[str, str | int]:
        worker = self.context.identity
        return {
            "task_id": f"shutdown/{deploy_id}/{worker}",
            "action": ACK_ACTION,
            "started_at": iso_utc(now),
            "deploy_id": deploy_id,
            "worker": worker,
            "expires_at": self.context.expires_at(now),
        }

    def notify(self, deploy_id: str) -> None:
        topic = self.context.config.staff_topic
        if not topic:
            return
        stage = self.context.config.stage or "-"
        try:
            self.context.client("sns").publish(
                TopicArn=topic,
                Subject=f"iotile worker stopped taking messages ({stage})"[:100],
                Message=f"Worker {self.context.identity} acknowledged shutdown {deploy_id} on stage {stage}.",
            )
        except Exception as exc:  # the acknowledgement is what the deploy waits for; a lost e-mail is not
            log.warning("shutdown %s: could not notify staff: %s", deploy_id, exc)


def parse_message(context: WorkerContext, body: str) -> Action:
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise ActionError(f"message is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ActionError("message is not a JSON object")
    name, module = document.get("class"), document.get("module")
    arguments = document.get("arguments") or {}
    if module != MODULE or name not in Action.registry:
        raise ActionError(f"unknown action {module}.{name}")
    if not isinstance(arguments, dict):
        raise ActionError("arguments must be a JSON object")
    return Action.registry[name](context, arguments)


def action_name(body: str) -> str:
    try:
        name = json.loads(body).get("class")
    except (ValueError, AttributeError):
        return "unknown"
    return str(name) if name else "unknown"


class Worker:
    """The receive loop. `state` is `polling`, `working` (a message in hand) or `stopped` (after a
    shutdown acknowledgement); `request_stop()` (SIGTERM) ends the loop once no message is in hand."""

    def __init__(self, context: WorkerContext) -> None:
        self.context = context
        self.state = "polling"
        self.stop_requested = threading.Event()
        self.queue_url: str | None = None

    def request_stop(self) -> None:
        self.stop_requested.set()

    def run(self) -> int:
        log.info("worker %s polling %s", self.context.identity, self.context.config.queue_name)
        failures = 0
        while not self.stop_requested.is_set():
            if self.state == "stopped":
                self.stop_requested.wait(IDLE_SECONDS)
                continue
            try:
                messages = self.receive()
            except Exception as exc:  # SQS unreachable or refusing: retry a while, then give up
                failures += 1
                log.warning("receive failed (%d in a row): %s", failures, exc)
                if failures >= MAX_RECEIVE_FAILURES:
                    log.error("worker %s gives up: the queue cannot be read", self.context.identity)
                    return 1
                self.stop_requested.wait(RECEIVE_RETRY_SECONDS * 2 ** (failures - 1))
                continue
            failures = 0
            for message in messages:
                self.handle(message)
            if not messages and not self.context.config.wait_seconds:
                # Short polling (WORKER_WAIT_SECONDS=0): pause between empty answers.
                self.stop_requested.wait(IDLE_SECONDS)
        log.info("worker %s stopped", self.context.identity)
        return 0

    def receive(self) -> list[dict[str, Any]]:
        sqs = self.context.client("sqs")
        if self.queue_url is None:
            self.queue_url = sqs.get_queue_url(QueueName=self.context.config.queue_name)["QueueUrl"]
        answer = sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=self.context.config.wait_seconds,
        )
        messages = answer.get("Messages", [])
        if messages:
            self.state = "working"
        return messages

    def handle(self, message: dict[str, Any]) -> None:
        """Run one message's action, record it, delete it only when it succeeded."""
        self.state = "working"
        started = time.time()
        body = message.get("Body", "")
        status, error, stops = "ok", None, False
        try:
            action = parse_message(self.context, body)
            if isinstance(action, WorkerShutDownAction) and action.is_stale():
                log.info("ignoring a shutdown sent before this worker started: %s", body)
            else:
                action.execute()
                stops = action.stops_worker
        except Exception as exc:  # any failure of an action leaves its message for redelivery
            status, error = "failed", f"{type(exc).__name__}: {exc}"
        finished = time.time()
        self.record(message["MessageId"], action_name(body), started, finished, status, error)
        if status == "ok":
            self.delete(message)
        log.info(
            "task %s %s %s%s", message["MessageId"], action_name(body), status, f": {error}" if error else ""
        )
        self.state = "stopped" if stops else "polling"

    def delete(self, message: dict[str, Any]) -> None:
        try:
            self.context.client("sqs").delete_message(
                QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        except Exception as exc:  # it comes back after the visibility timeout: logged, not fatal
            log.error("task %s ran but could not be deleted: %s", message["MessageId"], exc)

    def record(
        self, task_id: str, action: str, started: float, finished: float, status: str, error: str | None
    ) -> None:
        item: dict[str, str | int | float] = {
            "task_id": task_id,
            "action": action,
            "started_at": iso_utc(started),
            "finished_at": iso_utc(finished),
            "duration": round(finished - started, 6),
            "status": status,
            "worker": self.context.identity,
            "expires_at": self.context.expires_at(finished),
        }
        if error:
            item["error"] = error[:1000]
        try:
            self.context.put_log(item)
        except Exception as exc:  # the task ran: losing its log line must not make it run twice
            log.error("task %s: could not record it in %s: %s", task_id, self.context.config.log_table, exc)
