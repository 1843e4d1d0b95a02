"""What an AWS request is (service, operation, whether it mutates) and the log of those served."""

from __future__ import annotations

import io
import re
from dataclasses import asdict, dataclass
from threading import Lock
from typing import Any
from urllib.parse import parse_qsl

from deploy.stage import is_mutating

READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Access keys of the code the emulator runs itself: ECS worker tasks and Lambda handlers.
WORKLOAD_KEY_PREFIXES = ("EMUTASK", "EMUFUNC")
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# REST-protocol operations a fill-in serves, named as the API names them: the path alone would
# make one operation per resource (`POST /2015-03-31/functions/<name>/invocations`).
REST_OPERATIONS: dict[str, tuple[tuple[str, re.Pattern[str], str], ...]] = {
    "lambda": (("POST", re.compile(r"^/2015-03-31/functions/[^/]+/invocations$"), "Invoke"),),
}


@dataclass(frozen=True)
class Credential:
    """The parts of a SigV4 credential scope: `Credential=AKID/date/region/service/aws4_request`."""

    access_key: str
    region: str
    service: str


@dataclass(frozen=True)
class AwsCall:
    """One AWS request the emulator served."""

    service: str
    operation: str
    mutating: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def credential_of(environ: dict[str, Any]) -> Credential | None:
    """The SigV4 credential scope of a request, or None when it is unsigned or signed otherwise."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    for part in auth.replace(",", " ").split():
        if part.startswith("Credential="):
            fields = part.removeprefix("Credential=").split("/")
            if len(fields) == 5:
                return Credential(fields[0], fields[2], fields[3].lower())
    return None


def read_body(environ: dict[str, Any]) -> bytes:
    """Read the whole request body and put it back, so moto can still read it after us."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH") or ""
    if length.isdigit():
        body = stream.read(int(length)) if int(length) else b""
    elif environ.get("wsgi.input_terminated"):
        # Chunked upload with no Content-Length: werkzeug has already dechunked the stream.
        body = stream.read()
    else:
        return b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def is_form(environ: dict[str, Any]) -> bool:
    return environ.get("CONTENT_TYPE", "").startswith(FORM_CONTENT_TYPE)


def action_of(environ: dict[str, Any], form_body: bytes) -> str | None:
    """The `Action` of a query-protocol request, from its query string or form body."""
    for source in (environ.get("QUERY_STRING", ""), form_body.decode("utf-8", "replace")):
        for key, value in parse_qsl(source, keep_blank_values=True):
            if key == "Action" and value:
                return value
    return None


def rest_operation(environ: dict[str, Any]) -> str:
    """Method, path and query parameter names, e.g. `PUT /bucket?encryption`.

    Only the names of query parameters: their values (prefixes, tokens, upload ids) would make
    every entry unique and can carry data that does not belong in a log.
    """
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "") or "/"
    names = [key for key, _ in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)]
    return f"{method} {path}?{'&'.join(names)}" if names else f"{method} {path}"


def describe_call(environ: dict[str, Any], form_body: bytes = b"") -> AwsCall:
    """Name the service and operation of a request, and whether it may change anything."""
    credential = credential_of(environ)
    service = credential.service if credential else "unknown"
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    operation = action_of(environ, form_body) or (target.rsplit(".", 1)[-1] if target else "")
    if operation:
        return AwsCall(service, operation, is_mutating(operation))
    method = environ.get("REQUEST_METHOD", "GET").upper()
    path = environ.get("PATH_INFO", "") or "/"
    for verb, pattern, name in REST_OPERATIONS.get(service, ()):
        if method == verb and pattern.match(path):
            return AwsCall(service, name, is_mutating(name))
    return AwsCall(service, rest_operation(environ), method not in READ_ONLY_METHODS)


class RequestLog:
    """Every AWS call served, in order; shared by the server's request threads."""

    def __init__(self) -> None:
        self._lock = Lock()
        self._calls: list[AwsCall] = []

    def record(self, call: AwsCall) -> None:
        with self._lock:
            self._calls.append(call)

    def calls(self) -> list[AwsCall]:
        with self._lock:
            return list(self._calls)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [call.as_dict() for call in self.calls()]

    def clear(self) -> int:
        with self._lock:
            cleared = len(self._calls)
            self._calls.clear()
            return cleared
