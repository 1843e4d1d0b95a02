"""Prints how long `inv --list` and `inv --help up` take (median of 10 runs each); no pass/fail."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INV = str(Path(sys.executable).with_name("inv"))


def median_seconds(args: list[str], runs: int = 10) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([INV, *args], cwd=ROOT, capture_output=True, check=True)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


if __name__ == "__main__":
    for args in (["--list"], ["--help", "up"]):
        print(f"inv {' '.join(args):12} median {median_seconds(args) * 1000:6.0f} ms")
