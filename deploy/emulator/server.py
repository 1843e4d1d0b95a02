"""Serving the emulator app over HTTP: the foreground server and the in-thread one for tests."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from moto.moto_server.werkzeug_app import MotoRequestHandler
from werkzeug.serving import BaseWSGIServer, make_server

from deploy.emulator import workers
from deploy.emulator.app import HEALTH_PATH, EmulatorApp, build_app

LOOPBACK = "127.0.0.1"


class EmulatorRequestHandler(MotoRequestHandler):
    """Moto's request handler (keeps S3 metadata headers with underscores); health polls unlogged.

    Every CLI command polls health, and those lines would bury the AWS calls in the log file.
    """

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        if not self.path.startswith(HEALTH_PATH):
            super().log_request(*args, **kwargs)


class QuietRequestHandler(MotoRequestHandler):
    """Moto's request handler with no access log, for servers inside a test run."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def make_emulator_server(
    host: str = LOOPBACK, port: int = 0, *, app: EmulatorApp | None = None, log_requests: bool = True
) -> BaseWSGIServer:
    """A threaded werkzeug server for the emulator app, bound and ready to `serve_forever()`."""
    handler = EmulatorRequestHandler if log_requests else QuietRequestHandler
    return make_server(host, port, app or build_app(), threaded=True, request_handler=handler)


class EmulatorServer:
    """The emulator on 127.0.0.1 in a daemon thread of this process, for tests.

    Moto state is per process, so it is shared with `moto.mock_aws` in the same test run.

        with EmulatorServer() as emulator:
            boto3.client("sqs", endpoint_url=emulator.endpoint_url, ...)
    """

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.app: EmulatorApp | None = None

    def start(self) -> EmulatorServer:
        if self._server is not None:
            return self
        self.app = build_app()
        try:
            self._server = make_emulator_server(LOOPBACK, self._port, app=self.app, log_requests=False)
        except SystemExit as exc:
            # werkzeug prints the bind error and calls sys.exit(1); a test wants an exception.
            raise OSError(f"cannot listen on {LOOPBACK}:{self._port} (see stderr)") from exc
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="emulator-server", daemon=True
        )
        self._thread.start()
        workers.start(self.endpoint_url, self.app.serve_lock)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        workers.stop(self.endpoint_url)
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the listening socket is bound to."""
        if self._server is None:
            raise RuntimeError("the emulator server is not started")
        host, port = self._server.socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def requests(self) -> list[dict[str, Any]]:
        return self._app().log.as_dicts()

    def clear_requests(self) -> None:
        self._app().log.clear()

    def reset(self) -> None:
        """Wipe moto and fill-in state through the same HTTP route the CLI uses."""
        from deploy.emulator.control import reset

        reset(self.endpoint_url)

    def _app(self) -> EmulatorApp:
        if self.app is None:
            raise RuntimeError("the emulator server is not started")
        return self.app
