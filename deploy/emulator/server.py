"""Serving the emulator app over HTTP: the foreground server and the in-thread one for tests."""

from __future__ import annotations

import contextlib
import email.parser
import http.client
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from email.utils import formatdate
from http import HTTPStatus
from types import TracebackType
from typing import Any

from moto.moto_server.werkzeug_app import MotoRequestHandler
from werkzeug.exceptions import InternalServerError
from werkzeug.serving import ThreadedWSGIServer
from werkzeug.urls import uri_to_iri
from werkzeug.wsgi import LimitedStream

from deploy.emulator import workers
from deploy.emulator.app import HEALTH_PATH, EmulatorApp, build_app

LOOPBACK = "127.0.0.1"
# Answers that carry no body, whatever their headers say (RFC 9110 6.4.1).
_NO_BODY_CODES = frozenset({204, 304})
_ANSI = {"bold": 1, "red": 31, "green": 32, "yellow": 33, "magenta": 35, "cyan": 36}


class Connections:
    """The server's open connections that wait for their next request, so that closing the server
    also ends them (a client's pooled connection would otherwise keep its thread, and reach a
    server that is gone)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: set[socket.socket] = set()
        self.closed = False

    def wait_for_request(self, connection: socket.socket, rfile: Any) -> bool:
        """Block until the client sends its next request (True) or the connection or the server
        closes (False)."""
        with self._lock:
            if self.closed:
                return False
            self._idle.add(connection)
        try:
            return bool(rfile.peek(1))
        except (OSError, ValueError):
            return False
        finally:
            with self._lock:
                self._idle.discard(connection)

    def close(self) -> None:
        """Refuse further requests and end the connections that wait for one."""
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, set()
        for connection in idle:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class EmulatorHTTPServer(ThreadedWSGIServer):
    """werkzeug's threaded server, with a thread per connection that serves its requests in turn."""

    def __init__(self, host: str, port: int, app: EmulatorApp, handler: type[KeepAliveHandler]) -> None:
        self.connections = Connections()
        super().__init__(host, port, app, handler)

    def server_close(self) -> None:
        self.connections.close()
        super().server_close()


