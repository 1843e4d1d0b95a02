"""The embedded emulator: process control, loopback binding, request log, reset and fill-ins."""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from deploy.emulator import control
from deploy.emulator.fillins import (
    FillinBackends,
    find_fillin,
    register_fillin,
    unregister_fillin,
)
from deploy.emulator.fillins.core import query_params, query_response
from deploy.emulator.server import EmulatorServer
from deploy.errors import DeployError

ClientFactory = Callable[[str], Any]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private state directory; whatever emulator a test starts is stopped afterwards."""
    monkeypatch.setenv("DEPLOY_STATE_DIR", str(tmp_path))
    yield tmp_path
    control.stop()


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        yield server


@pytest.fixture
def fresh(emulator: EmulatorServer) -> EmulatorServer:
    emulator.reset()
    emulator.clear_requests()
    return emulator


@pytest.fixture
def client(fresh: EmulatorServer) -> ClientFactory:
    def make(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=fresh.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    return make


def get_json(url: str, method: str = "GET") -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as response:
        return json.loads(response.read())


def listening_addresses(port: int) -> list[str]:
    """The local IPv4/IPv6 addresses that listen on `port`, from /proc/net/tcp{,6}."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                if len(address) == 8:  # IPv4, little-endian
                    found.append(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
                else:
                    found.append(address)
    return found


# process control


def test_start_status_ensure_running_stop(state: Path) -> None:
    port = free_port()

    info = control.start(port)

    assert info.endpoint_url == f"http://127.0.0.1:{port}"
    assert (state / "emulator.pid").read_text().strip() == str(info.pid)
    assert (state / "emulator.port").read_text().strip() == str(port)
    assert control.status() is not None and control.status().pid == info.pid
    assert control.ensure_running(info.endpoint_url) == info.endpoint_url
    assert control.start(port).pid == info.pid, "a second start must reuse the running emulator"
    assert control.status().pid == info.pid
    assert control.stop() is True
    assert control.status() is None
    assert not (state / "emulator.pid").exists()
    assert control.stop() is False


def test_background_emulator_listens_on_loopback_only(state: Path) -> None:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs /proc/net/tcp to read listening sockets")
    info = control.start(free_port())

    assert listening_addresses(info.port) == ["127.0.0.1"]
    assert get_json(info.endpoint_url + "/_emulator/health")["status"] == "ok"


def test_ensure_running_starts_a_loopback_emulator(state: Path) -> None:
    endpoint = f"http://localhost:{free_port()}"

    assert control.ensure_running(endpoint) == endpoint

    info = control.status()
    assert info is not None and endpoint.endswith(f":{info.port}")
    assert control.health(endpoint) is not None


def test_ensure_running_refuses_a_remote_endpoint_without_network(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("ensure_running must not touch the network for a remote host")

    monkeypatch.setattr(control, "health", no_network)
    monkeypatch.setattr(control, "start", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)

    with pytest.raises(DeployError, match=r"unreachable.*inv local\.start"):
        control.ensure_running("http://10.255.255.1:1")


def test_start_refuses_a_port_used_by_another_program(state: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]

        with pytest.raises(DeployError, match=f"port {port}.*in use"):
            control.start(port)

    assert control.status() is None


def test_start_reports_a_child_that_exits(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Skip the busy-port check so the child itself hits the taken port, as in a race.
    monkeypatch.setattr(control, "_check_port_free", lambda port: None)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]

        with pytest.raises(DeployError, match=r"exited while starting.*emulator\.log"):
            control.start(port)

    assert control.status() is None
    assert f"Port {port} is in use" in (state / "emulator.log").read_text()


def test_start_gives_up_and_kills_a_silent_child(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control, "START_TIMEOUT_SECONDS", 0.0)

    with pytest.raises(DeployError, match=r"did not answer.*emulator\.log"):
        control.start(free_port())

    assert control.status() is None
    assert not (state / "emulator.pid").exists()


def test_status_removes_a_stale_pid_file(state: Path) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    (state / "emulator.pid").write_text(finished.stdout.decode())
    (state / "emulator.port").write_text("4566\n")

    assert control.status() is None
    assert not (state / "emulator.pid").exists()
    assert not (state / "emulator.port").exists()


def test_state_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DEPLOY_STATE_DIR", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert control.state_dir() == tmp_path / ".local" / "state" / "iotile-deploy"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert control.state_dir() == tmp_path / "xdg" / "iotile-deploy"
    monkeypatch.setenv("DEPLOY_STATE_DIR", str(tmp_path / "mine"))
    assert control.state_dir() == tmp_path / "mine"


def test_control_does_not_import_moto_or_boto3() -> None:
    code = (
        "import sys, deploy.emulator.control\n"
        "print(sorted(m for m in ('moto', 'boto3', 'botocore') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# the in-thread server and the app


def test_server_binds_loopback(emulator: EmulatorServer) -> None:
    host, port = emulator.address

    assert host == "127.0.0.1"
    assert emulator.endpoint_url == f"http://127.0.0.1:{port}"
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_request_log_marks_mutating_calls(fresh: EmulatorServer, client: ClientFactory) -> None:
    sqs, s3 = client("sqs"), client("s3")

    sqs.create_queue(QueueName="iotile-worker-local")
    sqs.list_queues()
    s3.create_bucket(Bucket="iotile-cloud-reports")
    s3.head_bucket(Bucket="iotile-cloud-reports")

    assert fresh.requests() == [
        {"service": "sqs", "operation": "CreateQueue", "mutating": True},
        {"service": "sqs", "operation": "ListQueues", "mutating": False},
        {"service": "s3", "operation": "PUT /iotile-cloud-reports", "mutating": True},
        {"service": "s3", "operation": "HEAD /iotile-cloud-reports", "mutating": False},
    ]


def test_request_log_leaves_out_the_code_the_emulator_runs(
    fresh: EmulatorServer, client: ClientFactory
) -> None:
    """Worker tasks and function handlers sign with keys of their own: their calls (a worker's
    polls, say) are not calls of the tool, and would make every count of the tool's calls wrong."""
    url = client("sqs").create_queue(QueueName="iotile-worker-local")["QueueUrl"]
    fresh.clear_requests()
    for key in ("EMUTASK0123456789ABC", "EMUFUNC0123456789ABC"):
        workload = boto3.client(
            "sqs",
            endpoint_url=fresh.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key="testing",
        )
        workload.receive_message(QueueUrl=url, WaitTimeSeconds=0)
    client("sqs").receive_message(QueueUrl=url, WaitTimeSeconds=0)

    assert fresh.requests() == [{"service": "sqs", "operation": "ReceiveMessage", "mutating": True}]


def test_request_log_over_http(fresh: EmulatorServer, client: ClientFactory) -> None:
    client("s3").create_bucket(Bucket="iotile-cloud-media")
    fresh.clear_requests()
    client("s3").put_bucket_encryption(
        Bucket="iotile-cloud-media",
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    client("iam").create_role(RoleName="IOTileProductionRole", AssumeRolePolicyDocument="{}")
    url = fresh.endpoint_url + "/_emulator/requests"

    assert get_json(url)[0]["operation"] == "PUT /iotile-cloud-media?encryption"
    assert get_json(url)[1] == {"service": "iam", "operation": "CreateRole", "mutating": True}
    assert len(get_json(url)) == 2, "control endpoints are not recorded"
    assert get_json(url, "DELETE") == {"cleared": 2}
    assert get_json(url) == []


def test_health(emulator: EmulatorServer) -> None:
    assert get_json(emulator.endpoint_url + "/_emulator/health") == {"status": "ok", "pid": os.getpid()}


# keep-alive connections and the access log of the HTTP server

STS_CALL = b"Action=GetCallerIdentity&Version=2011-06-15"
STS_HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded",
    "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sts/aws4_request, "
    "SignedHeaders=host, Signature=0",
}


def test_a_connection_serves_one_request_after_another(fresh: EmulatorServer) -> None:
    """werkzeug's server closed the connection after every answer: a TCP connection and a thread
    per AWS call. The emulator's keeps it for the client's next request, with the body of each
    request read to its end (the app may leave some, or all of it, unread)."""
    connection = http.client.HTTPConnection("127.0.0.1", fresh.port, timeout=5)
    connection.connect()
    first_socket = connection.sock
    answers = []
    for method, path, body, headers in [
        ("POST", "/", STS_CALL, STS_HEADERS),
        ("GET", "/_emulator/health", b"a body nobody reads" * 1000, {}),
        ("POST", "/", STS_CALL, STS_HEADERS),
        ("PUT", "/_emulator/latency", iter([b'{"ms"', b": 0}"]), {"Transfer-Encoding": "chunked"}),
        ("HEAD", "/_emulator/health", None, {}),
        ("DELETE", "/_emulator/requests", None, {}),
    ]:
        chunked = "Transfer-Encoding" in headers
        connection.request(method, path, body=body, headers=headers, encode_chunked=chunked)
        response = connection.getresponse()
        answers.append((response.status, response.getheader("Connection"), response.read()))
        assert connection.sock is first_socket, f"{method} {path} closed the connection"
    connection.close()

    assert [status for status, _, _ in answers] == [200, 200, 200, 200, 405, 200]
    assert {keep for _, keep, _ in answers} == {None}
    assert b"<Account>123456789012</Account>" in answers[0][2]
    assert answers[0][2].split(b"<RequestId>")[0] == answers[2][2].split(b"<RequestId>")[0]
    assert json.loads(answers[1][2])["status"] == "ok"
    assert answers[4][2] == b"", "an answer to HEAD has no body, even where the app gave one"
    assert json.loads(answers[5][2]) == {"cleared": 2}


def serve_in_thread(app: Callable[..., Any], *, log_requests: bool = False) -> Any:
    from deploy.emulator.server import make_emulator_server

    server = make_emulator_server(app=app, log_requests=log_requests)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def odd_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """Answers a well-behaved app can give, besides a plain one: no Content-Length, a body for a
    HEAD or a 304, a Content-Length that is wrong."""
    path = environ["PATH_INFO"]
    if path == "/streamed":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"first ", b"", b"second"]
    if path == "/not-modified":
        start_response("304 Not Modified", [("Content-Length", "5")])
        return [b"stale"]
    if path == "/short":
        start_response("200 OK", [("Content-Length", "10")])
        return [b"only5"]
    start_response("200 OK", [("Content-Length", "5")])
    return [b"plain"]


def test_each_answer_is_framed_so_the_next_one_starts_where_it_should() -> None:
    server = serve_in_thread(odd_app)
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=5)
    try:
        answers = []
        for method, path in [
            ("GET", "/streamed"),
            ("HEAD", "/plain"),
            ("GET", "/not-modified"),
            ("GET", "/plain"),
        ]:
            connection.request(method, path)
            response = connection.getresponse()
            answers.append((response.status, response.getheader("Transfer-Encoding"), response.read()))
        connection.request("GET", "/short")
        short = connection.getresponse()
        assert short.getheader("Connection") is None  # it has not said all yet: the connection ends
        with pytest.raises(http.client.IncompleteRead):
            short.read()
    finally:
        connection.close()
        server.shutdown()
        server.server_close()

    assert answers == [
        (200, "chunked", b"first second"),
        (200, None, b""),
        (304, None, b""),
        (200, None, b"plain"),
    ]


def test_closing_the_server_ends_its_idle_connections() -> None:
    server = serve_in_thread(odd_app)
    connection = socket.create_connection(("127.0.0.1", server.server_port), timeout=5)
    connection.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
    assert connection.recv(4096).endswith(b"\r\n\r\nplain")

    server.shutdown()
    server.server_close()

    assert connection.recv(4096) == b"", "the connection waiting for a request was closed"
    connection.close()


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/bucket/key.txt?list-type=2&prefix=a%2Fb",
        "/a?",
        "/a?b?",
        "/a#frag",
        "/caf%C3%A9",
        "/a:b/c;d=1",
        "//host/x",
        "http://host:1/p?q",
        "/\u00e9t\u00e9",
        "*",
        "/a+b=c&d",
        "/?",
        "/%zz",
    ],
)
def test_access_log_paths_are_werkzeugs(path: str) -> None:
    from werkzeug.urls import uri_to_iri

    from deploy.emulator.server import iri_of

    assert iri_of(path) == uri_to_iri(path)


