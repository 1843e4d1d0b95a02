"""End-to-end fixtures: the emulator as its own process on a free loopback port, and `inv` runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

INV = str(Path(sys.executable).with_name("inv"))
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Emulator:
    endpoint_url: str
    log_file: Path

    def _request(self, method: str, path: str, timeout: float = 5, body: object = None) -> bytes:
        """One call of a control endpoint; `body`, when given, is sent as JSON."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.endpoint_url + path, data, method=method)
        with _opener.open(request, timeout=timeout) as response:
            return response.read()

    def requests(self) -> list[dict]:
        return json.loads(self._request("GET", "/_emulator/requests"))

    def mutating(self) -> list[str]:
        return [f"{r['service']}:{r['operation']}" for r in self.requests() if r["mutating"]]

    def clear(self) -> None:
        self._request("DELETE", "/_emulator/requests")

    def set_rds_seconds(self, seconds: float) -> None:
        """How long RDS instances and snapshots stay `creating` (0 again after a reset)."""
        self._request("PUT", "/_emulator/delays", body={"rds_seconds": seconds})

    def set_latency(self, ms: float) -> None:
        """Every AWS request waits `ms` before it is served (a real round trip is ~50 ms)."""
        self._request("PUT", "/_emulator/latency", body={"ms": ms})

    def set_faults(self, **settings: object) -> None:
        """Make a fraction of AWS calls fail (see deploy/emulator/faults.py); a reset stops them."""
        self._request("PUT", "/_emulator/faults", body=settings)

    def stop_faults(self) -> dict | None:
        """Stop the faults; what was in force, with the count of each kind injected."""
        return json.loads(self._request("DELETE", "/_emulator/faults"))["stopped"]

    def reset(self) -> None:
        # Stopping the worker processes of ECS services takes seconds.
        self._request("POST", "/moto-api/reset", timeout=60)
        self.clear()


@pytest.fixture(scope="session")
def emulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    port = free_port()
    log_file = tmp_path_factory.mktemp("emulator") / "emulator.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "deploy.emulator", "--port", str(port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    emulator = Emulator(f"http://127.0.0.1:{port}", log_file)
    deadline = time.monotonic() + 15
    while True:
        try:
            emulator.requests()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"emulator did not start: {log_file.read_text()}") from None
            time.sleep(0.05)
    yield emulator
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def emulator(emulator_process: Emulator) -> Emulator:
    emulator_process.reset()
    return emulator_process


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def inv(emulator: Emulator):
    """Run `inv ARGS` as an operator would, pointed at the emulator by AWS_ENDPOINT_URL."""

    def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
        environment = {**os.environ, "AWS_ENDPOINT_URL": emulator.endpoint_url, "COLUMNS": "200"}
        environment.update(env or {})
        done = subprocess.run(
            [INV, *args],
            cwd=ROOT,
            env=environment,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    return run
