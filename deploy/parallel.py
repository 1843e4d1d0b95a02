"""Running independent reads and area plans side by side on a small thread pool, and stopping them
all promptly when the operator presses Ctrl-C.

Python delivers Ctrl-C to the main thread only. The workers learn of it through `stop_requested`:
every pause of a wait or retry is `pause()`, which returns at once when it is set and raises
`Interrupted`; the main thread sets it and leaves without waiting for the pool."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for_all
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# The exit code of a run ended by Ctrl-C, as a shell reports one killed by SIGINT.
EXIT_INTERRUPTED = 130
# How long the workers get to finish the request each has in flight once Ctrl-C is pressed.
WIND_DOWN_SECONDS = 1.0
# Set on Ctrl-C: every wait and retry of every thread stops at its next pause.
stop_requested = threading.Event()
# The most threads map_concurrently() uses, whatever its caller asks: 1 runs the areas of a wave,
# the resources of a level and the reads of an area one at a time (debugging, benchmarks).
MAX_WORKERS_ENV = "DEPLOY_MAX_WORKERS"


class Interrupted(KeyboardInterrupt):
    """A worker's wait ended because the operator pressed Ctrl-C (the main thread got the signal)."""


def request_stop() -> None:
    """Tell every worker to stop at its next pause. Called in the main thread on the first Ctrl-C;
    a further Ctrl-C while the workers wind down ends the process at once, without a traceback."""
    stop_requested.set()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _exit_now)


def _exit_now(signum: int, frame: object) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


def wind_down(seconds: float = WIND_DOWN_SECONDS) -> None:
    """After a stop was requested: give the workers `seconds` to finish the request each has in
    flight. When they have, later presses of Ctrl-C are ignored (Python's own shutdown would turn
    one into a kill); when one has not, the process ends here and now."""
    deadline = time.monotonic() + seconds
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    if any(
        t.is_alive() and not t.daemon and t is not threading.current_thread() for t in threading.enumerate()
    ):
        _exit_now(signal.SIGINT, None)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def pause(seconds: float) -> None:
    """Sleep up to `seconds`; raise Interrupted at once (not at the end) when a stop is requested."""
    if stop_requested.wait(max(0.0, seconds)):
        raise Interrupted()


def check_stop() -> None:
    """Raise Interrupted when a stop was requested (before starting more work)."""
    if stop_requested.is_set():
        raise Interrupted()


def max_workers() -> int:
    """DEPLOY_MAX_WORKERS when set, else no limit of its own; ArgumentError (exit 2) when it is
    not a whole number of 1 or more."""
    value = os.environ.get(MAX_WORKERS_ENV, "").strip()
    if not value:
        return 1 << 16
    if not value.isdigit() or int(value) < 1:
        from deploy.errors import ArgumentError

        raise ArgumentError(MAX_WORKERS_ENV, f"expected a whole number of 1 or more, got {value!r}")
    return int(value)


def map_concurrently(fn: Callable[[T], R], items: Iterable[T], workers: int = 8) -> list[R]:
    """fn over items, in order; the first exception is raised after the others finish. On Ctrl-C
    the workers are told to stop, and the interrupt goes on without waiting for them."""
    items = list(items)
    workers = min(workers, max_workers())
    if len(items) <= 1 or workers <= 1:
        return [fn(item) for item in items]
    pool = ThreadPoolExecutor(max_workers=min(workers, len(items)))
    try:
        futures = [pool.submit(fn, item) for item in items]
        wait_for_all(futures)
    except KeyboardInterrupt:
        request_stop()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return [future.result() for future in futures]


def call_concurrently(*calls: Callable[[], Any], workers: int = 8) -> list[Any]:
    """Each of `calls`, side by side; their answers in the order given. As map_concurrently: the
    first exception (in that order) is raised after the others finish."""
    return map_concurrently(lambda call: call(), calls, workers)