def test_access_log_is_a_line_per_request_but_not_health(capsys: pytest.CaptureFixture[str]) -> None:
    from deploy.emulator.app import HEALTH_PATH

    server = serve_in_thread(odd_app, log_requests=True)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=5)
        for path in ("/plain", HEALTH_PATH, "/caf%C3%A9?x=1", "/not-modified"):
            connection.request("GET", path)
            connection.getresponse().read()
        connection.close()
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as bad:
            bad.sendall(b"NONSENSE\r\n\r\n")
            assert b"Error code: 400" in bad.makefile("rb").read()  # an HTTP/0.9 answer: no head
    finally:
        server.shutdown()
        server.server_close()

    lines = capsys.readouterr().err.splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        '"GET /plain HTTP/1.1" 200 -',
        '"GET /café?x=1 HTTP/1.1" 200 -',
        '"GET /not-modified HTTP/1.1" 304 -',
        '"NONSENSE" 400 -',
    ]
    stamp = time.strftime("%d/%b/%Y")
    assert all(line.startswith(f"127.0.0.1 - - [{stamp} ") for line in lines)


HEADS = [
    b"Host: 127.0.0.1:4566\r\nAccept-Encoding: identity\r\nContent-Type: application/x-www-form-urlencoded;"
    b" charset=utf-8\r\nUser-Agent: Boto3/1.44.8 md/Botocore#1.44.8\r\nX-Amz-Date: 20261128T185128Z\r\n"
    b"Authorization: AWS4-HMAC-SHA256 Credential=testing/20261128/us-east-1/ec2/aws4_request, "
    b"SignedHeaders=content-type;host;x-amz-date, Signature=69065661cb\r\nContent-Length: 157\r\n\r\n",
    b"\r\n",
    b"X-Empty:\r\nX-Spaces:  \t padded \t \r\nX-Colons: a:b::c\r\nx-twice: 1\r\nX-Twice: 2\r\n\r\n",
    b"X-Folded: first\r\n  second\r\n\tthird\r\nHost: x\r\n\r\n",
    b"X-Bare-LF: value\nHost: x\n\n",
    b"X-Bare-CR: one\rtwo\r\n\r\n",
    b"X-Latin: caf\xe9 \x85 \x0b \x1c end\r\n\r\n",
    b"From someone\r\nHost: x\r\n\r\n",
    b": no name\r\nHost: x\r\n\r\n",
    b"No colon at all\r\nHost: x\r\n\r\n",
    b"Bad Name: spaced\r\nHost: x\r\n\r\n",
    b"Content-Type: multipart/form-data; boundary=xyz\r\nHost: x\r\n\r\n",
    b"Content-Type: message/delivery-status\r\n\r\n",
    b"Content-Type: MESSAGE/rfc822\r\n\r\n",
    b"Host: x\r\nX-Cut: the end never comes",
    b"Host: x\r\n",
]


