"""The emulator's worker runner: while the emulator serves HTTP, the tasks of ECS services run as
real local processes (see fillins/ecs/), advanced by a scheduler thread, and all of them stop with
the emulator (or on a reset)."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext

from deploy.emulator.fillins.ecs import models, processes

_lock = threading.Lock()
_reconciler: processes.Reconciler | None = None


def start(endpoint_url: str, serve_lock: AbstractContextManager[object] | None = None) -> None:
    """Run tasks as processes whose AWS_ENDPOINT_URL is `endpoint_url`; `serve_lock` is the lock
    the emulator serves moto under (the scheduler reads moto's task definitions and secrets)."""
    global _reconciler
    guard = serve_lock if serve_lock is not None else nullcontext()

    def step() -> None:
        with guard:
            for backend in models.fillin_backends.all():
                backend.reconcile_all()

    with _lock:
        if _reconciler is not None:
            raise RuntimeError("the worker runner already serves an emulator in this process")
        processes.launcher.endpoint_url = endpoint_url
        _reconciler = processes.Reconciler(step)
        _reconciler.start()


def stop() -> None:
    """Stop the scheduler and every task's process (SIGTERM, then SIGKILL after a grace)."""
    global _reconciler
    with _lock:
        if _reconciler is not None:
            _reconciler.stop()
            _reconciler = None
        models.stop_processes(models.fillin_backends.all())
        processes.launcher.endpoint_url = None


def heard_from(access_key: str) -> None:
    """A request signed with `access_key` was served (a task's process calling in is up)."""
    processes.heard_from(access_key)


def running_processes() -> int:
    return sum(len(backend.processes()) for backend in models.fillin_backends.all())
