"""The emulator's WSGI app: moto's server app behind our middleware (request log, fill-ins, health)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from deploy.emulator import faults, fillins, fixes, longpoll, strict, workers
from deploy.emulator.calls import (
    WORKLOAD_KEY_PREFIXES,
    RequestLog,
    credential_of,
    describe_call,
    is_form,
    read_body,
)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

CONTROL_PREFIX = "/_emulator/"
HEALTH_PATH = CONTROL_PREFIX + "health"
MOTO_API_PREFIX = "/moto-api"
MOTO_RESET_PATH = "/moto-api/reset"


class EmulatorApp:
    """Serves moto, except for our control endpoints and the operations a fill-in provides."""

    def __init__(self, moto_app: WsgiApp) -> None:
        self.moto_app = moto_app
        self.log = RequestLog()
        # moto's backends are not thread-safe (plain dicts changed without locks), while the server
        # and its clients are concurrent: one request at a time inside moto and the fill-ins.
        self._serve_lock = threading.RLock()
        # Seconds each AWS request waits before it is served (a real round trip is ~50 ms),
        # outside the lock, so concurrent requests overlap as they do on AWS.
        self.latency_seconds = 0.0
        # When the last AWS request arrived (time.monotonic()), for the idle collector.
        self.last_request = 0.0

    @property
    def serve_lock(self) -> threading.RLock:
        """Held while moto or a fill-in serves a request; a background job that reads or changes
        their state (the ECS scheduler) takes it too."""
        return self._serve_lock

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL_PREFIX):
            return self._control(environ, start_response, path.removeprefix(CONTROL_PREFIX))
        if path.startswith(MOTO_API_PREFIX):
            return self._moto_api(environ, start_response, path)
        self.last_request = time.monotonic()
        if self.latency_seconds > 0:
            time.sleep(self.latency_seconds)
        form_body = read_body(environ) if is_form(environ) else b""
        call = describe_call(environ, form_body)
        credential = credential_of(environ)
        if credential is not None:
            workers.heard_from(credential.access_key)
        # The log holds the calls of the emulator's clients (the tool, the tests), and only those
        # meet faults: not the calls of the code it runs itself (worker tasks polling their queue,
        # function handlers).
        if credential is None or not credential.access_key.startswith(WORKLOAD_KEY_PREFIXES):
            self.log.record(call)
            fault = faults.current()
            kind = fault.pick(call) if fault is not None else None
            if fault is not None and kind is not None:
                return faults.serve_fault(kind, call, environ, start_response, fault.hold_seconds)
        if (call.service, call.operation) == ("sqs", "ReceiveMessage"):
            body = form_body or read_body(environ)
            return longpoll.serve_long_poll(environ, body, start_response, self._moto, self._serve_lock)
        handler = fillins.find_fillin(call.service, call.operation)
        if handler is not None and getattr(handler, "runs_code", False):
            # It runs code that calls this emulator back (a Lambda handler): holding the lock
            # meanwhile would deadlock. It only reads moto's state, once, before running it.
            return self._fillin(handler, environ, start_response, form_body)
        with self._serve_lock:
            if handler is not None:
                return self._fillin(handler, environ, start_response, form_body)
            answer = list(self.moto_app(environ, start_response))
        if call.service == "sqs" and call.mutating:
            longpoll.queue_changed()
        return answer

    def _moto(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        with self._serve_lock:
            return list(self.moto_app(environ, start_response))

    def _moto_api(self, environ: dict[str, Any], start_response: StartResponse, path: str) -> Iterable[bytes]:
        with self._serve_lock:
            response = list(self.moto_app(environ, start_response))
        # Moto's reset empties only moto's backends; ours must go with them.
        if path.rstrip("/") == MOTO_RESET_PATH and environ.get("REQUEST_METHOD") == "POST":
            fillins.reset_fillins()
            strict.set_creation_seconds({store: 0 for store in strict.CREATION_SECONDS})
            faults.switch_off()
        return response

    def _fillin(
        self,
        handler: fillins.Handler,
        environ: dict[str, Any],
        start_response: StartResponse,
        form_body: bytes,
    ) -> Iterable[bytes]:
        body = form_body or read_body(environ)
        status, headers, payload = handler(environ, body)
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        return _respond(start_response, status, dict(headers), data)

    def _control(self, environ: dict[str, Any], start_response: StartResponse, name: str) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if name == "health" and method == "GET":
            return _json(start_response, 200, {"status": "ok", "pid": os.getpid()})
        if name == "requests" and method == "GET":
            return _json(start_response, 200, self.log.as_dicts())
        if name == "requests" and method == "DELETE":
            return _json(start_response, 200, {"cleared": self.log.clear()})
        if name == "delays" and method == "PUT":
            return self._set_delays(environ, start_response)
        if name == "faults" and method == "PUT":
            return self._set_faults(environ, start_response)
        if name == "faults" and method == "GET":
            fault = faults.current()
            return _json(start_response, 200, fault.as_dict() if fault is not None else None)
        if name == "faults" and method == "DELETE":
            return _json(start_response, 200, {"stopped": faults.switch_off()})
        if name == "latency" and method == "PUT":
            return self._set_latency(environ, start_response)
        if name in ("health", "requests", "delays", "faults", "latency"):
            return _json(start_response, 405, {"error": f"{method} not allowed on {name}"})
        return _json(start_response, 404, {"error": f"no emulator endpoint {name!r}"})

    def _set_delays(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """PUT {"rds_seconds": n, "redshift_seconds": n, "redis_seconds": n, "search_seconds": n}
        (any of them): how long new data stores stay `creating` (tests of waits, the slow-store
        benchmark); a reset sets them back to 0."""
        try:
            asked = json.loads(read_body(environ) or b"{}")
            seconds = {
                store: float(asked[f"{store}_seconds"])
                for store in strict.CREATION_SECONDS
                if f"{store}_seconds" in asked
            }
            if not seconds or set(asked) - {f"{store}_seconds" for store in strict.CREATION_SECONDS}:
                raise KeyError(", ".join(sorted(asked)) or "nothing")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            names = ", ".join(f"{store}_seconds" for store in strict.CREATION_SECONDS)
            return _json(start_response, 400, {"error": f"expected numbers for some of {names}: {exc}"})
        strict.set_creation_seconds(seconds)
        return _json(start_response, 200, {f"{s}_seconds": v for s, v in strict.CREATION_SECONDS.items()})

    def _set_latency(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """PUT {"ms": n}: every AWS request waits n milliseconds before it is served."""
        try:
            ms = float(json.loads(read_body(environ) or b"{}")["ms"])
            if ms < 0:
                raise ValueError("negative")
        except (ValueError, KeyError, TypeError) as exc:
            return _json(start_response, 400, {"error": f"expected {{'ms': number >= 0}}: {exc}"})
        self.latency_seconds = ms / 1000
        return _json(start_response, 200, {"ms": ms})

    def _set_faults(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """PUT {"rate": 0.1, "services": [...] | null, "kinds": [...], "seed": n}: see faults.py."""
        try:
            fault = faults.switch_on(json.loads(read_body(environ) or b"{}"))
        except (faults.FaultSettingsError, ValueError) as exc:
            return _json(start_response, 400, {"error": str(exc)})
        return _json(start_response, 200, fault.as_dict())


def build_app() -> EmulatorApp:
    """Moto's server app (every service it has) wrapped in our middleware, fill-ins loaded."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    fillins.load_builtin_fillins()
    fixes.apply()
    strict.apply()
    return EmulatorApp(DomainDispatcherApplication(create_backend_app))


