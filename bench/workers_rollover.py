"""Prints, for 3 and for 30 workers on the local stage (the emulator runs each task as a reference
worker process), how long `shutdown-ecs-workers` and `deploy-worker --skip-build` take while tasks
keep arriving, and the gap between the last shutdown acknowledgement and the first task processed
by a new worker: the time no worker takes tasks. Numbers, no pass/fail."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parent.parent
INV = str(Path(sys.executable).with_name("inv"))
CLUSTER, SERVICE = "iotile-cloud-cluster-local", "iotile-cloud-sqs-worker-service"
QUEUE, TABLE = "iotile-worker-local", "iotile-worker-logs-local"
HEALTH = json.dumps({"module": "apps.sqsworker.worker", "class": "WorkerHealthCheckAction", "arguments": {}})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def inv(env: dict[str, str], *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([INV, *args, "--stage", "local"], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"inv {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return time.perf_counter() - started, done.stdout


def client(endpoint: str, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def wait_running(endpoint: str, count: int, timeout: float = 120) -> None:
    ecs = client(endpoint, "ecs")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (service,) = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"]
        if service["runningCount"] == count and len(service["deployments"]) == 1:
            return
        time.sleep(0.5)
    raise SystemExit(f"{count} workers were not running within {timeout}s")


def keep_sending(endpoint: str, url: str, stop: threading.Event) -> None:
    sqs = client(endpoint, "sqs")
    while not stop.is_set():
        sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": HEALTH} for n in range(10)]
        )
        time.sleep(1.0)  # ten tasks a second: a load three workers keep up with here


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def first_task_of_new_workers(endpoint: str, old: set[str], timeout: float = 120) -> float:
    ddb = client(endpoint, "dynamodb")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        starts = []
        for page in ddb.get_paginator("scan").paginate(TableName=TABLE):
            for item in page["Items"]:
                if item["action"]["S"] == "WorkerHealthCheckAction" and item["worker"]["S"] not in old:
                    starts.append(epoch(item["started_at"]["S"]))
        if starts:
            return min(starts)
        time.sleep(0.5)
    raise SystemExit("no new worker processed a task")


def rollover(workers: int, *, separate: bool = True) -> dict[str, float]:
    """`separate`: shutdown-ecs-workers, then deploy-worker (the original two steps); else
    deploy-worker alone, which shuts the workers down itself (a new image, so there is a change)."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory() as state:
        config = Path(state) / "config"
        shutil.copytree(ROOT / "config", config)
        with (config / "local.yaml").open("a", encoding="utf-8") as handle:
            handle.write(f"\necs:\n  workers: {workers}\n")
        env = {
            **os.environ,
            "DEPLOY_STATE_DIR": state,
            "DEPLOY_CONFIG_DIR": str(config),
            "AWS_ENDPOINT_URL": endpoint,
        }
        subprocess.run([INV, "local.start"], cwd=ROOT, env=env, capture_output=True, check=True)
        try:
            inv(env, "up")
            wait_running(endpoint, workers)
            url = client(endpoint, "sqs").get_queue_url(QueueName=QUEUE)["QueueUrl"]
            stop = threading.Event()
            sender = threading.Thread(target=keep_sending, args=(endpoint, url, stop))
            sender.start()
            try:
                time.sleep(1.0)
                if separate:
                    shutdown_seconds, out = inv(env, "shutdown-ecs-workers", "--json")
                    acknowledged = json.loads(out)["acknowledged"]
                    deploy_seconds, _ = inv(env, "deploy-worker", "--skip-build")
                else:
                    image = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/iotile-cloud-worker:bench{workers}"
                    deploy_seconds, out = inv(env, "deploy-worker", "--image", image, "--json")
                    acknowledged = json.loads(out)["shutdown"]["acknowledged"]
                    shutdown_seconds = float("nan")
                first_new = first_task_of_new_workers(endpoint, set(acknowledged))
            finally:
                stop.set()
                sender.join()
            last_ack = max(epoch(when) for when in acknowledged.values())
            return {"shutdown": shutdown_seconds, "deploy": deploy_seconds, "gap": first_new - last_ack}
        finally:
            subprocess.run([INV, "local.stop"], cwd=ROOT, env=env, capture_output=True)


HEADER = ("workers", "steps", "shutdown-ecs-workers", "deploy-worker", "last ack -> first new task")


def row(cells: list[str]) -> str:
    return "  ".join(f"{cell:>{max(len(title), 8)}}" for cell, title in zip(cells, HEADER, strict=True))


if __name__ == "__main__":
    print(row(list(HEADER)))
    for count, separate in ((3, True), (30, True), (3, False)):
        result = rollover(count, separate=separate)
        timings = (
            f"{result[key]:.2f} s" if result[key] == result[key] else "-"
            for key in ("shutdown", "deploy", "gap")
        )
        print(row([str(count), "two" if separate else "one", *timings]), flush=True)