class KeepAliveHandler(MotoRequestHandler):
    """Moto's request handler (it keeps S3 metadata headers with underscores) with HTTP/1.1
    keep-alive connections.

    werkzeug's development server answers every request with `Connection: close`, so each AWS
    call cost a TCP connection, a thread and a socket setup on both sides (most of the emulator's
    CPU for a small call). Here a connection stays open for the client's next request once the
    request body has been read to its end; an answer without Content-Length is sent chunked, as
    werkzeug does. The access log is one preformatted line on stderr (not the logging machinery).
    """

    server: EmulatorHTTPServer
    protocol_version = "HTTP/1.1"
    # An answer's last packet goes at once, not after the client's delayed ACK of the one before.
    disable_nagle_algorithm = True
    _request_body: LimitedStream | None = None
    _answer_started = False
    _color_log = False

    def handle_one_request(self) -> None:
        if not self.server.connections.wait_for_request(self.connection, self.rfile):
            self.close_connection = True
            return
        super().handle_one_request()

    def parse_request(self) -> bool:
        """http.server's parse_request (as of Python 3.11), reading the headers with
        `read_headers` instead of through the email parser."""
        self.command = None
        self.request_version = version = self.default_request_version
        self.close_connection = True
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if len(words) == 0:
            return False
        if len(words) >= 3:  # Enough to determine protocol version
            version = words[-1]
            try:
                if not version.startswith("HTTP/"):
                    raise ValueError
                base_version_number = version.split("/", 1)[1]
                numbers = base_version_number.split(".")
                if len(numbers) != 2:
                    raise ValueError
                if any(not component.isdigit() for component in numbers):
                    raise ValueError("non digit in http version")
                if any(len(component) > 10 for component in numbers):
                    raise ValueError("unreasonable length http version")
                version_number = int(numbers[0]), int(numbers[1])
            except (ValueError, IndexError):
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
                return False
            if version_number >= (1, 1) and self.protocol_version >= "HTTP/1.1":
                self.close_connection = False
            if version_number >= (2, 0):
                self.send_error(
                    HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Invalid HTTP version ({base_version_number})"
                )
                return False
            self.request_version = version
        if not 2 <= len(words) <= 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({command!r})")
                return False
        self.command, self.path = command, path
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")  # Reduce to a single /
        try:
            self.headers = read_headers(self.rfile, self.MessageClass)
        except http.client.LineTooLong as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(err))
            return False
        except http.client.HTTPException as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(err))
            return False
        conntype = self.headers.get("Connection", "")
        if conntype.lower() == "close":
            self.close_connection = True
        elif conntype.lower() == "keep-alive" and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        expect = self.headers.get("Expect", "")
        if (
            expect.lower() == "100-continue"
            and self.protocol_version >= "HTTP/1.1"
            and self.request_version >= "HTTP/1.1"
        ):
            return bool(self.handle_expect_100())
        return True

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        self._request_body = None
        if "wsgi.input_terminated" in environ:
            return environ  # chunked: werkzeug's DechunkedInput reads to the final chunk
        length = environ.get("CONTENT_LENGTH") or "0"
        if length.isdigit() and "HTTP_TRANSFER_ENCODING" not in environ:
            # What the app leaves unread is read past after the answer, so the next request starts
            # where it should; readers see the same bytes as from the raw stream.
            self._request_body = LimitedStream(self.rfile, int(length))
            environ["wsgi.input"] = self._request_body
        else:
            self.close_connection = True  # a body we cannot tell the end of
        return environ

    def run_wsgi(self) -> None:
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.environ = environ = self.make_environ()
        try:
            self._serve(self.server.app, environ)
        except (ConnectionError, TimeoutError) as exc:
            self.close_connection = True
            self.connection_dropped(exc, environ)
        except Exception as exc:
            self.close_connection = True
            if self.server.passthrough_errors:
                raise
            from werkzeug.debug.tbtools import DebugTraceback

            if not self._answer_started:
                with contextlib.suppress(Exception):
                    self._serve(InternalServerError(), environ)
            self.server.log("error", f"Error on request:\n{DebugTraceback(exc).render_traceback_text()}")
        if not self.close_connection:
            self._finish_request_body(environ)

    def _serve(self, app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> None:
        """Call the WSGI app and write its answer, framed so the connection can serve another."""
        answer: list[Any] = []
        self._answer_started = False
        no_body = environ["REQUEST_METHOD"] == "HEAD"
        chunked = False
        remaining: int | None = None

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if exc_info:
                try:
                    if self._answer_started:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif answer:
                raise AssertionError("Headers already set")
            answer[:] = [status, headers]
            return write

        def write(data: bytes) -> None:
            nonlocal no_body, chunked, remaining
            assert answer, "write() before start_response"
            assert isinstance(data, bytes), "applications must write bytes"
            head = b""
            if not self._answer_started:
                self._answer_started = True
                status, headers = answer
                code_text, _, reason = status.partition(" ")
                code = int(code_text)
                no_body = no_body or 100 <= code < 200 or code in _NO_BODY_CODES
                self.send_response(code, reason)
                length = connection = None
                for key, value in headers:
                    self.send_header(key, value)
                    if key.lower() == "content-length":
                        length = value
                    elif key.lower() == "connection":
                        connection = value
                if no_body:
                    pass
                elif length is not None and length.strip().isdigit():
                    remaining = int(length)
                elif length is None:
                    chunked = True
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.close_connection = True  # a length we cannot frame by
                if connection is None and (self.close_connection or self.server.connections.closed):
                    self.send_header("Connection", "close")
                self._headers_buffer.append(b"\r\n")
                head = b"".join(self._headers_buffer)
                self._headers_buffer = []
            if no_body or not data:
                data = b""
            elif chunked:
                data = b"%x\r\n%s\r\n" % (len(data), data)
            elif remaining is not None:
                remaining -= len(data)
                if remaining < 0:
                    self.close_connection = True  # more than it announced: the next answer would be off
            if not head and not data:
                return
            if len(data) < 65536:
                # One send for the head and a small body: one packet, no copy of a large one.
                self.wfile.write(head + data)
            else:
                self.wfile.write(head)
                self.wfile.write(data)

        body = app(environ, start_response)
        try:
            for data in body:
                write(data)
            if not self._answer_started:
                write(b"")
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            if remaining:
                self.close_connection = True  # less than it announced
            self.wfile.flush()
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()

    def _finish_request_body(self, environ: dict[str, Any]) -> None:
        """Read what the app left of the request body; close the connection if that fails."""
        stream = self._request_body if self._request_body is not None else environ.get("wsgi.input")
        try:
            if isinstance(stream, LimitedStream):
                stream.exhaust()
            elif stream is not None and "wsgi.input_terminated" in environ:
                while stream.read(65536):
                    pass
        except Exception:
            self.close_connection = True

    # -- the access log

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        try:
            line = f"{self.command} {iri_of(self.path)} {self.request_version}"
        except AttributeError:
            line = self.requestline  # path isn't set if the request line was bad
        line = line.translate(self._control_char_table)
        code = str(code)
        if self._color_log:
            line = _styled(line, code)
        _write_log(f'{self.address_string()} - - [{_log_time()}] "{line}" {code} {size}\n')

    def date_time_string(self, timestamp: float | None = None) -> str:
        if timestamp is not None:
            return super().date_time_string(timestamp)
        return _http_date()


# http.client's limits on a head: the length of a line, the number of lines.
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100
# A header line the email parser takes as it stands: a name (printable, no colon), a colon, a value,
# CRLF; nothing it reads differently (a folded line, a bare CR or LF, a "From " envelope line).
_PLAIN_HEADER = re.compile(r"([\041-\071\073-\176]+):([^\r\n]*)\r\n")


def read_headers(rfile: Any, message_class: type[http.client.HTTPMessage]) -> http.client.HTTPMessage:
    """What `http.client.parse_headers(rfile, _class=message_class)` reads and returns, without
    the email parser (most of the cost of a request's head) when every line is plain: the same
    message, field for field (tests/test_emulator.py compares the two)."""
    lines = []
    while True:
        line = rfile.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
        if line in (b"\r\n", b"\n", b""):
            break
    if lines[-1] == b"\r\n":
        fields = []
        for line in lines[:-1]:
            plain = _PLAIN_HEADER.fullmatch(line.decode("iso-8859-1"))
            if plain is None:
                break
            fields.append((plain[1], plain[2].lstrip(" \t")))
        else:
            message = message_class()
            for name, value in fields:
                message.set_raw(name, value)
            message.set_payload("")
            # The email parser reads a multipart or message/* body for its parts: leave those to it.
            if message.get_content_maintype() not in ("multipart", "message"):
                return message
    return email.parser.Parser(_class=message_class).parsestr(b"".join(lines).decode("iso-8859-1"))


def iri_of(path: str) -> str:
    """werkzeug's uri_to_iri(path), as its access log shows a path: at once for a plain path
    (nothing quoted, no fragment, no empty query), which it gives back unchanged."""
    plain = (
        path.startswith("/")
        and not path.startswith("//")
        and path.isascii()
        and "%" not in path
        and "#" not in path
        and not path.endswith("?")
    )
    return path if plain else uri_to_iri(path)


class EmulatorRequestHandler(KeepAliveHandler):
    """The emulator's handler: an access line per request, but health polls unlogged.

    Every CLI command polls health, and those lines would bury the AWS calls in the log file.
    """

    _color_log = sys.stderr.isatty()

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        # No path on a request whose first line was refused.
        if not getattr(self, "path", "").startswith(HEALTH_PATH):
            super().log_request(*args, **kwargs)


class QuietRequestHandler(KeepAliveHandler):
    """The handler with no access log, for servers inside a test run."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


_log_lock = threading.Lock()


def _write_log(line: str) -> None:
    with _log_lock:
        sys.stderr.write(line)


def _styled(line: str, code: str) -> str:
    """werkzeug's colours for an access line, by status."""
    if code.startswith("1"):
        styles: tuple[str, ...] = ("bold",)
    elif code == "200":
        return line
    elif code == "304":
        styles = ("cyan",)
    elif code.startswith("3"):
        styles = ("green",)
    elif code == "404":
        styles = ("yellow",)
    elif code.startswith("4"):
        styles = ("bold", "red")
    else:
        styles = ("bold", "magenta")
    for style in styles:
        line = f"\x1b[{_ANSI[style]}m{line}"
    return f"{line}\x1b[0m"


def make_emulator_server(
    host: str = LOOPBACK, port: int = 0, *, app: EmulatorApp | None = None, log_requests: bool = True
) -> EmulatorHTTPServer:
    """A threaded werkzeug server for the emulator app, bound and ready to `serve_forever()`."""
    handler = EmulatorRequestHandler if log_requests else QuietRequestHandler
    return EmulatorHTTPServer(host, port, app or build_app(), handler)


class EmulatorServer:
    """The emulator on 127.0.0.1 in a daemon thread of this process, for tests.

    Moto state is per process, so it is shared with `moto.mock_aws` in the same test run.

        with EmulatorServer() as emulator:
            boto3.client("sqs", endpoint_url=emulator.endpoint_url, ...)
    """

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: EmulatorHTTPServer | None = None
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


class _PerSecond:
    """A timestamp string of the current second, made once a second."""

    def __init__(self, make: Callable[[float], str]) -> None:
        self._make = make
        self._second = -1
        self._text = ""

    def __call__(self) -> str:
        now = time.time()
        if int(now) != self._second:
            self._text, self._second = self._make(now), int(now)
        return self._text


def _local_time(now: float) -> str:
    """http.server's log time (28/Nov/2026 18:49:35, local)."""
    year, month, day, hh, mm, ss, *_ = time.localtime(now)
    return f"{day:02d}/{MotoRequestHandler.monthname[month]:>3s}/{year:04d} {hh:02d}:{mm:02d}:{ss:02d}"


_log_time = _PerSecond(_local_time)
_http_date = _PerSecond(lambda now: formatdate(now, usegmt=True))
