"""The emulator's garbage collection while idle (deploy/emulator/app.py IdleCollector)."""

from __future__ import annotations

import gc
import time
import weakref

from deploy.emulator.app import EmulatorApp, IdleCollector


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def cyclic_garbage() -> weakref.ref:
    return weakref.ref(Node())


def test_collects_only_once_the_emulator_is_quiet() -> None:
    app = EmulatorApp(lambda environ, start_response: [])
    collector = IdleCollector(app, quiet_seconds=60, most_pending=10**9)
    gc.disable()
    try:
        garbage = [cyclic_garbage() for _ in range(2000)]
        app.last_request = time.monotonic()
        assert not collector.collect_if_due(), "a request just now: not in the middle of a burst"
        assert all(ref() is not None for ref in garbage)
        app.last_request = time.monotonic() - 61
        assert collector.collect_if_due()
        assert all(ref() is None for ref in garbage)
        assert collector.collections == 1
    finally:
        gc.enable()


def test_a_burst_that_never_pauses_is_collected_past_the_limit() -> None:
    app = EmulatorApp(lambda environ, start_response: [])
    collector = IdleCollector(app, quiet_seconds=60, most_pending=1500)
    gc.disable()
    try:
        garbage = [cyclic_garbage() for _ in range(2000)]
        app.last_request = time.monotonic()
        assert collector.collect_if_due()
        assert all(ref() is None for ref in garbage)
    finally:
        gc.enable()


def test_stop_gives_python_its_collector_back() -> None:
    collector = IdleCollector(EmulatorApp(lambda environ, start_response: [])).start(every_seconds=30)
    try:
        assert not gc.isenabled()
    finally:
        collector.stop()
    assert gc.isenabled()
