"""SQS long polls in the emulator, without holding up every other request.

moto answers a ReceiveMessage with WaitTimeSeconds by sleeping inside its backend until a message
comes or the wait ends, and the emulator serves moto one request at a time: one idle worker's
20-second poll would stall every other call (the workers' included) for 20 seconds. Here a long
poll becomes short polls (WaitTimeSeconds 0) under the lock, with the waiting between them done
outside it (until a queue changes, or a quarter of a second), until a message comes or the wait is
over: the same answer, as AWS gives it. Between the first poll and the last, moto is only asked
again once its queue holds a message it could give (idle workers would otherwise keep the emulator
busy with empty answers, four a second each).
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

# Between short polls a long poll waits for a change to any queue (a send, say), or this long at
# most: a message can also become visible again with no request at all (its visibility timeout).
IDLE_POLL_SECONDS = 0.25
JSON_WAIT = "WaitTimeSeconds"


class Changes:
    """A counter of SQS changes that long polls wait on, instead of asking moto again and again
    (thirty idle workers would otherwise keep the emulator busy answering empty polls)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0

    def seen(self) -> int:
        with self._condition:
            return self._generation

    def changed(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait(self, since: int, timeout: float) -> None:
        with self._condition:
            self._condition.wait_for(lambda: self._generation != since, timeout=max(0.0, timeout))


changes = Changes()


def queue_changed() -> None:
    """Called after every SQS call that may change a queue: waiting polls look again."""
    changes.changed()


def wait_seconds(environ: dict[str, Any], body: bytes) -> tuple[float, bytes, str]:
    """How long the request asks to wait (or its queue's ReceiveMessageWaitTimeSeconds), the
    same request as a short poll, and its QueueUrl."""
    if environ.get("CONTENT_TYPE", "").startswith("application/x-amz-json"):
        params = json.loads(body or b"{}")
        wait = params.get(JSON_WAIT)
        params[JSON_WAIT] = 0
        short = json.dumps(params).encode("utf-8")
        url = params.get("QueueUrl", "")
    else:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        found = dict(pairs)
        wait = found.get(JSON_WAIT)
        short = urlencode([(k, v) for k, v in pairs if k != JSON_WAIT] + [(JSON_WAIT, "0")]).encode()
        url = found.get("QueueUrl", "")
    if wait is None:
        wait = _queue_wait(url)
    try:
        seconds = float(wait)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 20:
        return 0.0, body, url  # moto refuses it as AWS does
    return seconds, short, url


def _queue_wait(queue_url: str) -> float:
    from moto.sqs.models import sqs_backends

    parts = urlsplit(queue_url).path.strip("/").split("/")
    if len(parts) != 2:
        return 0.0
    account, name = parts
    for backend in sqs_backends[account].values():
        queue = backend.queues.get(name)
        if queue is not None:
            return float(getattr(queue, "receive_message_wait_time_seconds", 0) or 0)
    return 0.0


def may_have_messages(queue_url: str) -> bool:
    """False only when moto would surely answer a ReceiveMessage of `queue_url` with no message
    (and change nothing): it has the queue, in whichever account and region it looks, and none
    holds a visible message. Called under the emulator's lock."""
    from moto.sqs.models import sqs_backends

    try:
        name = urlsplit(queue_url).path.strip("/").split("/")[-1]
        queues = [
            backend.queues[name]
            for regions in list(sqs_backends.values())
            for backend in list(regions.values())
            if name in backend.queues
        ]
        # moto's receive_message gives only messages of Queue.messages: visible, not delayed.
        return not queues or any(queue.messages for queue in queues)
    except Exception:
        return True  # let moto answer


def has_messages(status: str, body: bytes) -> bool:
    return not status.startswith("200") or b'"Messages"' in body or b"<Message>" in body


def serve_long_poll(
    environ: dict[str, Any],
    body: bytes,
    start_response: Callable[..., Any],
    serve: Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]],
    lock: AbstractContextManager[Any] | None = None,
) -> list[bytes]:
    """Answer a ReceiveMessage by short polls through `serve` (which takes the emulator's lock,
    `lock`): the first, then one whenever the queue has a message to give, and the last."""
    wait, short, url = wait_seconds(environ, body)
    deadline = time.monotonic() + wait
    polled = False
    while True:
        seen = changes.seen()
        left = deadline - time.monotonic()
        ask = not polled or left <= 0
        if not ask:
            with lock or nullcontext():
                ask = may_have_messages(url)
        if ask:
            answer: list[Any] = []
            attempt = dict(environ, CONTENT_LENGTH=str(len(short)))
            attempt["wsgi.input"] = io.BytesIO(short)
            payload = b"".join(serve(attempt, _capture(answer)))
            polled = True
            left = deadline - time.monotonic()
            if has_messages(answer[0], payload) or left <= 0:
                start_response(answer[0], answer[1])
                return [payload]
        changes.wait(seen, min(left, IDLE_POLL_SECONDS))


def _capture(answer: list[Any]) -> Callable[..., None]:
    def start_response(status: str, headers: list[tuple[str, str]], *rest: Any) -> None:
        answer[:] = [status, headers]

    return start_response
