"""The emulator's worker runner: while the emulator serves HTTP, the tasks of ECS services run as
real local processes (see fillins/ecs/), advanced by a scheduler thread, and all of them stop with
the emulator (or on a reset).

moto's state is per process, so every emulator server of a process serves the same services: the
processes call the server started last, and stop when the last server of the process stops.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext

from deploy.emulator.fillins.ecs import models, processes

_lock = threading.Lock()
_reconciler: processes.Reconciler | None = None
_endpoints: list[str] = []


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
        _endpoints.append(endpoint_url)
        processes.launcher.endpoint_url = endpoint_url
        if _reconciler is None:
            _reconciler = processes.Reconciler(step)
            _reconciler.start()


def stop(endpoint_url: str | None = None) -> None:
    """The server at `endpoint_url` stops (None: every one): when no server is left, stop the
    scheduler and every task's process (SIGTERM, then SIGKILL after a grace)."""
    global _reconciler
    with _lock:
        if endpoint_url in _endpoints:
            _endpoints.remove(endpoint_url)
        else:
            _endpoints.clear()
        if _endpoints:
            processes.launcher.endpoint_url = _endpoints[-1]
            return
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