def fields_of(message: Any) -> dict[str, Any]:
    """A parsed head, field by field (defects and parts by what they hold: they compare by identity)."""
    fields = {**vars(message), "defects": [repr(defect) for defect in message.defects]}
    if isinstance(message._payload, list):
        fields["_payload"] = [fields_of(part) for part in message._payload]
    return fields


@pytest.mark.parametrize("head", HEADS)
def test_headers_read_as_the_email_parser_reads_them(head: bytes) -> None:
    from deploy.emulator.server import read_headers

    fast, slow = io.BytesIO(head + b"the body"), io.BytesIO(head + b"the body")

    ours = read_headers(fast, http.client.HTTPMessage)
    theirs = http.client.parse_headers(slow)

    assert type(ours) is type(theirs)
    assert fields_of(ours) == fields_of(theirs)
    assert fast.read() == slow.read()


def test_a_plain_head_is_read_without_the_email_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    import email.parser

    from deploy.emulator.server import read_headers

    monkeypatch.setattr(email.parser, "Parser", None)  # calling it would fail

    headers = read_headers(io.BytesIO(HEADS[0]), http.client.HTTPMessage)

    assert headers["Content-Length"] == "157" and len(headers) == 7


@pytest.mark.parametrize(
    "request_line",
    [
        b"POST / HTTP/1.1",
        b"GET /a//b?x=1 HTTP/1.0",
        b"GET //evil.example/x HTTP/1.1",
        b"GET /path",
        b"POST /path",
        b"GET / HTTP/2.0",
        b"GET / HTTP/1.1.1",
        b"GET / HTTPS/1.1",
        b"GET / HTTP/01.x",
        b"GET / HTTP/1.12345678901",
        b"GET a b HTTP/1.1",
        b"   ",
    ],
)
@pytest.mark.parametrize(
    "head",
    [b"Host: x\r\n\r\n", b"Connection: close\r\n\r\n", b"Connection: Keep-Alive\r\n\r\n", *HEADS[5:9]],
)
def test_requests_parsed_as_http_server_parses_them(request_line: bytes, head: bytes) -> None:
    from http.server import BaseHTTPRequestHandler

    from deploy.emulator.server import QuietRequestHandler

    def handler() -> Any:
        made = object.__new__(QuietRequestHandler)
        made.raw_requestline = request_line + b"\r\n"
        made.rfile, made.wfile = io.BytesIO(head + b"body"), io.BytesIO()
        made.client_address = ("127.0.0.1", 1)
        return made

    ours, theirs = handler(), handler()
    parsed = [QuietRequestHandler.parse_request(ours), BaseHTTPRequestHandler.parse_request(theirs)]

    assert parsed[0] == parsed[1]
    for name in ("command", "path", "request_version", "requestline", "close_connection"):
        assert getattr(ours, name, None) == getattr(theirs, name, None), name
    if hasattr(theirs, "headers"):
        assert fields_of(ours.headers) == fields_of(theirs.headers)
    assert ours.rfile.read() == theirs.rfile.read()
    answered = [re.sub(rb"Date: [^\r]*", b"", made.wfile.getvalue()) for made in (ours, theirs)]
    assert answered[0] == answered[1]


