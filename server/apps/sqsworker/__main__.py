"""`python -m apps.sqsworker` (from `server/`): run the worker until SIGTERM; exit 0 when stopped,
2 when the environment does not say which queue or table to use."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from typing import Any

from apps.sqsworker.worker import ConfigError, Worker, WorkerConfig, WorkerContext, worker_identity


class StopNow(BaseException):
    """Raised by SIGTERM while no message is in hand: ends a long poll at once."""


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    started = time.time()
    try:
        config = WorkerConfig.from_environ(os.environ)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    worker = Worker(WorkerContext(config, worker_identity(os.environ), started))

    def on_stop(signum: int, frame: Any) -> None:
        worker.request_stop()
        # A message in hand finishes first (the loop then sees the request); a poll or an idle
        # worker has nothing to finish.
        if worker.state != "working":
            raise StopNow

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    try:
        return worker.run()
    except StopNow:
        logging.getLogger("sqsworker").info("worker %s stopped", worker.context.identity)
        return 0


if __name__ == "__main__":
    sys.exit(main())
