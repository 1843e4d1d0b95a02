"""Function folders laid out as serverless/ is (function.yaml + handler + requirements.txt), small
enough to package without pip, for the Lambda tests."""

from __future__ import annotations

import zipfile
from pathlib import Path

HANDLER = """import json
import os


def main(event, context):
    print("event:", json.dumps(event, sort_keys=True))
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"action": event.get("action"), "queue": os.environ.get("WORKER_QUEUE_NAME"),
            "function": context.function_name}
"""

FUNCTIONS = {
    "health": """handler: handler.main
runtime: python3.12
architecture: x86_64
memory: 256
timeout: 60
environment:
  WORKER_QUEUE_NAME: iotile-worker-{stage}
  WORKER_LOG_TABLE: iotile-worker-logs-{stage}
triggers:
  schedules:
    - name: hour-worker-check-{stage}
      expression: rate(1 hour)
      input: {action: worker_healthcheck}
    - name: device_check-{stage}
      expression: rate(30 minutes)
      input:
        action: schedule_task
        task_module: apps.devicestatus.worker
        task_class: DeviceStatusCheckAction
        task_span: 30m
    - name: hour-stream-data-check-{stage}
      expression: rate(1 hour)
      input: {action: stream_data_check}
    - name: day-clean-up-{stage}
      expression: cron(0 12 * * ? *)
      input: {action: cleanup}
    - name: day-collect-stats-{stage}
      expression: cron(0 12 * * ? *)
      enabled: false
      input: {action: collect_stats}
    - name: day-collect-dbstats-{stage}
      expression: cron(0 7 * * ? *)
      input:
        action: schedule_task
        task_module: apps.utils.worker
        task_class: DbStatsAction
        task_span: 1d
""",
    "utils": """handler: handler.main
runtime: python3.12
memory: 128
timeout: 30
environment:
  ALLOWED_BUCKETS: ""
  STAFF_NOTIFICATIONS_TOPIC: StaffNotifications
triggers:
  sns:
    - iotile--delete-s3--{stage}
""",
    "s3image": """handler: handler.main
runtime: python3.12
architecture: x86_64
memory: 512
timeout: 60
environment:
  IMAGE_SIZES: ""
  INCOMING_PREFIX: "{stage}/incoming/"
  IMAGES_PREFIX: "{stage}/images/"
triggers:
  s3:
    - bucket: iotile-cloud-media
      prefix: "{stage}/incoming/"
      events: ["s3:ObjectCreated:*"]
""",
    "process-upload-sxd": """handler: handler.main
runtime: python3.12
memory: 256
timeout: 60
environment:
  WORKER_QUEUE_NAME: iotile-worker-{stage}
  UPLOAD_BUCKET: iotile-cloud-streamers
  UPLOAD_PREFIX: "{stage}/sxd/"
triggers:
  sns:
    - iotile--upload-sxd--{stage}
""",
}


def write_functions(root: Path) -> Path:
    """serverless/-like folders under root/serverless; returns that folder."""
    source = root / "serverless"
    for folder, text in FUNCTIONS.items():
        (source / folder).mkdir(parents=True, exist_ok=True)
        (source / folder / "function.yaml").write_text(text)
        (source / folder / "handler.py").write_text(HANDLER)
        (source / folder / "requirements.txt").write_text("")
    return source


def tiny_wheel(folder: Path, name: str = "tinydep", version: str = "1.0") -> Path:
    """A pure-Python wheel made by hand (no network, no build backend)."""
    import base64
    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VALUE = {version!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for file, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{file},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    with zipfile.ZipFile(path, "w") as archive:
        for file, text in files.items():
            archive.writestr(file, text)
    return path
