"""iotile-process-upload-sxd-{stage}: queues the parsing and trip upload of an uploaded SXd file.

The SNS message on iotile--upload-sxd--{stage} is either {"bucket": ..., "key": ...} (what the server
publishes) or an S3 event notification (a bucket notification sent to the topic). The file must be
an existing, non-empty `.sxd` object under UPLOAD_PREFIX of UPLOAD_BUCKET; the worker then gets
{"module": WORKER_TASK_MODULE, "class": WORKER_TASK_CLASS, "arguments": {"bucket", "key", "size"}}.
The parser lives in the server; a refused upload is logged and nothing is queued for it."""

from __future__ import annotations

import functools
import json
import logging
import os
from typing import Any
from urllib.parse import unquote_plus

import boto3
from botocore.exceptions import ClientError

logger = logging.getLogger()
logger.setLevel(logging.INFO)

DEFAULT_TASK_MODULE = "apps.verticals.shipping.worker.process_sxd_upload"
DEFAULT_TASK_CLASS = "ProcessSxdUploadAction"
SUFFIX = ".sxd"


class Refused(ValueError):
    """The upload is not queued."""


@functools.cache
def client(service: str) -> Any:
    return boto3.client(service)


def main(event: Any, context: Any) -> dict:
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list) or not records:
        logger.error("process-upload-sxd: no SNS records in the event")
        return {"statusCode": 400, "results": [], "body": "no SNS records in the event"}
    results = []
    for record in records:
        try:
            uploads = uploads_of(record)
        except Refused as error:
            logger.error("process-upload-sxd: refused a message: %s", error)
            results.append({"error": str(error)})
            continue
        results.extend(queue_upload(bucket, key) for bucket, key in uploads)
    status = 200 if all("error" not in result for result in results) else 400
    return {"statusCode": status, "results": results}


def uploads_of(record: Any) -> list[tuple[str, str]]:
    """The (bucket, key) pairs one SNS record names."""
    message = record.get("Sns", {}).get("Message") if isinstance(record, dict) else None
    if not isinstance(message, str):
        raise Refused("a record has no Sns.Message")
    try:
        payload = json.loads(message)
    except json.JSONDecodeError as error:
        raise Refused(f"the message is not JSON ({error.msg})") from None
    if isinstance(payload, dict) and isinstance(payload.get("Records"), list):
        try:
            return [
                (r["s3"]["bucket"]["name"], unquote_plus(r["s3"]["object"]["key"]))
                for r in payload["Records"]
            ]
        except (KeyError, TypeError):
            raise Refused("an S3 event record without s3.bucket.name and s3.object.key") from None
    if (
        isinstance(payload, dict)
        and isinstance(payload.get("bucket"), str)
        and isinstance(payload.get("key"), str)
    ):
        return [(payload["bucket"], payload["key"])]
    raise Refused('the message must be {"bucket": ..., "key": ...} or an S3 event notification')


def queue_upload(bucket: str, key: str) -> dict:
    try:
        check_location(bucket, key)
        size = uploaded_size(bucket, key)
    except Refused as error:
        logger.error("process-upload-sxd: refused s3://%s/%s: %s", bucket, key, error)
        return {"bucket": bucket, "key": key, "error": str(error)}
    arguments = {"bucket": bucket, "key": key, "size": size}
    send_to_worker(
        os.environ.get("WORKER_TASK_MODULE") or DEFAULT_TASK_MODULE,
        os.environ.get("WORKER_TASK_CLASS") or DEFAULT_TASK_CLASS,
        arguments,
    )
    return {"bucket": bucket, "key": key, "queued": True}


def check_location(bucket: str, key: str) -> None:
    expected, prefix = os.environ["UPLOAD_BUCKET"], os.environ["UPLOAD_PREFIX"]
    if bucket != expected:
        raise Refused(f"bucket {bucket!r} is not UPLOAD_BUCKET {expected!r}")
    if not key.startswith(prefix):
        raise Refused(f"not under UPLOAD_PREFIX {prefix!r}")
    if not key.lower().endswith(SUFFIX) or key.endswith("/"):
        raise Refused(f"not a {SUFFIX} file")
    if any(part in ("", ".", "..") for part in key[len(prefix) :].split("/")):
        raise Refused("an empty, '.' or '..' path segment")


def uploaded_size(bucket: str, key: str) -> int:
    try:
        head = client("s3").head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        code = error.response["Error"].get("Code")
        raise Refused("no such object" if code in ("404", "NoSuchKey", "NotFound") else code) from None
    if head["ContentLength"] == 0:
        raise Refused("an empty file")
    return head["ContentLength"]


def send_to_worker(module: str, cls: str, arguments: dict) -> None:
    """One message in the worker's format: the server imports `module` and runs `cls(arguments)`."""
    body = json.dumps({"module": module, "class": cls, "arguments": arguments})
    client("sqs").send_message(QueueUrl=queue_url(os.environ["WORKER_QUEUE_NAME"]), MessageBody=body)
    logger.info("queued %s", body)


@functools.cache
def queue_url(name: str) -> str:
    return client("sqs").get_queue_url(QueueName=name)["QueueUrl"]
