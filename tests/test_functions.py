"""The Lambda handlers of serverless/, each run in-process against moto with the environment its
function.yaml declares (placeholders filled in for the stage `test`)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import io
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import yaml
from PIL import Image

SERVERLESS = Path(__file__).resolve().parent.parent / "serverless"
FOLDERS = ("health", "utils", "s3image", "process-upload-sxd")
STAGE, REGION, ACCOUNT = "test", "us-east-1", "123456789012"
NOW = dt.datetime(2026, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
STAFF = "StaffNotifications"
MEDIA = "iotile-cloud-media"
STREAM_EVENT_DATA = "iotile-cloud-stream-event-data"
STREAMERS = "iotile-cloud-streamers"


@dataclass
class LambdaContext:
    """What the Lambda runtime passes as `context` (the handlers read these two)."""

    invoked_function_arn: str
    remaining_ms: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def function_spec(folder: str) -> dict:
    return yaml.safe_load((SERVERLESS / folder / "function.yaml").read_text())


def filled(value: str) -> str:
    for name, actual in (("{stage}", STAGE), ("{region}", REGION), ("{account}", ACCOUNT)):
        value = value.replace(name, actual)
    return value


def context_of(folder: str) -> LambdaContext:
    name = f"iotile-{folder}-{STAGE}"
    return LambdaContext(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}")


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch, aws: None) -> Callable[[str], ModuleType]:
    """Import a function's handler module by path, as the Lambda runtime does (its folder on
    sys.path), with its function.yaml environment: a fresh module each test, nothing in sys.modules."""

    def loader(folder: str) -> ModuleType:
        spec = function_spec(folder)
        for name, value in spec["environment"].items():
            monkeypatch.setenv(name, filled(value))
        monkeypatch.syspath_prepend(str(SERVERLESS / folder))
        module_name, _, _ = spec["handler"].rpartition(".")
        location = SERVERLESS / folder / f"{module_name}.py"
        module_spec = importlib.util.spec_from_file_location(f"lambda_{folder.replace('-', '_')}", location)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        monkeypatch.setattr(module, "utcnow", lambda: NOW, raising=False)
        return module

    return loader


def entry(module: ModuleType, folder: str) -> Callable[[Any, Any], dict]:
    return getattr(module, function_spec(folder)["handler"].rpartition(".")[2])


def make_queue(name: str = f"iotile-worker-{STAGE}") -> str:
    return boto3.client("sqs", region_name=REGION).create_queue(QueueName=name)["QueueUrl"]


def received(url: str) -> list[dict]:
    sqs = boto3.client("sqs", region_name=REGION)
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
        "Messages", []
    )
    return [json.loads(message["Body"]) for message in messages]


def staff_inbox() -> str:
    """The staff topic, with a queue subscribed that collects what is published to it."""
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name=STAFF)["TopicArn"]
    url = sqs.create_queue(QueueName="staff-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return url


def staff_messages(url: str) -> list[str]:
    sqs = boto3.client("sqs", region_name=REGION)
    return [m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])]


def sns_event(message: Any) -> dict:
    text = message if isinstance(message, str) else json.dumps(message)
    return {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": text}}]}


def s3_event(bucket: str, key: str) -> dict:
    return {
        "Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]
    }


def make_bucket(name: str) -> Any:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=name)
    return s3


def keys_in(bucket: str, prefix: str = "") -> list[str]:
    answer = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in answer.get("Contents", []))


# --- every function -------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", FOLDERS)
def test_function_yaml_names_a_handler_that_exists(folder: str, load: Callable) -> None:
    spec = function_spec(folder)
    assert spec["runtime"] == "python3.12"
    assert spec["architecture"] in ("x86_64", "arm64")
    assert all(isinstance(value, str) for value in spec["environment"].values())
    assert callable(entry(load(folder), folder))
    requirements = (SERVERLESS / folder / "requirements.txt").read_text().split()
    assert requirements == (["Pillow"] if folder == "s3image" else [])
    assert "boto3" not in requirements  # the Lambda runtime provides it


# --- health ---------------------------------------------------------------------------------------

TS = "2026-05-01T12:00:00Z"
EXPECTED_SCHEDULES = {
    f"hour-worker-check-{STAGE}": (
        "rate(1 hour)",
        True,
        {
            "module": "apps.sqsworker.worker",
            "class": "WorkerHealthCheckAction",
            "arguments": {"message": f"Worker Health Check at {TS}"},
        },
    ),
    f"device_check-{STAGE}": (
        "cron(0/30 * * * ? *)",
        True,
        {
            "module": "apps.physicaldevice.worker.device_status_check",
            "class": "DeviceStatusCheckAction",
            "arguments": {"ts": TS, "span": "0.5h"},
        },
    ),
    f"hour-stream-data-check-{STAGE}": (
        "rate(1 hour)",
        True,
        {
            "module": "apps.staff.worker.healthcheck_stream_data",
            "class": "HealthCheckStreamDataAction",
            "arguments": {"ts": TS},
        },
    ),
    f"day-collect-stats-{STAGE}": (
        "cron(0 12 * * ? *)",
        False,
        {
            "module": "apps.sqsworker.worker",
            "class": "WorkerCollectStatsAction",
            "arguments": {"ts": TS, "span": "d"},
        },
    ),
    f"day-collect-dbstats-{STAGE}": (
        "cron(0 7 * * ? *)",
        True,
        {
            "module": "apps.staff.worker.dbstats",
            "class": "DbStatsAction",
            "arguments": {"ts": TS, "span": "d"},
        },
    ),
    f"day-clean-up-{STAGE}": ("cron(0 12 * * ? *)", True, None),
}


def schedules() -> dict[str, dict]:
    return {filled(rule["name"]): rule for rule in function_spec("health")["triggers"]["schedules"]}


def test_health_has_the_original_schedules() -> None:
    found = {name: (rule["expression"], rule["enabled"]) for name, rule in schedules().items()}
    assert found == {
        name: (expression, enabled) for name, (expression, enabled, _) in EXPECTED_SCHEDULES.items()
    }


@pytest.mark.parametrize("rule", [name for name, spec in EXPECTED_SCHEDULES.items() if spec[2]])
def test_each_scheduled_action_sends_its_exact_worker_message(rule: str, load: Callable) -> None:
    url = make_queue()
    health = load("health")
    answer = health.main(schedules()[rule]["input"], context_of("health"))
    assert answer["statusCode"] == 200, answer
    assert received(url) == [EXPECTED_SCHEDULES[rule][2]]


def put_log(table: str, task_id: str, started: dt.datetime | None) -> None:
    item = {"task_id": {"S": task_id}, "action": {"S": "ProcessReportAction"}, "status": {"S": "done"}}
    if started:
        item["started_at"] = {"S": started.strftime("%Y-%m-%dT%H:%M:%SZ")}
    boto3.client("dynamodb", region_name=REGION).put_item(TableName=table, Item=item)


def worker_log_table() -> str:
    name = f"iotile-worker-logs-{STAGE}"
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "task_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "task_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def remaining_logs(table: str) -> list[str]:
    items = boto3.client("dynamodb", region_name=REGION).scan(TableName=table)["Items"]
    return sorted(item["task_id"]["S"] for item in items)


def test_cleanup_deletes_only_worker_logs_older_than_the_retention(load: Callable) -> None:
    table = worker_log_table()
    old = [f"old-{n:02}" for n in range(30)]  # more than one BatchWriteItem
    for n, task_id in enumerate(old):
        put_log(table, task_id, NOW - dt.timedelta(days=32, hours=n))
    put_log(table, "just-kept", NOW - dt.timedelta(days=30, hours=23))
    put_log(table, "recent", NOW - dt.timedelta(hours=1))
    put_log(table, "no-start", None)
    health = load("health")
    answer = health.main(schedules()[f"day-clean-up-{STAGE}"]["input"], context_of("health"))
    assert answer["statusCode"] == 200, answer
    assert "Deleted 30 worker log items started before 2026-03-31T12:00:00Z" in answer["body"]
    assert remaining_logs(table) == ["just-kept", "no-start", "recent"]


def test_cleanup_follows_the_retention_days_variable(load: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    table = worker_log_table()
    put_log(table, "three-days", NOW - dt.timedelta(days=3))
    put_log(table, "one-day", NOW - dt.timedelta(days=1))
    health = load("health")
    monkeypatch.setenv("WORKER_LOG_RETENTION_DAYS", "2")
    assert health.main({"action": "cleanup"}, context_of("health"))["statusCode"] == 200
    assert remaining_logs(table) == ["one-day"]


def test_cleanup_stops_before_the_function_times_out(load: Callable) -> None:
    table = worker_log_table()
    put_log(table, "old", NOW - dt.timedelta(days=40))
    context = context_of("health")
    context.remaining_ms = 5_000
    answer = load("health").main({"action": "cleanup"}, context)
    assert answer["statusCode"] == 200
    assert "Deleted 1 worker log items" in answer["body"] and "stopped before the timeout" in answer["body"]


@pytest.mark.parametrize(
    "event",
    [
        {"action": "reboot_everything"},
        {},
        ["worker_healthcheck"],
        {"action": "schedule_task", "task_module": "os; rm", "task_class": "X", "task_span": "d"},
        {"action": "schedule_task", "task_module": "apps.x", "task_class": "X"},
    ],
)
def test_health_refuses_a_bad_event_sends_nothing_and_tells_staff(event: Any, load: Callable) -> None:
    url, inbox = make_queue(), staff_inbox()
    answer = load("health").main(event, context_of("health"))
    assert answer["statusCode"] == 400
    assert received(url) == []
    assert len(staff_messages(inbox)) == 1


def test_health_reports_a_missing_queue_to_staff(load: Callable) -> None:
    inbox = staff_inbox()
    answer = load("health").main({"action": "worker_healthcheck"}, context_of("health"))
    assert answer["statusCode"] == 500
    assert "NonExistentQueue" in answer["body"]
    assert "worker_healthcheck failed" in staff_messages(inbox)[0]


# --- utils: deleteS3Obj ----------------------------------------------------------------------------


def stored(bucket: str, *keys: str) -> None:
    s3 = make_bucket(bucket)
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"data")


def test_delete_s3_obj_deletes_the_listed_objects_only(load: Callable) -> None:
    stored(STREAM_EVENT_DATA, f"{STAGE}/a.json", f"{STAGE}/b.json", f"{STAGE}/keep.json")
    utils = load("utils")
    pairs = [
        {"bucket": STREAM_EVENT_DATA, "key": f"{STAGE}/a.json"},
        {"bucket": STREAM_EVENT_DATA, "key": f"{STAGE}/b.json"},
    ]
    answer = utils.delete_s3_obj(sns_event(pairs), context_of("utils"))
    assert answer["statusCode"] == 200, answer
    assert answer["deleted"] == pairs
    assert keys_in(STREAM_EVENT_DATA) == [f"{STAGE}/keep.json"]


GOOD = {"bucket": STREAM_EVENT_DATA, "key": f"{STAGE}/a.json"}


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"Records": []}, "no SNS records"),
        ({"nothing": 1}, "no SNS records"),
        (sns_event("not json {"), "not JSON"),
        (sns_event(GOOD), "non-empty JSON list"),
        (sns_event([]), "non-empty JSON list"),
        (sns_event([GOOD, {"bucket": STREAM_EVENT_DATA}]), "item 1 is not"),
        (sns_event([GOOD, {"bucket": STREAM_EVENT_DATA, "key": 7}]), "item 1 is not"),
        (sns_event([GOOD, "s3://x/y"]), "item 1 is not"),
        (sns_event([GOOD, {"bucket": MEDIA, "key": f"{STAGE}/m.png"}]), "not in ALLOWED_BUCKETS"),
        (sns_event([GOOD, {"bucket": STREAM_EVENT_DATA, "key": "prod/a.json"}]), "not under 'test/'"),
        (sns_event([GOOD, {"bucket": STREAM_EVENT_DATA, "key": f"{STAGE}/"}]), "not under 'test/'"),
        (sns_event([GOOD] * 1001), "at most 1000"),
    ],
)
def test_delete_s3_obj_refuses_a_bad_message_and_deletes_nothing(
    event: dict, reason: str, load: Callable
) -> None:
    stored(STREAM_EVENT_DATA, f"{STAGE}/a.json")
    stored(MEDIA, f"{STAGE}/m.png")
    stored_before = keys_in(STREAM_EVENT_DATA), keys_in(MEDIA)
    inbox = staff_inbox()
    answer = load("utils").delete_s3_obj(event, context_of("utils"))
    assert answer["statusCode"] == 400
    assert reason in answer["body"]
    assert (keys_in(STREAM_EVENT_DATA), keys_in(MEDIA)) == stored_before
    assert reason in staff_messages(inbox)[0]


def test_delete_s3_obj_failure_notifies_staff(load: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = staff_inbox()
    missing = "iotile-cloud-reports"  # allowed below, but never made
    stored(STREAM_EVENT_DATA, f"{STAGE}/a.json")
    utils = load("utils")
    monkeypatch.setenv("ALLOWED_BUCKETS", f"{STREAM_EVENT_DATA}, {missing}")
    answer = utils.delete_s3_obj(
        sns_event([GOOD, {"bucket": missing, "key": f"{STAGE}/r.pdf"}]), context_of("utils")
    )
    assert answer["statusCode"] == 500
    assert answer["failed"][0]["bucket"] == missing and "NoSuchBucket" in answer["failed"][0]["error"]
    notice = staff_messages(inbox)[0]
    assert f"s3://{missing}/{STAGE}/r.pdf" in notice and "1 of 2" in notice


# --- s3image --------------------------------------------------------------------------------------


def png_bytes(width: int, height: int) -> bytes:
    image = Image.new("RGBA", (width, height), (0, 128, 0, 255))
    image.paste((0, 0, 0, 0), (0, 0, width // 4, height // 4))  # a transparent corner
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def rotated_jpeg_bytes(width: int, height: int) -> bytes:
    """Stored landscape, left half red and right half blue, with EXIF orientation 6: shown upright
    (turned 90 degrees clockwise) it is portrait, red on top."""
    image = Image.new("RGB", (width, height), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, width // 2, height))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes(), quality=95)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height: what a decompression bomb looks like before decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def upload_image(key: str, data: bytes) -> None:
    make_bucket(MEDIA).put_object(Bucket=MEDIA, Key=key, Body=data)


def rendition(key: str) -> Image.Image:
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=MEDIA, Key=key)["Body"].read()
    return Image.open(io.BytesIO(body))


UUID = "ce21d3cb-e56f-4015-9a0b-58292037ec15"


def test_s3image_writes_three_renditions_of_a_png(load: Callable) -> None:
    key = f"{STAGE}/incoming/{UUID}/original.png"
    upload_image(key, png_bytes(1000, 500))
    answer = load("s3image").resize(s3_event(MEDIA, key), context_of("s3image"))
    assert answer["statusCode"] == 200, answer
    folder = f"{STAGE}/images/{UUID}/"
    assert keys_in(MEDIA, f"{STAGE}/images/") == [f"{folder}{n}.jpg" for n in ("medium", "small", "tiny")]
    sizes = {name: rendition(f"{folder}{name}.jpg") for name in ("tiny", "small", "medium")}
    assert {name: image.size for name, image in sizes.items()} == {
        "tiny": (64, 32),
        "small": (256, 128),
        "medium": (800, 400),
    }
    assert all(image.format == "JPEG" and image.mode == "RGB" for image in sizes.values())
    assert sizes["medium"].getpixel((10, 10)) > (240, 240, 240)  # the transparent corner, on white
    assert keys_in(MEDIA, f"{STAGE}/incoming/") == [key]


def test_s3image_turns_a_rotated_jpeg_upright(load: Callable) -> None:
    key = f"{STAGE}/incoming/{UUID}/original+photo.jpg"
    upload_image(key, rotated_jpeg_bytes(1000, 500))
    event = s3_event(MEDIA, f"{STAGE}/incoming/{UUID}/original%2Bphoto.jpg")  # S3 events URL-encode keys
    answer = load("s3image").resize(event, context_of("s3image"))
    assert answer["statusCode"] == 200, answer
    folder = f"{STAGE}/images/{UUID}/"
    sizes = {name: rendition(f"{folder}{name}.jpg") for name in ("tiny", "small", "medium")}
    assert {name: image.size for name, image in sizes.items()} == {
        "tiny": (32, 64),
        "small": (128, 256),
        "medium": (400, 800),
    }
    medium = sizes["medium"]
    red, blue = medium.getpixel((200, 150)), medium.getpixel((200, 650))
    assert red[0] > 200 and red[2] < 60, red
    assert blue[2] > 200 and blue[0] < 60, blue
    assert 0x0112 not in medium.getexif()  # metadata is not copied


def test_s3image_sizes_come_from_the_environment(load: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    key = f"{STAGE}/incoming/photo.png"
    upload_image(key, png_bytes(300, 150))
    s3image = load("s3image")
    monkeypatch.setenv("IMAGE_SIZES", '{"thumb": 100, "big": 600}')
    assert s3image.resize(s3_event(MEDIA, key), context_of("s3image"))["statusCode"] == 200
    assert rendition(f"{STAGE}/images/photo/thumb.jpg").size == (100, 50)
    assert rendition(f"{STAGE}/images/photo/big.jpg").size == (300, 150)  # never enlarged


@pytest.mark.parametrize(
    ("key", "data", "reason"),
    [
        (
            f"{STAGE}/incoming/{UUID}/original.jpg",
            b"%PDF-1.4 not an image at all",
            "not a JPEG, PNG, GIF, WEBP",
        ),
        (
            f"{STAGE}/incoming/{UUID}/original.png",
            png_header_only(7_000, 7_000),
            "decompression bomb, more than MAX_IMAGE_PIXELS (40000000)",
        ),
        (
            f"{STAGE}/incoming/{UUID}/original.png",
            png_header_only(10_000, 10_000),
            "decompression bomb, more than MAX_IMAGE_PIXELS (40000000)",
        ),
        (f"{STAGE}/incoming/{UUID}/original.png", png_bytes(2000, 2000)[:300], "broken image"),
        (f"{STAGE}/elsewhere/{UUID}/original.png", png_bytes(20, 20), "not under test/incoming/"),
    ],
)
def test_s3image_refuses_what_is_not_a_safe_image_and_leaves_it(
    key: str, data: bytes, reason: str, load: Callable
) -> None:
    upload_image(key, data)
    answer = load("s3image").resize(s3_event(MEDIA, key), context_of("s3image"))
    assert answer["statusCode"] == 400
    assert reason in answer["results"][0]["error"]
    assert keys_in(MEDIA) == [key]


def test_s3image_refuses_a_file_larger_than_max_image_bytes(
    load: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = f"{STAGE}/incoming/{UUID}/original.png"
    upload_image(key, png_bytes(200, 200))
    s3image = load("s3image")
    monkeypatch.setenv("MAX_IMAGE_BYTES", "100")
    answer = s3image.resize(s3_event(MEDIA, key), context_of("s3image"))
    assert "more than MAX_IMAGE_BYTES (100)" in answer["results"][0]["error"]
    assert keys_in(MEDIA) == [key]


# --- process-upload-sxd ---------------------------------------------------------------------------

SXD_KEY = f"{STAGE}/sxd/d--0000-0000-0000-0abc/trip 1.sxd"


def sxd_message(size: int) -> dict:
    return {
        "module": "apps.verticals.shipping.worker.process_sxd_upload",
        "class": "ProcessSxdUploadAction",
        "arguments": {"bucket": STREAMERS, "key": SXD_KEY, "size": size},
    }


def test_process_upload_sxd_queues_the_parse(load: Callable) -> None:
    url = make_queue()
    make_bucket(STREAMERS).put_object(Bucket=STREAMERS, Key=SXD_KEY, Body=b"\x01" * 42)
    answer = load("process-upload-sxd").main(
        sns_event({"bucket": STREAMERS, "key": SXD_KEY}), context_of("sxd")
    )
    assert answer["statusCode"] == 200, answer
    assert received(url) == [sxd_message(42)]


def test_process_upload_sxd_reads_an_s3_notification_sent_through_the_topic(load: Callable) -> None:
    url = make_queue()
    make_bucket(STREAMERS).put_object(Bucket=STREAMERS, Key=SXD_KEY, Body=b"\x01" * 7)
    notification = s3_event(STREAMERS, SXD_KEY.replace(" ", "+"))
    answer = load("process-upload-sxd").main(sns_event(notification), context_of("sxd"))
    assert answer["statusCode"] == 200, answer
    assert received(url) == [sxd_message(7)]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"bucket": MEDIA, "key": SXD_KEY}, "is not UPLOAD_BUCKET"),
        ({"bucket": STREAMERS, "key": f"prod/sxd/{STAGE}.sxd"}, "not under UPLOAD_PREFIX"),
        ({"bucket": STREAMERS, "key": f"{STAGE}/sxd/trip.exe"}, "not a .sxd file"),
        ({"bucket": STREAMERS, "key": f"{STAGE}/sxd/../../prod/x.sxd"}, "'..' path segment"),
        ({"bucket": STREAMERS, "key": f"{STAGE}/sxd/missing.sxd"}, "no such object"),
        ({"bucket": STREAMERS, "key": f"{STAGE}/sxd/empty.sxd"}, "an empty file"),
        ({"key": SXD_KEY}, "must be"),
        ("not json", "not JSON"),
    ],
)
def test_process_upload_sxd_refuses_a_bad_location_and_queues_nothing(
    message: Any, reason: str, load: Callable
) -> None:
    url = make_queue()
    s3 = make_bucket(STREAMERS)
    s3.put_object(Bucket=STREAMERS, Key=SXD_KEY, Body=b"\x01")
    s3.put_object(Bucket=STREAMERS, Key=f"{STAGE}/sxd/empty.sxd", Body=b"")
    answer = load("process-upload-sxd").main(sns_event(message), context_of("sxd"))
    assert answer["statusCode"] == 400
    assert reason in answer["results"][0]["error"]
    assert received(url) == []
