"""The emulator's test-only fault switch: each kind in each protocol as botocore sees it, botocore's
retries getting through, and the one line a stage reports once they give up."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from deploy.config import load_config
from deploy.emulator.server import EmulatorServer
from deploy.errors import from_botocore
from deploy.stage import Stage
from tests.conftest import CONFIG

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        yield server


@pytest.fixture
def fresh(emulator: EmulatorServer) -> EmulatorServer:
    emulator.reset()
    emulator.clear_requests()
    return emulator


def control(emulator: EmulatorServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(emulator.endpoint_url + path, data=data, method=method)
    try:
        with _opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def faults_on(emulator: EmulatorServer, **settings: Any) -> None:
    status, answer = control(emulator, "PUT", "/_emulator/faults", settings)
    assert status == 200, answer


def client(emulator: EmulatorServer, service: str, attempts: int = 1, read_timeout: float = 60) -> Any:
    config = Config(
        retries={"mode": "standard", "max_attempts": attempts},
        read_timeout=read_timeout,
        s3={"addressing_style": "path"},
    )
    return boto3.client(
        service,
        endpoint_url=emulator.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


# One read call per protocol: (service, call, the code AWS sends when it throttles it).
PROTOCOLS = [
    ("sqs", lambda c: c.list_queues(), "ThrottlingException"),  # JSON
    ("iam", lambda c: c.list_roles(), "Throttling"),  # query
    ("ec2", lambda c: c.describe_vpcs(), "RequestLimitExceeded"),  # EC2
    ("s3", lambda c: c.list_buckets(), "SlowDown"),  # REST-XML, S3's own
    ("route53", lambda c: c.list_hosted_zones(), "Throttling"),  # REST-XML
    ("lambda", lambda c: c.list_functions(), "TooManyRequestsException"),  # REST-JSON
]


@pytest.mark.parametrize(("service", "call", "code"), PROTOCOLS, ids=[p[0] for p in PROTOCOLS])
def test_throttle_500_and_503_are_each_protocols_own_errors(fresh, service, call, code) -> None:
    aws = client(fresh, service)
    for kind, expected in (("throttle", code), ("500", "InternalError"), ("503", "ServiceUnavailable")):
        faults_on(fresh, rate=1, services=[service], kinds=[kind])
        with pytest.raises(ClientError) as raised:
            call(aws)
        assert raised.value.response["Error"]["Code"] == expected


def test_reset_drops_the_connection_and_timeout_holds_past_the_read_timeout(fresh) -> None:
    faults_on(fresh, rate=1, services=["sqs"], kinds=["reset"])
    with pytest.raises(ConnectionClosedError):
        client(fresh, "sqs").list_queues()

    faults_on(fresh, rate=1, services=["sqs"], kinds=["timeout"], hold_seconds=1.5)
    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        client(fresh, "sqs", read_timeout=0.5).list_queues()
    assert 0.4 < time.monotonic() - started < 1.4


def test_only_listed_services_fail_and_control_paths_never_do(fresh) -> None:
    faults_on(fresh, rate=1, services=["sqs"], kinds=["500"])
    client(fresh, "sns").list_topics()  # not listed: served
    with pytest.raises(ClientError):
        client(fresh, "sqs").list_queues()

    faults_on(fresh, rate=1, services=None, kinds=["500", "reset"])
    assert control(fresh, "GET", "/_emulator/requests")[0] == 200
    assert control(fresh, "GET", "/_emulator/faults")[1]["services"] is None
    fresh.reset()  # /moto-api/reset: served, and it turns the faults off
    client(fresh, "sqs").list_queues()
    assert control(fresh, "GET", "/_emulator/faults") == (200, None)


def test_botocore_retries_get_through_a_tenth_failing_and_the_same_seed_fails_the_same_calls(fresh) -> None:
    kinds = ["throttle", "500", "503", "reset"]
    injected = []
    for _ in range(2):
        faults_on(fresh, rate=0.1, services=None, kinds=kinds, seed=7)
        sqs = client(fresh, "sqs", attempts=5)
        for index in range(40):
            sqs.create_queue(QueueName=f"q{index}")
        injected.append(control(fresh, "DELETE", "/_emulator/faults")[1]["stopped"]["injected"])

    assert sum(injected[0].values()) > 0
    assert injected[0] == injected[1]
    assert len(client(fresh, "sqs").list_queues()["QueueUrls"]) == 40


def test_bad_settings_are_refused(fresh) -> None:
    for body in ({"rate": 2}, {"rate": 0.1, "kinds": ["flood"]}, {"rate": 0.1, "colour": 1}, [1]):
        status, answer = control(fresh, "PUT", "/_emulator/faults", body)
        assert status == 400 and answer["error"]


def stage_on(emulator: EmulatorServer) -> Stage:
    config = load_config("local", CONFIG)
    fast = config.model_copy(update={"aws": config.aws.model_copy(update={"max_attempts": 2})})
    return Stage("local", fast, endpoint_url=emulator.endpoint_url)


@pytest.mark.parametrize(
    ("kind", "code"),
    [("throttle", "ThrottlingException"), ("503", "ServiceUnavailable"), ("reset", "ConnectionClosed")],
)
def test_a_stage_reports_the_service_operation_and_code_once_retries_give_up(fresh, kind, code) -> None:
    stage = stage_on(fresh)
    faults_on(fresh, rate=1, services=["sqs"], kinds=[kind])

    with pytest.raises(Exception) as raised:
        stage.client("sqs").list_queues()

    attempts = [r for r in fresh.requests() if r["service"] == "sqs"]
    assert len(attempts) == 2  # botocore's retry, no other
    line = from_botocore(raised.value).one_line()
    assert line.startswith(f"{code} (sqs:ListQueues): ")
    assert "\n" not in line


def test_a_stage_takes_its_timeouts_and_retry_mode_from_config(fresh) -> None:
    config = load_config("local", CONFIG)
    aws = config.aws.model_copy(update={"retry_mode": "adaptive", "read_timeout_seconds": 7.5})
    stage = Stage("local", config.model_copy(update={"aws": aws}), endpoint_url=fresh.endpoint_url)

    settings = stage.client("sqs").meta.config
    assert settings.read_timeout == 7.5
    assert settings.retries == {"mode": "adaptive", "total_max_attempts": 5}


# Codes botocore retries itself: code of the tool that retried them too would multiply the attempts.
BOTOCORE_RETRIES = ("Throttling", "RequestLimitExceeded", "SlowDown", "TooManyRequests", "ServiceUnavailable")


def test_no_code_of_the_tool_retries_what_botocore_retries() -> None:
    deploy = Path(__file__).resolve().parents[1] / "deploy"
    sources = [
        path
        for path in deploy.rglob("*.py")
        if "emulator" not in path.parts and path.name != "errors.py"  # errors.py words the hints
    ]
    assert len(sources) > 30
    for path in sources:
        text = path.read_text(encoding="utf-8")
        assert not [code for code in BOTOCORE_RETRIES if code in text], path


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("aws: {retry_mode: legacy}\n", "aws.retry_mode"),
        ("aws: {max_attempts: 0}\n", "aws.max_attempts"),
        ("aws: {read_timeout_seconds: -1}\n", "aws.read_timeout_seconds"),
        ("aws: {retries: 3}\n", "aws.retries"),
    ],
)
def test_a_bad_aws_section_names_file_and_key(config_copy, text, key) -> None:
    from deploy.errors import ConfigError

    with pytest.raises(ConfigError) as raised:
        load_config("dev", config_copy("dev", text))

    assert raised.value.path.endswith("dev.yaml") and raised.value.key == key
