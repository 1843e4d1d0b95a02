"""An operator's run of the `inv` command on the local stage: Ctrl-C during the data stores' waits,
`rds.encrypt` interrupted and resumed, `plan` and `status` exit codes, what `up` leaves to do."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import INV

pytestmark = pytest.mark.e2e

LOCAL = ("--stage", "local")


class Running:
    """`inv ARGS` started in the background, its stderr collected line by line."""

    def __init__(self, emulator, *args: str) -> None:
        env = {**os.environ, "AWS_ENDPOINT_URL": emulator.endpoint_url, "COLUMNS": "200"}
        self.process = subprocess.Popen(
            [INV, *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.stdout = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for_line(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None, f"ended before {text!r}: {''.join(self.lines)}"
            assert time.monotonic() < deadline, f"no {text!r} in {''.join(self.lines)}"
            time.sleep(0.05)

    def interrupt(self, presses: int = 1) -> float:
        """Press Ctrl-C `presses` times, 0.1 s apart; the seconds from the first press to the end."""
        pressed = time.monotonic()
        for _ in range(presses):
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
            time.sleep(0.1)
        self.stdout = self.process.communicate(timeout=30)[0]
        self._reader.join(timeout=5)
        return time.monotonic() - pressed

    @property
    def stderr(self) -> str:
        return "".join(self.lines)


def client(emulator, service: str):
    import boto3

    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=emulator.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def rds_status(emulator, identifier: str) -> str:
    found = client(emulator, "rds").describe_db_instances(DBInstanceIdentifier=identifier)
    return found["DBInstances"][0]["DBInstanceStatus"]


@pytest.mark.parametrize("presses", [1, 3])
def test_ctrl_c_ends_up_at_once_while_data_stores_are_awaited(emulator, inv, presses) -> None:
    emulator.set_rds_seconds(600)
    run = Running(emulator, "up", *LOCAL)
    run.wait_for_line("waiting for iotile-cloud-local: creating")

    seconds = run.interrupt(presses)

    assert seconds < 2.0, run.stderr
    assert run.process.returncode == 130, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert "interrupted: rerun the same task to resume" in run.stderr
    if presses == 1:
        # The rerun resumes: the instance made before the interrupt is awaited, not made again.
        emulator.set_rds_seconds(0)
        emulator.clear()
        again = inv("up", *LOCAL)
        assert again.code == 0, again.output
        assert "rds:CreateDBInstance" not in emulator.mutating()
        assert rds_status(emulator, "iotile-cloud-local") == "available"
