"""Prints what `inv up --stage local` costs: on a fresh stage and again with nothing to change, with
the emulator answering at once and with 50 ms a request (a real AWS round trip), concurrency on
and off (DEPLOY_MAX_WORKERS=1); then, with slow data stores, up's wall time against the slowest
store's creation delay. No pass/fail (tests/e2e/test_cli.py holds the read budget).

    python bench/up_speed.py            # everything (a few minutes; no-op runs: median of 7)
    python bench/up_speed.py --no-slow  # without the slow-store run

Each run gets its own emulator process on a free port. Calls are counted in the emulator's log,
without the worker processes' queue polling (the local stage runs its ECS workers)."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INV = str(Path(sys.executable).with_name("inv"))
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# What the local stage's worker processes call on their own while `up` runs.
WORKER_OPERATIONS = frozenset({"ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility"})
# No-op runs of each kind; the table shows their median (the calls are those of the last one).
REPEATS = 7
SLOW_STORES = {"rds_seconds": 20, "redshift_seconds": 30, "redis_seconds": 25, "search_seconds": 15}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def control(endpoint: str, method: str, path: str, body: dict | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(endpoint + path, data, method=method)
    with opener.open(request, timeout=10) as response:
        return json.loads(response.read())


@contextmanager
def emulator(latency_ms: float) -> Iterator[str]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "deploy.emulator", "--port", str(port), "--latency-ms", str(latency_ms)]
    env = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                control(endpoint, "GET", "/_emulator/health")
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the emulator did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=20)


def up(endpoint: str, state: str, *, serial: bool) -> tuple[float, dict]:
    """`inv up --stage local --json`: wall time, and the summary it printed last."""
    control(endpoint, "DELETE", "/_emulator/requests")
    env = {**os.environ, "DEPLOY_STATE_DIR": state, "AWS_ENDPOINT_URL": endpoint, "COLUMNS": "200"}
    env.pop("DEPLOY_MAX_WORKERS", None)
    # As an installed tool runs: Python keeps the bytecode of what it imports (a sandbox that
    # forbids writing it would time the compiler, not the tool).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if serial:
        env["DEPLOY_MAX_WORKERS"] = "1"
    started = time.perf_counter()
    done = subprocess.run(
        [INV, "up", "--stage", "local", "--json"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"up failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, last_document(done.stdout)


def last_document(text: str) -> dict:
    """The last of the JSON documents `--json` printed one after another (the summary)."""
    decoder, documents, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        document, at = decoder.raw_decode(text, at)
        documents.append(document)
        while at < len(text) and text[at].isspace():
            at += 1
    return documents[-1]


def counted(endpoint: str) -> tuple[int, int]:
    """(calls, mutating calls) up made, by the emulator's log."""
    made = [
        r for r in control(endpoint, "GET", "/_emulator/requests") if r["operation"] not in WORKER_OPERATIONS
    ]
    return len(made), sum(r["mutating"] for r in made)


def row(label: str, seconds: float, endpoint: str, summary: dict) -> str:
    calls, mutating = counted(endpoint)
    resources = summary.get("resources") or 0
    reads = (calls - mutating) / resources if resources else 0.0
    return (
        f"{label:34} {seconds:7.2f} s {calls:5} calls {mutating:4} mutating "
        f"{resources:4} resources {reads:5.2f} reads/resource"
    )


def speed_table(repeats: int) -> None:
    for latency in (0, 50):
        for serial in (False, True):
            mode = "one at a time" if serial else "concurrent"
            with emulator(latency) as endpoint, tempfile.TemporaryDirectory() as state:
                seconds, summary = up(endpoint, state, serial=serial)
                print(row(f"fresh up, {latency:2} ms, {mode}", seconds, endpoint, summary), flush=True)
                # A no-op run is short: its median over several runs, then the spread.
                walls = []
                for _ in range(repeats):
                    seconds, summary = up(endpoint, state, serial=serial)
                    walls.append(seconds)
                label = f"no-op up, {latency:2} ms, {mode}"
                print(row(label, statistics.median(walls), endpoint, summary), flush=True)
                if repeats > 1:
                    print(f"{'':34} {min(walls):7.2f} to {max(walls):.2f} s over {repeats} runs", flush=True)


def slow_stores() -> None:
    """up on a fresh stage with no delay, then on another with the stores' delays: the time the
    delays add against the slowest store alone and against their sum."""
    with emulator(0) as endpoint, tempfile.TemporaryDirectory() as state:
        quick, _ = up(endpoint, state, serial=False)
    with emulator(0) as endpoint, tempfile.TemporaryDirectory() as state:
        control(endpoint, "PUT", "/_emulator/delays", SLOW_STORES)
        slow, _ = up(endpoint, state, serial=False)
    slowest, total = max(SLOW_STORES.values()), sum(SLOW_STORES.values())
    delays = ", ".join(f"{k.removesuffix('_seconds')} {v} s" for k, v in SLOW_STORES.items())
    print(f"slow stores ({delays}):")
    print(f"  fresh up without delays {quick:7.2f} s")
    print(f"  fresh up with delays    {slow:7.2f} s")
    added = slow - quick
    print(
        f"  added by the stores     {added:7.2f} s = {added / slowest:4.0%} of the slowest ({slowest} s), "
        f"{added / total:4.0%} of their sum ({total} s)"
    )


if __name__ == "__main__":
    speed_table(repeats=REPEATS)
    if "--no-slow" not in sys.argv:
        slow_stores()