def test_a_queue_may_have_messages_only_when_moto_would_give_one(aws: None) -> None:
    from deploy.emulator.longpoll import may_have_messages

    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="iotile-worker-local")["QueueUrl"]
    boto3.client("sqs", region_name="eu-west-1").create_queue(QueueName="iotile-worker-local")

    assert may_have_messages("http://localhost/123456789012/no-such-queue"), "moto answers that one"
    assert not may_have_messages(url)
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    assert not may_have_messages(url), "a delayed message is not given yet"
    sqs.send_message(QueueUrl=url, MessageBody="now")
    assert may_have_messages(url)
    assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "now"
    assert not may_have_messages(url), "a message in flight is not given again yet"


def test_an_idle_long_poll_asks_moto_twice(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first poll (for an error, or a message already there) and the last (the empty answer):
    in between, moto has nothing to give."""
    from deploy.emulator import longpoll

    url = boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="idle")["QueueUrl"]
    monkeypatch.setattr(longpoll, "IDLE_POLL_SECONDS", 0.05)
    polls: list[bytes] = []

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        polls.append(environ["wsgi.input"].read())
        start_response("200 OK", [])
        return [b"<ReceiveMessageResponse><ReceiveMessageResult/></ReceiveMessageResponse>"]

    body = f"Action=ReceiveMessage&QueueUrl={url}&WaitTimeSeconds=1".encode()
    began = time.monotonic()
    longpoll.serve_long_poll(
        {"CONTENT_TYPE": "application/x-www-form-urlencoded"}, body, lambda *_: None, serve
    )

    assert time.monotonic() - began >= 1.0
    assert len(polls) == 2 and all(b"WaitTimeSeconds=0" in poll for poll in polls)


def put_json(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(url, json.dumps(body).encode(), method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_latency_delays_each_request_and_concurrent_ones_overlap(
    fresh: EmulatorServer, client: ClientFactory
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    sqs = client("sqs")
    url = fresh.endpoint_url + "/_emulator/latency"
    assert put_json(url, {"ms": -1})[0] == 400
    assert put_json(url, {"seconds": 1})[0] == 400
    control.set_latency(fresh.endpoint_url, 300)  # what `inv local.start --latency-ms 300` does
    assert fresh.app.latency_seconds == 0.3
    try:
        started = time.perf_counter()
        sqs.list_queues()
        alone = time.perf_counter() - started
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: sqs.list_queues(), range(4)))
        together = time.perf_counter() - started
    finally:
        put_json(url, {"ms": 0})
    assert alone >= 0.3
    assert together < 4 * 0.3, "the latency is outside the lock: four requests wait side by side"


def test_latency_option_of_the_emulator_command() -> None:
    from deploy.emulator.__main__ import parse_args

    assert parse_args([]).latency_ms == 0
    assert parse_args(["--latency-ms", "50"]).latency_ms == 50


def test_delays_of_every_slow_store_over_http(fresh: EmulatorServer) -> None:
    from deploy.emulator import strict

    url = fresh.endpoint_url + "/_emulator/delays"
    assert put_json(url, {"redshift_seconds": "soon"})[0] == 400
    assert put_json(url, {"dynamodb_seconds": 5})[0] == 400, "no delay for a store that has none"
    status, answer = put_json(url, {"redshift_seconds": 30, "redis_seconds": 25, "search_seconds": 15})
    assert status == 200
    assert answer == {"rds_seconds": 0, "redshift_seconds": 30, "redis_seconds": 25, "search_seconds": 15}
    fresh.reset()
    assert set(strict.CREATION_SECONDS.values()) == {0.0}, "a reset sets every delay back to 0"


def test_reset_wipes_state_and_is_not_recorded(fresh: EmulatorServer, client: ClientFactory) -> None:
    sqs = client("sqs")
    sqs.create_queue(QueueName="iotile-report-local")
    fresh.clear_requests()

    fresh.reset()

    assert fresh.requests() == []
    assert sqs.list_queues().get("QueueUrls", []) == []


# fill-ins


class DnsBackend:
    """A toy fill-in state: CNAME prefixes already asked about, per account and region."""

    def __init__(self, account_id: str, region: str) -> None:
        self.account_id, self.region = account_id, region
        self.checked: list[str] = []


def test_fillin_serves_an_operation_moto_lacks(fresh: EmulatorServer, client: ClientFactory) -> None:
    backends = FillinBackends(DnsBackend)

    def check_dns_availability(environ: dict[str, Any], body: bytes) -> Any:
        backend = backends.for_request(environ)
        prefix = query_params(environ, body)["CNAMEPrefix"]
        backend.checked.append(prefix)
        result = (
            "<Available>true</Available>"
            f"<FullyQualifiedCNAME>{prefix}.{backend.region}.elasticbeanstalk.com</FullyQualifiedCNAME>"
        )
        return query_response("CheckDNSAvailability", result)

    register_fillin("elasticbeanstalk", "CheckDNSAvailability", check_dns_availability)
    try:
        answer = client("elasticbeanstalk").check_dns_availability(CNAMEPrefix="iotile-local")

        assert answer["Available"] is True
        assert answer["FullyQualifiedCNAME"] == "iotile-local.us-east-1.elasticbeanstalk.com"
        assert backends.get("123456789012", "us-east-1").checked == ["iotile-local"]
        assert fresh.requests()[-1]["operation"] == "CheckDNSAvailability"

        fresh.reset()

        assert backends.get("123456789012", "us-east-1").checked == [], "reset empties fill-ins"
    finally:
        unregister_fillin("elasticbeanstalk", "CheckDNSAvailability")
    assert find_fillin("elasticbeanstalk", "CheckDNSAvailability") is None


def test_two_fillins_for_one_operation_are_refused() -> None:
    def first(environ: dict[str, Any], body: bytes) -> Any:
        return query_response("CheckDNSAvailability")

    def second(environ: dict[str, Any], body: bytes) -> Any:
        return query_response("CheckDNSAvailability")

    register_fillin("elasticbeanstalk", "CheckDNSAvailability", first)
    try:
        register_fillin("elasticbeanstalk", "CheckDNSAvailability", first)  # same one: fine
        with pytest.raises(ValueError, match="already registered"):
            register_fillin("elasticbeanstalk", "CheckDNSAvailability", second)
    finally:
        unregister_fillin("elasticbeanstalk", "CheckDNSAvailability")


# built-in fill-ins: Redshift S3 event integrations and the Data API


def _cluster(redshift: Any, identifier: str = "dw", roles: tuple[str, ...] = ()) -> str:
    """A cluster; returns its namespace ARN as DescribeClusters answers it."""
    redshift.create_cluster(
        ClusterIdentifier=identifier,
        NodeType="ra3.xlplus",
        ClusterType="single-node",
        DBName="iotile",
        MasterUsername="iotile",
        MasterUserPassword="Passw0rdPassw0rd",
        IamRoles=list(roles),
    )
    return redshift.describe_clusters(ClusterIdentifier=identifier)["Clusters"][0]["ClusterNamespaceArn"]


def _bucket_grant(bucket: str) -> str:
    statement = {
        "Sid": "redshift-autocopy",
        "Effect": "Allow",
        "Principal": {"Service": "redshift.amazonaws.com"},
        "Action": ["s3:GetBucketNotification", "s3:PutBucketNotification", "s3:GetBucketLocation"],
        "Resource": f"arn:aws:s3:::{bucket}",
        "Condition": {
            "StringEquals": {"aws:SourceAccount": "123456789012"},
            "ArnLike": {"aws:SourceArn": "arn:aws:redshift:us-east-1:123456789012:integration:*"},
        },
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def _authorisation(namespace: str, bucket: str) -> str:
    statement = {
        "Effect": "Allow",
        "Principal": {"Service": "redshift.amazonaws.com"},
        "Action": "redshift:AuthorizeInboundIntegration",
        "Resource": namespace,
        "Condition": {"StringEquals": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def test_s3_event_integration_is_active_only_with_both_policies(
    fresh: EmulatorServer, client: ClientFactory
) -> None:
    redshift, s3 = client("redshift"), client("s3")
    namespace = _cluster(redshift)
    assert namespace.startswith("arn:aws:redshift:us-east-1:123456789012:namespace:")
    assert _cluster(redshift, "other") != namespace, "each cluster has its own namespace"
    s3.create_bucket(Bucket="iotile-stream-in")
    source = "arn:aws:s3:::iotile-stream-in"
    with pytest.raises(redshift.exceptions.ClientError, match="IntegrationTargetNotFoundFault"):
        redshift.create_integration(IntegrationName="i", SourceArn=source, TargetArn=namespace + "0")
    with pytest.raises(redshift.exceptions.ClientError, match="IntegrationSourceNotFoundFault"):
        redshift.create_integration(IntegrationName="i", SourceArn=source + "x", TargetArn=namespace)
    with pytest.raises(redshift.exceptions.ClientError, match="ResourceNotFoundFault"):
        redshift.get_resource_policy(ResourceArn=namespace)

    made = redshift.create_integration(
        IntegrationName="iotile-local-stream-data",
        SourceArn=source,
        TargetArn=namespace,
        Description="loads dev/data/",
        TagList=[{"Key": "Stage", "Value": "local"}],
    )

    assert made["Status"] == "needs_attention"
    assert {e["ErrorCode"] for e in made["Errors"]} == {
        "UnauthorizedSource",
        "BucketPolicyMissingPermissions",
    }
    redshift.put_resource_policy(ResourceArn=namespace, Policy=_authorisation(namespace, "iotile-stream-in"))
    s3.put_bucket_policy(Bucket="iotile-stream-in", Policy=_bucket_grant("iotile-stream-in"))
    (found,) = redshift.describe_integrations()["Integrations"]
    assert (found["Status"], found["Errors"], found["Tags"]) == (
        "active",
        [],
        [{"Key": "Stage", "Value": "local"}],
    )
    assert json.loads(redshift.get_resource_policy(ResourceArn=namespace)["ResourcePolicy"]["Policy"])
    redshift.modify_integration(IntegrationArn=made["IntegrationArn"], Description="job recorded")
    assert redshift.describe_integrations()["Integrations"][0]["Description"] == "job recorded"
    with pytest.raises(redshift.exceptions.ClientError, match="IntegrationAlreadyExistsFault"):
        redshift.create_integration(
            IntegrationName="iotile-local-stream-data", SourceArn=source, TargetArn=namespace
        )
    assert fresh.requests()[-1] == {"service": "redshift", "operation": "CreateIntegration", "mutating": True}

    fresh.reset()

    assert redshift.describe_integrations()["Integrations"] == [], "reset empties the fill-in"


def test_data_api_runs_copy_jobs_and_answers_sys_copy_job(
    fresh: EmulatorServer, client: ClientFactory
) -> None:
    role = "arn:aws:iam::123456789012:role/copy"
    _cluster(client("redshift"), roles=(role,))
    data = client("redshift-data")

    def run(sql: str, **extra: Any) -> dict:
        params = {"ClusterIdentifier": "dw", "Database": "iotile", "DbUser": "iotile", "Sql": sql, **extra}
        return data.describe_statement(Id=data.execute_statement(**params)["Id"])

    copy = f"COPY streamdata FROM 's3://iotile-stream-in/local/data/' IAM_ROLE '{role}' json 'auto'"
    made = run(f"{copy} JOB CREATE iotile_local_stream_data AUTO ON", StatementName="make-it")

    assert (made["Status"], made.get("Error")) == ("FINISHED", None)
    rows = data.get_statement_result(Id=run("SELECT * FROM sys_copy_job")["Id"])
    assert [c["name"] for c in rows["ColumnMetadata"]] == [
        "job_id",
        "job_name",
        "iam_role",
        "job_text",
        "is_auto",
    ]
    (record,) = rows["Records"]
    assert [next(iter(field.values())) for field in record[1:]] == ["iotile_local_stream_data", role, copy, 1]
    refused = {
        f"{copy} JOB CREATE iotile_local_stream_data AUTO ON": '"iotile_local_stream_data" already exists',
        f"{copy} JOB CREATE iotile-local AUTO ON": "cannot contain a hyphen",
        f"{copy} MAXERROR 10 JOB CREATE other AUTO ON": "MAXERROR is not supported",
        "COPY t FROM 's3://b/p/' json 'auto' JOB CREATE other": "needs IAM_ROLE",
        "COPY t FROM 's3://b/p/' IAM_ROLE 'arn:aws:iam::123456789012:role/x' JOB CREATE o": "not authorized",
        "COPY JOB DROP nothing_here": 'Copy Job "nothing_here" does not exist',
        "DELETE FROM streamdata": "the emulator runs only",
    }
    for sql, error in refused.items():
        failed = run(sql)
        assert failed["Status"] == "FAILED" and error in failed["Error"], sql
    assert run("COPY JOB DROP iotile_local_stream_data")["Status"] == "FINISHED"
    assert data.get_statement_result(Id=run("SELECT job_name FROM sys_copy_job")["Id"])["Records"] == []
    with pytest.raises(data.exceptions.ValidationException, match="does not have result"):
        data.get_statement_result(Id=made["Id"])
    with pytest.raises(data.exceptions.ValidationException, match="endpoint doesn't exist"):
        data.execute_statement(ClusterIdentifier="nope", Database="iotile", DbUser="iotile", Sql="SELECT 1")
    # Finished statements unless asked for all, newest first; a name is a prefix.
    assert {s["Status"] for s in data.list_statements()["Statements"]} == {"FINISHED"}
    everything = data.list_statements(Status="ALL")["Statements"]
    assert "FAILED" in {s["Status"] for s in everything}
    assert [s["Id"] for s in data.list_statements(StatementName="make", Status="ALL")["Statements"]] == [
        made["Id"]
    ]


def test_fillins_serve_in_process_clients_under_mock_aws_too() -> None:
    from moto import mock_aws
    from moto.core.models import botocore_stubber

    from deploy.emulator.fillins.inprocess import serving_in_process

    with mock_aws(), serving_in_process():
        redshift = boto3.client("redshift", region_name="us-east-1")
        namespace = _cluster(redshift)
        assert redshift.describe_integrations()["Integrations"] == []
        policy = _authorisation(namespace, "b")
        assert (
            redshift.put_resource_policy(ResourceArn=namespace, Policy=policy)["ResourcePolicy"]["Policy"]
            == policy
        )
        assert redshift.describe_clusters()["Clusters"][0]["ClusterIdentifier"] == "dw", (
            "moto answers the rest"
        )
    assert "process_request" not in vars(botocore_stubber), "moto's own answers are back"