def _respond(start_response: StartResponse, status: int, headers: dict[str, str], body: bytes) -> list[bytes]:
    headers.setdefault("Content-Type", "application/octet-stream")
    headers["Content-Length"] = str(len(body))
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    start_response(f"{status} {reason}", list(headers.items()))
    return [body]


def _json(start_response: StartResponse, status: int, data: Any) -> list[bytes]:
    body = json.dumps(data).encode("utf-8")
    return _respond(start_response, status, {"Content-Type": "application/json"}, body)


class IdleCollector:
    """Python's cyclic garbage collection, run while the emulator is idle instead of in the middle
    of a burst of requests. moto's state holds hundreds of thousands of objects (the managed IAM
    policies alone are thousands of documents), so a full collection takes 0.2-0.3 s, during which
    no request is served: one every twenty or so runs of `up` made that run a quarter slower. The
    automatic collector is off; this one collects once the emulator has had no request for
    `quiet_seconds`, or at once past `most_pending` new objects (a burst that never pauses)."""

    def __init__(self, app: EmulatorApp, quiet_seconds: float = 0.5, most_pending: int = 500_000) -> None:
        self.app = app
        self.quiet_seconds = quiet_seconds
        self.most_pending = most_pending
        self.collections = 0
        self._stop = threading.Event()

    def due(self) -> bool:
        """Whether to collect now: objects are pending, and the emulator is quiet or they are many."""
        import gc

        pending = gc.get_count()[0]
        quiet = time.monotonic() - self.app.last_request >= self.quiet_seconds
        return pending >= self.most_pending or (quiet and pending >= 1000)

    def collect_if_due(self) -> bool:
        import gc

        if not self.due():
            return False
        gc.collect()
        self.collections += 1
        return True

    def start(self, every_seconds: float = 0.25) -> IdleCollector:
        import gc

        gc.disable()

        def loop() -> None:
            while not self._stop.wait(every_seconds):
                self.collect_if_due()

        threading.Thread(target=loop, name="idle-collector", daemon=True).start()
        return self

    def stop(self) -> None:
        import gc

        self._stop.set()
        gc.enable()
