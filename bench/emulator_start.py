"""Benchmark: seconds from `control.start()` to a healthy background emulator (median of 3)."""

from __future__ import annotations

import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Runnable from a checkout as `python bench/emulator_start.py`, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.emulator import control

RUNS = 3


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def time_one_start() -> float:
    began = time.perf_counter()
    control.start(free_port())
    ready = time.perf_counter() - began
    control.stop()
    return ready


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="emulator-bench-") as state:
        os.environ["DEPLOY_STATE_DIR"] = state
        try:
            times = [time_one_start() for _ in range(RUNS)]
        finally:
            control.stop()
    print("emulator start to ready, seconds: " + " ".join(f"{t:.3f}" for t in times))
    print(f"median: {statistics.median(times):.3f} s over {RUNS} starts")


if __name__ == "__main__":
    main()
