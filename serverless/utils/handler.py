"""iotile-utils-deleteS3Obj-{stage}: deletes the S3 objects the server lists on iotile--delete-s3--{stage}.

The SNS message is a JSON list of {"bucket": ..., "key": ...}. Every pair is checked before anything
is deleted: a bucket outside ALLOWED_BUCKETS, a key outside ALLOWED_PREFIX or a malformed message
deletes nothing. Refusals and failed deletions are reported to StaffNotifications."""

from __future__ import annotations

import functools
import json
import logging
import os
from collections import defaultdict
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger()
logger.setLevel(logging.INFO)

MAX_OBJECTS = 1000  # per message; also DeleteObjects' limit per call


class BadMessage(ValueError):
    """The message is refused as a whole; nothing was deleted."""


@functools.cache
def client(service: str) -> Any:
    return boto3.client(service)


def delete_s3_obj(event: Any, context: Any) -> dict:
    try:
        targets = requested_objects(event)
    except BadMessage as error:
        message = f"deleteS3Obj refused a message, nothing deleted: {error}"
        report(message, context)
        return {"statusCode": 400, "body": message}
    failures = delete_objects(targets)
    if failures:
        lines = "\n".join(f"s3://{f['bucket']}/{f['key']}: {f['error']}" for f in failures)
        report(f"deleteS3Obj could not delete {len(failures)} of {len(targets)} objects:\n{lines}", context)
        return {"statusCode": 500, "body": f"{len(failures)} objects not deleted", "failed": failures}
    logger.info("deleted %d objects", len(targets))
    return {"statusCode": 200, "deleted": [{"bucket": b, "key": k} for b, k in targets]}


def requested_objects(event: Any) -> list[tuple[str, str]]:
    """The (bucket, key) pairs of every SNS record, all checked; raises BadMessage on the first fault."""
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list) or not records:
        raise BadMessage("no SNS records in the event")
    targets: list[tuple[str, str]] = []
    for record in records:
        targets.extend(objects_of(sns_message(record)))
    if len(targets) > MAX_OBJECTS:
        raise BadMessage(f"{len(targets)} objects listed; at most {MAX_OBJECTS} per message")
    return targets


def sns_message(record: Any) -> Any:
    message = record.get("Sns", {}).get("Message") if isinstance(record, dict) else None
    if not isinstance(message, str):
        raise BadMessage("a record has no Sns.Message")
    try:
        return json.loads(message)
    except json.JSONDecodeError as error:
        raise BadMessage(f"the message is not JSON ({error.msg})") from None


def objects_of(payload: Any) -> list[tuple[str, str]]:
    if not isinstance(payload, list) or not payload:
        raise BadMessage("the message must be a non-empty JSON list of {bucket, key}")
    allowed, prefix = allowed_buckets(), os.environ.get("ALLOWED_PREFIX", "")
    pairs = []
    for index, item in enumerate(payload):
        bucket = item.get("bucket") if isinstance(item, dict) else None
        key = item.get("key") if isinstance(item, dict) else None
        if not (isinstance(bucket, str) and isinstance(key, str) and bucket and key):
            raise BadMessage(f"item {index} is not {{bucket, key}} strings: {str(item)[:200]}")
        if bucket not in allowed:
            raise BadMessage(f"item {index}: bucket {bucket!r} is not in ALLOWED_BUCKETS")
        if not key.startswith(prefix) or key == prefix:
            raise BadMessage(f"item {index}: key {key!r} is not under {prefix!r}")
        pairs.append((bucket, key))
    return pairs


def allowed_buckets() -> set[str]:
    return {name.strip() for name in os.environ.get("ALLOWED_BUCKETS", "").split(",") if name.strip()}


def delete_objects(targets: list[tuple[str, str]]) -> list[dict]:
    """Delete the objects, one DeleteObjects call per bucket; the objects that failed, with why."""
    by_bucket: dict[str, list[str]] = defaultdict(list)
    for bucket, key in targets:
        by_bucket[bucket].append(key)
    failures = []
    for bucket, keys in by_bucket.items():
        objects = [{"Key": key} for key in dict.fromkeys(keys)]
        try:
            answer = client("s3").delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
        except (ClientError, BotoCoreError) as error:
            failures.extend({"bucket": bucket, "key": key, "error": str(error)} for key in keys)
            continue
        for error in answer.get("Errors", []):
            failure = f"{error.get('Code')}: {error.get('Message')}"
            failures.append({"bucket": bucket, "key": error.get("Key"), "error": failure})
    return failures


def report(message: str, context: Any) -> None:
    """Log, and publish to the staff topic; a failure to publish is logged, never raised."""
    logger.error(message)
    try:
        arn = staff_topic_arn(context)
        if arn:
            client("sns").publish(TopicArn=arn, Subject="iotile deleteS3Obj", Message=message[:200_000])
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
