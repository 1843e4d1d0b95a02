"""Proofs of resume and fault tolerance, end to end on the local stage: `up` with a tenth of AWS
calls failing, `up` with one service failing every call, and `up` killed (SIGKILL) at several
points, each compared with the inventory of one uninterrupted run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, add_to_config
from tests.e2e.conftest import INV, Emulator, Result
from tests.helpers import emulator_client
from tests.inventory import Inventory, differences, duplicates, inventory

pytestmark = pytest.mark.e2e

UP = ("up", "--stage", "local")
# The stage's clients give up on a held answer after 3 s (time enough for any call the emulator
# serves on a loaded machine); the emulator holds one for 3.5 s.
READ_TIMEOUT_SECONDS = 3
HOLD_SECONDS = 3.5
# One service failing every call: botocore's 5 attempts (backoff at most 1+2+4+8 s), the areas
# already running finishing, and the load of this machine.
FAILING_SERVICE_BOUND_SECONDS = 60


class Runs:
    """`inv up` against the module's emulator, with a config whose clients time out quickly."""

    def __init__(self, emulator: Emulator, config_dir: Path) -> None:
        self.emulator = emulator
        self.env = {
            **os.environ,
            "AWS_ENDPOINT_URL": emulator.endpoint_url,
            "DEPLOY_CONFIG_DIR": str(config_dir),
            "COLUMNS": "200",
        }

    def up(self) -> Result:
        done = subprocess.run([INV, *UP], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300)
        return Result(done.returncode, done.stdout, done.stderr)

    def up_killed_when(self, seen: Callable[[list[str]], bool], timeout: float = 120) -> list[str]:
        """Start `up`, SIGKILL it as soon as the emulator's call log shows `seen`; the mutating
        calls made until then."""
        self.emulator.clear()
        process = subprocess.Popen(
            [INV, *UP],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        try:
            while not seen(made := self.emulator.mutating()):
                assert process.poll() is None, f"`up` ended (code {process.returncode}) before the kill point"
                assert time.monotonic() < deadline, "the kill point never came"
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
        assert process.returncode == -signal.SIGKILL
        return made

    def inventory(self) -> Inventory:
        return inventory(self.emulator.endpoint_url)


@pytest.fixture(scope="module")
def runs(emulator_process: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    config = tmp_path_factory.mktemp("resilience") / "config"
    shutil.copytree(ROOT / "config", config)
    add_to_config(config / "local.yaml", f"aws:\n  read_timeout_seconds: {READ_TIMEOUT_SECONDS}\n")
    return Runs(emulator_process, config)


@pytest.fixture(scope="module")
def reference(runs: Runs) -> Inventory:
    """The inventory of one uninterrupted `up` on an empty emulator."""
    runs.emulator.reset()
    done = runs.up()
    assert done.code == 0, done.output
    found = runs.inventory()
    assert duplicates(found) == {}
    assert len(found["roles"]) > 10 and found["distributions"] and found["task_definition_revisions"]
    return found


@pytest.fixture
def empty(runs: Runs, reference: Inventory) -> Runs:
    runs.emulator.reset()
    return runs


def assert_same_as_reference(runs: Runs, reference: Inventory) -> None:
    found = runs.inventory()
    assert duplicates(found) == {}
    assert differences(found, reference) == {}


def test_up_converges_with_a_tenth_of_calls_failing_then_has_nothing_to_do(empty, reference) -> None:
    empty.emulator.set_faults(rate=0.1, services=None, seed=11, hold_seconds=HOLD_SECONDS)
    try:
        done = empty.up()
    finally:
        injected = empty.emulator.stop_faults()

    assert done.code == 0, done.output
    assert injected is not None
    assert set(injected["injected"]) == {"throttle", "500", "503", "reset", "timeout"}
    assert sum(injected["injected"].values()) >= 30
    assert_same_as_reference(empty, reference)
    empty.emulator.clear()
    again = empty.up()
    assert again.code == 0, again.output
    assert empty.emulator.mutating() == []


def test_up_fails_in_bounded_time_naming_the_failing_service_then_resumes(empty, reference) -> None:
    empty.emulator.set_faults(rate=1, services=["sqs"], kinds=["throttle"])
    started = time.monotonic()
    try:
        failed = empty.up()
    finally:
        empty.emulator.stop_faults()
    elapsed = time.monotonic() - started

    assert failed.code == 1, failed.output
    assert elapsed < FAILING_SERVICE_BOUND_SECONDS
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, failed.stderr
    assert "ThrottlingException (sqs:" in errors[0]
    assert "Traceback" not in failed.output

    resumed = empty.up()
    assert resumed.code == 0, resumed.output
    assert_same_as_reference(empty, reference)


def db_status(emulator: Emulator) -> str:
    rds = emulator_client(emulator.endpoint_url, "rds")
    return rds.describe_db_instances()["DBInstances"][0]["DBInstanceStatus"]


def _made(operation: str) -> Callable[[list[str]], bool]:
    return lambda made: operation in made


def test_up_killed_at_four_points_then_run_again_ends_as_an_uninterrupted_run(empty, reference) -> None:
    # Creating RDS instances stay `creating` for a while, so the third kill lands in that wait.
    empty.emulator.set_rds_seconds(4)
    kill_points = [
        ("early", lambda made: len(made) >= 1),
        ("inside the IAM wave", _made("iam:CreateRole")),
        ("while the data stores create", _made("rds:CreateDBInstance")),
        ("inside the front end", _made("elasticbeanstalk:CreateEnvironment")),
    ]
    for where, seen in kill_points:
        # The front end's last steps follow CreateEnvironment closely: with an instant emulator
        # they can all be done before the kill lands. A real round trip per request keeps the
        # kill inside the front end.
        empty.emulator.set_latency(50 if where == "inside the front end" else 0)
        try:
            made = empty.up_killed_when(seen)
        finally:
            empty.emulator.set_latency(0)
        assert made, where
        found = empty.inventory()
        assert duplicates(found) == {}, f"a duplicate after the kill {where}"
        extra = {kind: keys[0] for kind, keys in differences(found, reference).items() if keys[0]}
        assert extra == {}, f"made after the kill {where}, not by an uninterrupted run"
        if where == "while the data stores create":
            assert db_status(empty.emulator) == "creating"
    empty.emulator.clear()

    done = empty.up()

    assert done.code == 0, done.output
    assert empty.emulator.mutating(), "the last kill came after everything was done"
    assert_same_as_reference(empty, reference)
