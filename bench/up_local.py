"""Prints how long `inv up` takes on a fresh emulator (first run creates, second run reads only),
and how many AWS requests each made; no pass/fail."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INV = str(Path(sys.executable).with_name("inv"))
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def requests(endpoint: str) -> list[dict]:
    with opener.open(endpoint + "/_emulator/requests", timeout=5) as response:
        data = json.loads(response.read())
    opener.open(urllib.request.Request(endpoint + "/_emulator/requests", method="DELETE"), timeout=5)
    return data


def timed_up(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([INV, "up", "--stage", "local"], cwd=ROOT, env=env, capture_output=True, check=True)
    return time.perf_counter() - started


if __name__ == "__main__":
    endpoint = f"http://127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory() as state:
        env = {**os.environ, "DEPLOY_STATE_DIR": state, "AWS_ENDPOINT_URL": endpoint}
        try:
            started = time.perf_counter()
            subprocess.run([INV, "local.start"], cwd=ROOT, env=env, capture_output=True, check=True)
            print(f"local.start            {time.perf_counter() - started:6.2f} s")
            for label in ("up (creates)", "up (no change)"):
                seconds = timed_up(env)
                made = requests(endpoint)
                mutating = sum(r["mutating"] for r in made)
                print(f"{label:22} {seconds:6.2f} s  {len(made):4} requests, {mutating:3} mutating")
        finally:
            subprocess.run([INV, "local.stop"], cwd=ROOT, env=env, capture_output=True)
