"""iotile-health-{stage}: the worker's scheduled tasks. Each EventBridge rule passes a constant event
whose "action" picks one: a message on the worker queue, or the cleanup of old worker log items."""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger()
logger.setLevel(logging.INFO)

WORKER_MODULE = "apps.sqsworker.worker"
STREAM_DATA_MODULE = "apps.staff.worker.healthcheck_stream_data"
DOTTED_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
CLASS_NAME = re.compile(r"^[A-Za-z_]\w*$")
SPAN = re.compile(r"^\d*\.?\d*[a-z]$")  # the worker's spans: "d", "h", "0.5h"
BATCH = 25  # BatchWriteItem's limit
BATCH_ATTEMPTS = 6
STOP_BEFORE_TIMEOUT_MS = 15_000


class BadEvent(ValueError):
    """The event cannot be acted on; nothing was sent or deleted."""


class TaskFailed(RuntimeError):
    """The task started but could not finish."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def timestamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.cache
def client(service: str) -> Any:
    return boto3.client(service)


def main(event: Any, context: Any) -> dict:
    """Run the task the event's "action" names; a failure is logged and reported to staff."""
    action = event.get("action") if isinstance(event, dict) else None
    task = ACTIONS.get(action)
    try:
        if task is None:
            raise BadEvent(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
        message = task(event, context)
    except BadEvent as error:
        return failed(400, f"health: {error}", context)
    except (ClientError, BotoCoreError, TaskFailed) as error:
        return failed(500, f"health: {action} failed: {error}", context)
    logger.info(message)
    return {"statusCode": 200, "body": json.dumps({"message": message})}


def worker_healthcheck(event: dict, context: Any) -> str:
    message = f"Worker Health Check at {timestamp(utcnow())}"
    send_to_worker(WORKER_MODULE, "WorkerHealthCheckAction", {"message": message})
    return message


def schedule_task(event: dict, context: Any) -> str:
    module, cls, span = (event.get(key) for key in ("task_module", "task_class", "task_span"))
    if not (isinstance(module, str) and DOTTED_NAME.match(module)):
        raise BadEvent(f"task_module must be a dotted module path, got {module!r}")
    if not (isinstance(cls, str) and CLASS_NAME.match(cls)):
        raise BadEvent(f"task_class must be a class name, got {cls!r}")
    if not (isinstance(span, str) and SPAN.match(span)):
        raise BadEvent(f"task_span must be a span such as 'd' or '0.5h', got {span!r}")
    ts = timestamp(utcnow())
    send_to_worker(module, cls, {"ts": ts, "span": span})
    return f"{cls} scheduled at {ts}"


def stream_data_check(event: dict, context: Any) -> str:
    ts = timestamp(utcnow())
    send_to_worker(STREAM_DATA_MODULE, "HealthCheckStreamDataAction", {"ts": ts})
    return f"Stream Data Health Check at {ts}"


def collect_stats(event: dict, context: Any) -> str:
    ts = timestamp(utcnow())
    send_to_worker(WORKER_MODULE, "WorkerCollectStatsAction", {"ts": ts, "span": "d"})
    return f"Worker collect stats at {ts}"


def cleanup(event: dict, context: Any) -> str:
    """Delete the worker log items started more than WORKER_LOG_RETENTION_DAYS ago (TTL removes
    them too, but only within days of expiry; this keeps the table to the retention)."""
    days = retention_days()
    cutoff = timestamp(utcnow() - dt.timedelta(days=days))
    table = os.environ["WORKER_LOG_TABLE"]
    deleted = 0
    for keys in old_log_keys(table, cutoff):
        for start in range(0, len(keys), BATCH):
            batch = keys[start : start + BATCH]
            delete_batch(table, batch)
            deleted += len(batch)
        if running_out_of_time(context):
            return f"Deleted {deleted} worker log items started before {cutoff}; stopped before the timeout"
    return f"Deleted {deleted} worker log items started before {cutoff}"


def retention_days() -> int:
    raw = os.environ.get("WORKER_LOG_RETENTION_DAYS", "31")
    if not raw.isdigit() or int(raw) < 1:
        raise BadEvent(f"WORKER_LOG_RETENTION_DAYS must be a whole number of days >= 1, got {raw!r}")
    return int(raw)


def old_log_keys(table: str, cutoff: str) -> Iterator[list[dict]]:
    """Each scanned page's keys of the items whose started_at (ISO-8601 UTC) is before cutoff."""
    pages = (
        client("dynamodb")
        .get_paginator("scan")
        .paginate(
            TableName=table,
            FilterExpression="#started < :cutoff",
            ProjectionExpression="#id",
            ExpressionAttributeNames={"#started": "started_at", "#id": "task_id"},
            ExpressionAttributeValues={":cutoff": {"S": cutoff}},
        )
    )
    for page in pages:
        if page["Items"]:
            yield [{"task_id": item["task_id"]} for item in page["Items"]]


def delete_batch(table: str, keys: list[dict]) -> None:
    """Delete up to 25 items, sending back what DynamoDB left unprocessed (throttling) with backoff."""
    requests = {table: [{"DeleteRequest": {"Key": key}} for key in keys]}
    for attempt in range(BATCH_ATTEMPTS):
        requests = client("dynamodb").batch_write_item(RequestItems=requests).get("UnprocessedItems")
        if not requests:
            return
        time.sleep(min(0.1 * 2**attempt, 2.0))
    left = len(requests.get(table, []))
    raise TaskFailed(f"{left} worker log items were still unprocessed after {BATCH_ATTEMPTS} attempts")


def running_out_of_time(context: Any) -> bool:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return remaining is not None and remaining() < STOP_BEFORE_TIMEOUT_MS


ACTIONS: dict[str, Callable[[dict, Any], str]] = {
    "worker_healthcheck": worker_healthcheck,
    "schedule_task": schedule_task,
    "stream_data_check": stream_data_check,
    "collect_stats": collect_stats,
    "cleanup": cleanup,
}


def send_to_worker(module: str, cls: str, arguments: dict) -> None:
    """One message in the worker's format: the server imports `module` and runs `cls(arguments)`."""
    sqs = client("sqs")
    url = queue_url(os.environ["WORKER_QUEUE_NAME"])
    body = json.dumps({"module": module, "class": cls, "arguments": arguments})
    sqs.send_message(QueueUrl=url, MessageBody=body)
    logger.info("queued %s", body)


@functools.cache
def queue_url(name: str) -> str:
    return client("sqs").get_queue_url(QueueName=name)["QueueUrl"]


def failed(status: int, message: str, context: Any) -> dict:
    logger.error(message)
    notify_staff(message, context)
    return {"statusCode": status, "body": json.dumps({"message": message})}


def notify_staff(message: str, context: Any) -> None:
    """Best effort: a failure to notify is logged, never raised over the original failure."""
    try:
        arn = staff_topic_arn(context)
        if arn:
            client("sns").publish(TopicArn=arn, Subject="iotile health function failed", Message=message)
    except (ClientError, BotoCoreError) as error:
        logger.error("could not notify staff: %s", error)


def staff_topic_arn(context: Any) -> str | None:
    """STAFF_NOTIFICATIONS_TOPIC_ARN, else the topic STAFF_NOTIFICATIONS_TOPIC names in this
    function's partition, region and account (no ListTopics permission needed)."""
    if arn := os.environ.get("STAFF_NOTIFICATIONS_TOPIC_ARN"):
        return arn
    name = os.environ.get("STAFF_NOTIFICATIONS_TOPIC")
    if not name:
        return None
    partition, region, account = function_location(context)
    return f"arn:{partition}:sns:{region}:{account}:{name}"


def function_location(context: Any) -> tuple[str, str, str]:
    function_arn = getattr(context, "invoked_function_arn", None)
    if function_arn:
        _, partition, _, region, account, *_ = function_arn.split(":")
        return partition, region, account
    session = boto3.session.Session()
    region = session.region_name or os.environ.get("AWS_REGION", "us-east-1")
    account = client("sts").get_caller_identity()["Account"]
    return session.get_partition_for_region(region), region, account
