"""Test-only faults: a set fraction of AWS requests fail the way AWS and networks fail.

`PUT /_emulator/faults {"rate": 0.1, "services": ["sqs"] | null, "kinds": [...], "seed": n,
"hold_seconds": s}` turns them on, `DELETE /_emulator/faults` off (and a reset turns them off). Each
AWS request of a listed service (its SigV4 signing name; null: every service) fails with
probability `rate`, with one of the `kinds`, drawn from a generator seeded by `seed`:

- `throttle`: the service's throttling error in its own protocol (`Throttling` for query and
  REST-XML APIs, `RequestLimitExceeded` for EC2, `SlowDown` for S3, `ThrottlingException` for JSON
  APIs, `TooManyRequestsException` for REST-JSON ones), as AWS sends it;
- `500`: InternalError; `503`: ServiceUnavailable;
- `reset`: the connection is aborted (TCP RST) without an answer;
- `timeout`: no answer for `hold_seconds` (longer than the client's read timeout), then aborted.

A faulted request never reaches moto or a fill-in: it stands for a request lost on its way in, so
a retry is the first attempt AWS sees. The emulator's own paths (`/_emulator/`, `/moto-api`) are
never faulted. Faulted requests are logged like the others, so a test sees every attempt.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from deploy.emulator.calls import AwsCall

KINDS = ("throttle", "500", "503", "reset", "timeout")
DEFAULT_HOLD_SECONDS = 3.0
MAX_HOLD_SECONDS = 60.0
# Services whose REST APIs answer in XML (every other REST API answers in JSON).
REST_XML_SERVICES = frozenset({"s3", "route53", "cloudfront"})
StartResponse = Callable[..., Any]


class FaultSettingsError(ValueError):
    """A PUT body the fault switch cannot use."""


@dataclass
class Faults:
    """The faults in force: which requests fail, how, and the seeded draw that picks them."""

    rate: float
    services: frozenset[str] | None
    kinds: tuple[str, ...]
    seed: int
    hold_seconds: float
    injected: dict[str, int] = field(default_factory=dict)
    _random: random.Random = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def pick(self, call: AwsCall) -> str | None:
        """The kind of fault for this request, or None to serve it."""
        if self.services is not None and call.service not in self.services:
            return None
        with self._lock:
            if self._random.random() >= self.rate:
                return None
            kind = self._random.choice(self.kinds)
            self.injected[kind] = self.injected.get(kind, 0) + 1
            return kind

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            injected = dict(self.injected)
        return {
            "rate": self.rate,
            "services": sorted(self.services) if self.services is not None else None,
            "kinds": list(self.kinds),
            "seed": self.seed,
            "hold_seconds": self.hold_seconds,
            "injected": injected,
        }


_current: Faults | None = None
_switch_lock = threading.Lock()


def current() -> Faults | None:
    return _current


def switch_on(settings: dict[str, Any]) -> Faults:
    """Validate a PUT body and put its faults in force (replacing any before)."""
    global _current
    faults = parse_settings(settings)
    with _switch_lock:
        _current = faults
    return faults


def switch_off() -> dict[str, Any] | None:
    """Stop injecting; what was in force, with its counts, or None."""
    global _current
    with _switch_lock:
        before, _current = _current, None
    return before.as_dict() if before is not None else None


def parse_settings(settings: Any) -> Faults:
    if not isinstance(settings, dict):
        raise FaultSettingsError("expected a JSON object")
    unknown = sorted(set(settings) - {"rate", "services", "kinds", "seed", "hold_seconds"})
    if unknown:
        raise FaultSettingsError(f"unknown keys {unknown}")
    rate = settings.get("rate")
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 <= rate <= 1:
        raise FaultSettingsError("rate: a number from 0 to 1")
    services = settings.get("services")
    if services is not None and (
        not isinstance(services, list) or not all(isinstance(s, str) and s for s in services)
    ):
        raise FaultSettingsError("services: a list of SigV4 service names, or null for all")
    kinds = settings.get("kinds", list(KINDS))
    if not isinstance(kinds, list) or not kinds or not set(kinds) <= set(KINDS):
        raise FaultSettingsError(f"kinds: a non-empty list of {list(KINDS)}")
    seed = settings.get("seed", 0)
    hold = settings.get("hold_seconds", DEFAULT_HOLD_SECONDS)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise FaultSettingsError("seed: an integer")
    if not isinstance(hold, int | float) or isinstance(hold, bool) or not 0 < hold <= MAX_HOLD_SECONDS:
        raise FaultSettingsError(f"hold_seconds: a number above 0, at most {MAX_HOLD_SECONDS:g}")
    chosen = frozenset(services) if services is not None else None
    return Faults(float(rate), chosen, tuple(kinds), seed, float(hold))


def parse_body(body: bytes) -> Faults:
    try:
        return parse_settings(json.loads(body or b"{}"))
    except json.JSONDecodeError as exc:
        raise FaultSettingsError(f"not JSON: {exc}") from None


# -- serving a fault -------------------------------------------------------------------------------


def serve_fault(
    kind: str, call: AwsCall, environ: dict[str, Any], start_response: StartResponse, hold_seconds: float
) -> Iterable[bytes]:
    """Answer the request with the fault, or drop its connection (after holding it, for a timeout)."""
    if kind in ("reset", "timeout"):
        if kind == "timeout":
            time.sleep(hold_seconds)
        abort_connection(environ)
        # werkzeug takes a dropped connection quietly: no answer is written, no traceback logged.
        raise ConnectionResetError(f"emulator fault: {kind} on {call.service}:{call.operation}")
    status, headers, body = error_answer(kind, call, environ)
    headers["Content-Length"] = str(len(body))
    start_response(status, list(headers.items()))
    return [body]


def abort_connection(environ: dict[str, Any]) -> None:
    """Drop the request's connection, as a load balancer that loses it: shut down at once (the
    client reads no answer), and reset (linger 0) when the server closes it."""
    sock = environ.get("werkzeug.socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def protocol_of(call: AwsCall, environ: dict[str, Any]) -> str:
    """The wire protocol of a request: json, query, ec2, rest-xml or rest-json."""
    if environ.get("HTTP_X_AMZ_TARGET"):
        return "json"
    if call.service == "ec2":
        return "ec2"
    if not call.operation.startswith(("GET ", "PUT ", "POST ", "DELETE ", "HEAD ", "PATCH ")):
        # An `Action` (query protocol), or a REST operation the log names (Lambda's Invoke).
        return "query" if call.service != "lambda" else "rest-json"
    return "rest-xml" if call.service in REST_XML_SERVICES else "rest-json"


# (status, code) of each kind, by protocol: what AWS sends for a throttled or failed request.
_THROTTLE = {
    "json": (400, "ThrottlingException"),
    "query": (400, "Throttling"),
    "ec2": (503, "RequestLimitExceeded"),
    "rest-xml": (400, "Throttling"),
    "rest-json": (429, "TooManyRequestsException"),
}
_STATUS_LINES = {400: "400 Bad Request", 429: "429 Too Many Requests", 500: "500 Internal Server Error"}
_STATUS_LINES[503] = "503 Service Unavailable"


def error_answer(kind: str, call: AwsCall, environ: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    protocol = protocol_of(call, environ)
    if kind == "throttle":
        status, code = (503, "SlowDown") if call.service == "s3" else _THROTTLE[protocol]
        message = "Please reduce your request rate." if code == "SlowDown" else "Rate exceeded"
    elif kind == "500":
        status, code, message = 500, "InternalError", "We encountered an internal error. Please try again."
    else:
        status, code, message = 503, "ServiceUnavailable", "Service is unavailable. Please try again."
    request_id = f"fault-{random.getrandbits(48):012x}"
    if protocol in ("json", "rest-json"):
        body = json.dumps({"__type": code, "message": message}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": code}
        headers["x-amzn-RequestId"] = request_id
        return _STATUS_LINES[status], headers, body
    if protocol == "ec2":
        xml = (
            f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error>"
            f"</Errors><RequestID>{request_id}</RequestID></Response>"
        )
    elif call.service == "s3":
        xml = f"<Error><Code>{code}</Code><Message>{message}</Message>"
        xml += f"<RequestId>{request_id}</RequestId></Error>"
    else:
        kind_of = "Sender" if status < 500 else "Receiver"
        xml = (
            f"<ErrorResponse><Error><Type>{kind_of}</Type><Code>{code}</Code><Message>{message}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n' + xml).encode()
    return _STATUS_LINES[status], {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}, body
