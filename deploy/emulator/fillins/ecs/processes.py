"""How the ECS fill-in runs a task: the reference worker as a real local process, or, where the
emulator serves no HTTP endpoint (moto in-process, the unit tests), a stand-in that only keeps time.

The emulator's server enables real processes (`enable_processes`) once it listens: each task is
`python -m apps.sqsworker` in the repository's `server/` folder, with the task definition's
environment and resolved secrets, `AWS_ENDPOINT_URL` at the emulator and dummy credentials (an
access key of its own, so the emulator sees when the process first calls it: RUNNING). The
image is not run (there is no Docker here); the worker in `server/` is what the image would hold.
A container variable `EMULATOR_FAIL_START=1` makes the process exit 1 at once (tests of a failed
deployment). Processes join the emulator's process group: `inv local.stop` signals that group, so
none outlives the emulator even when it cannot stop them itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

FAIL_START_VARIABLE = "EMULATOR_FAIL_START"
# Each task signs with its own access key: the emulator's first request from that key is the sign
# that the task's process is up (RUNNING), the way ECS marks a container started.
TASK_KEY_PREFIX = "EMUTASK"
# A process that never calls AWS counts as started after this long.
READY_FALLBACK_SECONDS = 10.0
# Processes starting at once: booting is CPU-bound (Python, boto3's models), and thirty at a time
# on a laptop would all be ready late instead of the first few soon.
MAX_BOOTING = max(2, os.cpu_count() or 2)
WORKER_COMMAND = ("-m", "apps.sqsworker")
FAIL_COMMAND = ("-c", "import sys; sys.exit(1)")
# What a process keeps of the emulator's environment (a container starts from an empty one).
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONDONTWRITEBYTECODE", "SYSTEMROOT")
RECONCILE_SECONDS = 0.1


def server_folder() -> Path:
    import deploy

    return Path(deploy.__file__).resolve().parents[1] / "server"


_heard: set[str] = set()
_heard_lock = threading.Lock()


def heard_from(access_key: str) -> None:
    """The emulator served a request signed with `access_key`: a task's process is up."""
    if access_key.startswith(TASK_KEY_PREFIX):
        with _heard_lock:
            _heard.add(access_key)


def task_key(task_id: str) -> str:
    return (TASK_KEY_PREFIX + task_id.upper())[:20]


class TaskProcess(Protocol):
    def poll(self) -> int | None: ...

    def ready(self) -> bool:
        """Up and working: its task is RUNNING."""
        ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


class TimedStandIn:
    """A task with no process (no endpoint to give one): runs until stopped; a failing start
    exits 1 at once, as the real one would."""

    def __init__(self, fail: bool) -> None:
        self.returncode: int | None = 1 if fail else None

    def ready(self) -> bool:
        return self.returncode is None

    def poll(self) -> int | None:
        return self.returncode

    def terminate(self) -> None:
        if self.returncode is None:
            self.returncode = 0

    def kill(self) -> None:
        if self.returncode is None:
            self.returncode = -signal.SIGKILL


class LocalProcess:
    """A real process; terminate is SIGTERM (the worker finishes its message), kill SIGKILL."""

    def __init__(self, command: list[str], environment: dict[str, str], cwd: Path) -> None:
        self.access_key = environment.get("AWS_ACCESS_KEY_ID", "")
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, cwd=cwd, env=environment, stdin=subprocess.DEVNULL)

    def ready(self) -> bool:
        if self.process.poll() is not None:
            return False
        with _heard_lock:
            if self.access_key in _heard:
                return True
        return time.monotonic() - self.started >= READY_FALLBACK_SECONDS

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()


@dataclass
class Launcher:
    """Where tasks run: `endpoint_url` None means stand-ins (in-process moto)."""

    endpoint_url: str | None = None
    cwd: Path | None = None

    def launch(self, environment: Mapping[str, str], region: str, task_arn: str) -> TaskProcess:
        fail = environment.get(FAIL_START_VARIABLE) == "1"
        if self.endpoint_url is None:
            return TimedStandIn(fail)
        env = {name: os.environ[name] for name in INHERITED if name in os.environ}
        env.update(environment)
        env.update(
            AWS_ACCESS_KEY_ID=task_key(task_arn.rsplit("/", 1)[-1]),
            AWS_SECRET_ACCESS_KEY="emulator",
            AWS_ENDPOINT_URL=self.endpoint_url,
            AWS_REGION=region,
            AWS_DEFAULT_REGION=region,
            IOTILE_WORKER_ID=task_arn,
            PYTHONUNBUFFERED="1",
        )
        command = [sys.executable, *(FAIL_COMMAND if fail else WORKER_COMMAND)]
        return LocalProcess(command, env, self.cwd or server_folder())


launcher = Launcher()


class Reconciler:
    """A thread that advances every service every RECONCILE_SECONDS, as ECS's scheduler does
    without being asked: new tasks go RUNNING, old ones are stopped, exits are noticed."""

    def __init__(self, step: Callable[[], None]) -> None:
        self._step = step
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ecs-reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(RECONCILE_SECONDS):
            try:
                self._step()
            except Exception as exc:  # one bad pass must not end the scheduler
                print(f"ecs reconciler: {type(exc).__name__}: {exc}", file=sys.stderr)


def wait_for_exit(processes: list[TaskProcess], timeout: float) -> list[TaskProcess]:
    """Wait until they exit or the timeout passes; the ones still running."""
    deadline = time.monotonic() + timeout
    running = [p for p in processes if p.poll() is None]
    while running and time.monotonic() < deadline:
        time.sleep(0.02)
        running = [p for p in running if p.poll() is None]
    return running
