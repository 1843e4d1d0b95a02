"""Shipping the workers, in-process against moto: shutdown-ecs-workers with real reference workers
(server/apps/sqsworker, one thread per task) acknowledging through the worker log table, its
timeout naming the silent task, deploy-worker / update-ecs registering only what changed and
rolling back a deploy that does not become stable, terminate-ecs, and build and push up to the
Docker Engine API (a local HTTP server speaking its endpoints), plus the no-engine error."""

from __future__ import annotations

import base64
import io
import json
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from invoke import Context, Exit

from deploy.areas import ecs
from deploy.errors import AwsError, WaitTimeout
from deploy.report import Reporter
from deploy.ship import docker_image, workers
from deploy.ship import worker_tasks as tasks
from deploy.stage import Stage
from tests.conftest import ROOT, CallLog
from tests.helpers import converge
from tests.test_ecs import existing_network

SERVER = ROOT / "server"
sys.path.insert(0, str(SERVER))

from apps.sqsworker.worker import Worker, WorkerConfig, WorkerContext  # noqa: E402

SERVICE_GROUP = "service:iotile-cloud-sqs-worker-service"


@pytest.fixture
def tasks_stay_running() -> Iterator[None]:
    """moto moves a task one state on at every DescribeTasks; ECS keeps a service's task RUNNING."""
    from moto.moto_api import state_manager

    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    yield
    state_manager.unset_transition(model_name="ecs::task")


@pytest.fixture
def network_config(aws: None, config_copy) -> Path:
    return existing_network(config_copy)


@pytest.fixture
def stage(make_stage, network_config: Path, tasks_stay_running) -> Stage:
    stage = make_stage("dev", config_dir=network_config)
    converge(stage, "kms")
    converge(stage, "sqs", "dynamodb", "sns")
    converge(stage, "ecr", "ecs")
    return stage


def start_tasks(stage: Stage, count: int) -> list[str]:
    """Tasks of the worker service as ECS starts them (started by the service, in its group)."""
    config = stage.config.ecs
    (primary,) = ecs.read_service(stage)["deployments"]
    found = stage.client("ecs").run_task(
        cluster=config.cluster,
        taskDefinition=config.task_definition,
        count=count,
        startedBy=primary["id"],
        group=SERVICE_GROUP,
        launchType="FARGATE",
    )
    return [task["taskArn"] for task in found["tasks"]]


@pytest.fixture
def run_workers(stage: Stage) -> Iterator[Callable[[list[str]], list[Worker]]]:
    """The reference worker, one thread per task, with the environment the task definition gives it
    (short polls: in-process moto serves one request at a time) and the task ARN as its identity."""
    started: list[tuple[Worker, threading.Thread]] = []

    def run(arns: list[str]) -> list[Worker]:
        environ = {**ecs.worker_environment(stage), "WORKER_WAIT_SECONDS": "0"}
        for arn in arns:
            worker = Worker(WorkerContext(WorkerConfig.from_environ(environ), arn, time.time() - 1))
            thread = threading.Thread(target=worker.run, daemon=True)
            thread.start()
            started.append((worker, thread))
        return [worker for worker, _ in started]

    yield run
    for worker, thread in started:
        worker.request_stop()
        thread.join(timeout=10)


def queue_depth(stage: Stage) -> int:
    sqs = stage.client("sqs")
    url = sqs.get_queue_url(QueueName=stage.config.sqs.queues.worker)["QueueUrl"]
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


# -- shutdown-ecs-workers -------------------------------------------------------------------------


def drained(stage: Stage, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while queue_depth(stage) and time.monotonic() < deadline:
        time.sleep(0.05)
    return queue_depth(stage) == 0


def test_shutdown_returns_once_every_running_worker_of_the_service_acknowledged(
    stage: Stage, run_workers, capsys
) -> None:
    arns = start_tasks(stage, 3)
    config = stage.config.ecs
    # A task of the family run by hand is no worker of the service: it gets no shutdown.
    stage.client("ecs").run_task(
        cluster=config.cluster, taskDefinition=config.task_definition, count=1, launchType="FARGATE"
    )
    run_workers(arns)

    shutdown = workers.shutdown_workers(stage, Reporter(), wait=True, timeout=20)

    assert sorted(shutdown.workers) == sorted(arns)
    assert sorted(shutdown.acknowledged) == sorted(arns)
    assert shutdown.missing == []
    lines = [line for line in capsys.readouterr().err.splitlines() if "acknowledged at" in line]
    assert len(lines) == 3 and lines[-1].endswith("(3/3)")
    assert drained(stage), "each worker took exactly one shutdown message, and there were three"


def test_shutdown_times_out_naming_the_task_that_did_not_acknowledge(stage: Stage, run_workers) -> None:
    arns = start_tasks(stage, 3)
    run_workers(arns[:2])

    with pytest.raises(WaitTimeout) as failure:
        workers.shutdown_workers(stage, Reporter(as_json=True), wait=True, timeout=3)

    silent = arns[2].rsplit("/", 1)[-1]
    assert silent in str(failure.value) and "2/3 acknowledged" in str(failure.value)
    assert all(arn.rsplit("/", 1)[-1] not in str(failure.value) for arn in arns[:2])
    # The message meant for the silent worker waits in the queue for it, as sent.
    sqs = stage.client("sqs")
    url = sqs.get_queue_url(QueueName=stage.config.sqs.queues.worker)["QueueUrl"]
    body = json.loads(sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"][0]["Body"])
    assert body["module"] == "apps.sqsworker.worker" and body["class"] == "WorkerShutDownAction"
    assert body["arguments"]["timestamp"].endswith("Z") and body["arguments"]["deploy_id"]


def test_after_a_shutdown_deploy_replaces_the_idle_workers_without_a_second_shutdown(
    stage: Stage, run_workers, call_log: CallLog
) -> None:
    arns = start_tasks(stage, 3)
    run_workers(arns)
    workers.shutdown_workers(stage, Reporter(as_json=True), wait=True, timeout=20)
    stage.on_call(call_log)

    rollout = workers.plan_rollout(stage, None, None)
    assert sorted(rollout.idle) == sorted(arns) and not rollout.register and rollout.new_tasks
    # moto's services never start tasks, so the forced deployment does not become stable here
    # (tests/e2e/test_workers.py follows it on the emulator).
    with pytest.raises(WaitTimeout):
        workers.deploy_worker(stage, Reporter(as_json=True), image=None, build=None, timeout=1)

    made = [operation for _, operation in call_log.mutating]
    assert made == ["UpdateService"], "no second shutdown, no new revision: new tasks of the same one"


def test_previews_make_no_mutating_call(
    make_stage, stage: Stage, network_config: Path, call_log: CallLog
) -> None:
    start_tasks(stage, 3)
    preview = make_stage("dev", read_only=True, log=call_log, config_dir=network_config)
    image = ecs.current_image(stage, ecs.latest_task_definition(stage)).rsplit(":", 1)[0] + ":next"

    shutdown = workers.shutdown_workers(preview, Reporter(as_json=True), wait=True)
    result = workers.deploy_worker(
        preview, Reporter(as_json=True), image=image, build=lambda: (image, True), count=5
    )

    assert len(shutdown.workers) == 3 and result.changed
    assert call_log.mutating == []
    assert queue_depth(stage) == 0
    assert len(revisions(stage)) == 1


# -- update-ecs and deploy-worker ---------------------------------------------------------------------


def revisions(stage: Stage) -> list[str]:
    family = stage.config.ecs.task_definition
    return stage.client("ecs").list_task_definitions(familyPrefix=family)["taskDefinitionArns"]


def test_deploy_with_nothing_changed_registers_nothing_and_makes_no_mutating_call(
    stage: Stage, call_log: CallLog
) -> None:
    stage.on_call(call_log)
    before = revisions(stage)

    image = ecs.current_image(stage, ecs.latest_task_definition(stage))
    # The image is in the repository already: nothing is built or pushed.
    result = workers.deploy_worker(stage, Reporter(as_json=True), image=image, build=lambda: (image, False))
    again = workers.update_ecs(stage, Reporter(as_json=True), image=None, count=None, timeout=1)

    assert not result.changed and not again.changed
    assert revisions(stage) == before
    assert call_log.mutating == []
    # The count alone is a change; the count the service has is none.
    assert workers.plan_rollout(stage, None, 5).changes
    assert not workers.plan_rollout(stage, None, stage.config.ecs.workers).changes


def test_a_changed_image_registers_one_revision_and_a_failed_rollout_rolls_back(
    stage: Stage, run_workers, call_log: CallLog
) -> None:
    arns = start_tasks(stage, 3)
    run_workers(arns)
    image = ecs.current_image(stage, ecs.latest_task_definition(stage)).rsplit(":", 1)[0] + ":next"
    stage.on_call(call_log)

    # moto's services never start tasks: the new revision never becomes stable, as a deploy whose
    # tasks do not start on AWS.
    with pytest.raises(AwsError, match="rolled back to iotile-cloud-sqs-worker-task-dev:1"):
        workers.deploy_worker(stage, Reporter(as_json=True), image=image, build=None, timeout=1)

    made = [operation for _, operation in call_log.mutating]
    assert made.count("SendMessageBatch") == 1, "the workers were shut down first"
    assert made.count("RegisterTaskDefinition") == 1
    assert made.count("UpdateService") == 2, "the update, then the rollback"
    assert made.index("SendMessageBatch") < made.index("RegisterTaskDefinition")
    service = ecs.read_service(stage)
    assert service["taskDefinition"].endswith(":1")
    latest = ecs.latest_task_definition(stage)
    assert latest["revision"] == 2 and latest["containerDefinitions"][0]["image"] == image
    call_log.clear()
    # The revision exists now: a rerun registers none.
    with pytest.raises(AwsError):
        workers.deploy_worker(
            stage, Reporter(as_json=True), image=image, build=None, skip_shutdown=True, timeout=1
        )
    assert "RegisterTaskDefinition" not in [operation for _, operation in call_log.mutating]


# -- the task arguments, terminate-ecs, create-ec2-instances --------------------------------------


@pytest.mark.parametrize(
    ("argument", "value"),
    [("count", "many"), ("count", "-1"), ("timeout", "soon"), ("image", "not an image")],
)
def test_bad_arguments_exit_2_before_any_call(
    make_stage, call_log: CallLog, argument: str, value: str, capsys
) -> None:
    with pytest.raises(Exit) as failure:
        tasks.deploy_worker(Context(), stage="dev", **{argument: value})
    assert failure.value.code == 2
    assert f"--{argument}" in capsys.readouterr().err


def test_describe_capacity_and_terminate(stage: Stage) -> None:
    report = workers.describe_workers(stage)
    assert report["cluster_status"] == "ACTIVE"
    assert report["service"]["desired"] == 3
    assert report["service"]["revision"] == "iotile-cloud-sqs-worker-task-dev:1"
    assert report["service"]["image"].startswith(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/iotile-cloud-worker:"
    )

    # create-ec2-instances sets the capacity: a rerun adds nothing.
    assert workers.set_capacity(stage, Reporter(as_json=True), 2) is True
    assert workers.set_capacity(stage, Reporter(as_json=True), 2) is False
    assert ecs.read_group(stage)["DesiredCapacity"] == 2

    # Production's family in the same account and region (its name is a prefix of dev's).
    prod_family = stage.client("ecs").register_task_definition(
        family="iotile-cloud-sqs-worker-task",
        containerDefinitions=[{"name": "w", "image": "x", "memory": 128}],
    )["taskDefinition"]["taskDefinitionArn"]

    done = workers.terminate_workers(stage, Reporter(as_json=True))
    assert any("deleted service" in line for line in done)
    described = stage.client("ecs").describe_task_definition(taskDefinition=prod_family)["taskDefinition"]
    assert described["status"] == "ACTIVE", "another stage's revisions stay"
    assert ecs.read_service(stage) is None
    assert revisions(stage) == []
    group = ecs.read_group(stage)
    assert (group["MinSize"], group["DesiredCapacity"]) == (0, 0)
    assert ecs.read_cluster(stage) is not None, "the cluster stays"
    assert stage.client("ecr").describe_repositories()["repositories"], "the repository stays"
    assert workers.terminate_workers(stage, Reporter(as_json=True)) == []


# -- build and push, up to the Docker Engine API ------------------------------------------------------


class DockerEngine(BaseHTTPRequestHandler):
    """The few endpoints of the Docker Engine API that build-docker uses, recording each request."""

    protocol_version = "HTTP/1.1"
    requests: list[dict[str, Any]] = []
    fail_build = False

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, chunks: list[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in chunks:
            data = (json.dumps(chunk) + "\r\n").encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path.endswith("/_ping"):
            self._reply(b"OK", "text/plain")
        elif path.endswith("/version"):
            self._reply(
                json.dumps({"ApiVersion": "1.43", "Version": "24.0.0", "MinAPIVersion": "1.12"}).encode()
            )
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else self._read_chunked()
        record = {
            "path": unquote(parts.path),
            "query": parse_qs(parts.query),
            "headers": dict(self.headers),
            "body": body,
        }
        self.requests.append(record)
        if parts.path.endswith("/build"):
            if self.fail_build:
                self._stream(
                    [{"stream": "Step 1/8 : FROM python:3.12-slim\n"}, {"error": "pull access denied"}]
                )
                return
            self._stream(
                [
                    {"stream": "Step 1/8 : FROM python:3.12-slim\n"},
                    {"stream": "Successfully built 0123456789ab\n"},
                    {"aux": {"ID": "sha256:0123456789ab"}},
                ]
            )
        elif parts.path.endswith("/push"):
            self._stream(
                [
                    {"status": "The push refers to repository [registry]"},
                    {"status": "Pushing", "id": "layer1", "progressDetail": {"current": 1, "total": 2}},
                    {"status": "Pushed", "id": "layer1"},
                    {"status": "tag: digest: sha256:abc size: 1234"},
                ]
            )
        else:
            self.send_error(404)

    def _read_chunked(self) -> bytes:
        data = b""
        if self.headers.get("Transfer-Encoding") != "chunked":
            return data
        while True:
            size = int(self.rfile.readline().strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return data
            data += self.rfile.read(size)
            self.rfile.readline()


@pytest.fixture
def docker_engine(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[type[DockerEngine]]:
    from moto.core import config as moto_config

    # The push URL holds the registry's amazonaws.com name: moto would answer it in the engine's place.
    passthrough = moto_config.default_user_config["core"]["passthrough"]
    monkeypatch.setitem(passthrough, "urls", [*passthrough.get("urls", []), r"http://127\.0\.0\.1:\d+/"])
    DockerEngine.requests = []
    DockerEngine.fail_build = False
    server = ThreadingHTTPServer(("127.0.0.1", 0), DockerEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{server.server_address[1]}")
    yield DockerEngine
    server.shutdown()
    server.server_close()


@pytest.fixture
def repository(make_stage) -> Stage:
    stage = make_stage("dev")
    converge(stage, "ecr")
    return stage


def test_build_and_push_talks_to_the_engine_and_logs_in_to_ecr(
    repository: Stage, docker_engine, capsys
) -> None:
    image = docker_image.build_and_push(repository, SERVER, Reporter(), tag="abc123def456")

    uri = "123456789012.dkr.ecr.us-east-1.amazonaws.com/iotile-cloud-worker"
    assert image == f"{uri}:abc123def456"
    build, push = docker_engine.requests
    assert build["path"].endswith("/build") and build["query"]["t"] == [image]
    with tarfile.open(fileobj=io.BytesIO(build["body"])) as context:
        names = set(context.getnames())
    assert {"Dockerfile", "apps/sqsworker/worker.py", "apps/sqsworker/__main__.py"} <= names
    assert not {"README.md", ".ebextensions"} & names, ".dockerignore keeps them out"
    assert push["path"].endswith(f"/images/{uri}/push") and push["query"]["tag"] == ["abc123def456"]
    auth = json.loads(base64.urlsafe_b64decode(push["headers"]["X-Registry-Auth"] + "=="))
    assert auth["username"] == "AWS" and auth["password"] == "123456789012-auth-token"
    assert auth["serveraddress"] == "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    err = capsys.readouterr().err
    assert "Step 1/8" in err and "layer1: Pushed" in err


def test_an_image_already_pushed_is_not_built_again(repository: Stage, docker_engine) -> None:
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}
    )
    repository.client("ecr").put_image(
        repositoryName="iotile-cloud-worker", imageManifest=manifest, imageTag="done1"
    )

    docker_image.build_and_push(repository, SERVER, Reporter(as_json=True), tag="done1")

    assert docker_engine.requests == []


def test_a_build_error_from_the_engine_fails_with_its_message(repository: Stage, docker_engine) -> None:
    docker_engine.fail_build = True
    with pytest.raises(docker_image.BuildFailed, match="pull access denied"):
        docker_image.build_and_push(repository, SERVER, Reporter(as_json=True), tag="bad1")
    assert len(docker_engine.requests) == 1, "nothing pushed after a failed build"


def test_without_an_engine_build_docker_says_which_socket_and_what_to_do(
    make_stage, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    make_stage("dev")  # moto on
    socket = tmp_path / "docker.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket}")

    with pytest.raises(Exit) as failure:
        tasks.build_docker(Context(), stage="dev", tag="nothing1")

    assert failure.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"unix://{socket}" in err and "--skip-build" in err and "--image URI" in err


def test_terminate_asks_first_and_prod_needs_prod(
    stage: Stage, network_config: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("DEPLOY_CONFIG_DIR", str(network_config))
    monkeypatch.setattr(sys, "stdin", io.StringIO("dev\n"))  # not a terminal: no prompt

    with pytest.raises(Exit) as unconfirmed:
        tasks.terminate_ecs(Context(), stage="dev")
    with pytest.raises(Exit) as on_prod:
        tasks.terminate_ecs(Context(), stage="prod", yes=True)

    assert unconfirmed.value.code == 2 and on_prod.value.code == 2
    err = capsys.readouterr().err
    assert "--yes" in err and "--prod" in err
    assert ecs.read_service(stage) is not None, "nothing was terminated"

    tasks.terminate_ecs(Context(), stage="dev", yes=True)
    assert ecs.read_service(stage) is None


def test_deploy_builds_and_pushes_before_it_registers(stage: Stage, docker_engine, call_log: CallLog) -> None:
    uri = "123456789012.dkr.ecr.us-east-1.amazonaws.com/iotile-cloud-worker"
    reporter = Reporter(as_json=True)
    stage.on_call(call_log)

    def build() -> tuple[str, bool]:
        assert not any(op == "RegisterTaskDefinition" for _, op in call_log.mutating), "built first"
        return docker_image.ensure_image(stage, SERVER, reporter, tag="newtag1")

    # moto's service never becomes stable: the deploy ends in a rollback, after the build and push.
    with pytest.raises(AwsError, match="rolled back"):
        workers.deploy_worker(stage, reporter, image=f"{uri}:newtag1", build=build, timeout=1)

    assert [r["path"].rsplit("/", 1)[-1] for r in docker_engine.requests] == ["build", "push"]
    assert ecs.latest_task_definition(stage)["containerDefinitions"][0]["image"] == f"{uri}:newtag1"


def test_skip_build_needs_the_image_in_the_repository(
    stage: Stage, network_config: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("DEPLOY_CONFIG_DIR", str(network_config))

    with pytest.raises(Exit) as failure:
        tasks.deploy_worker(Context(), stage="dev", skip_build=True)

    assert failure.value.code == 1
    err = capsys.readouterr().err
    assert "ImageNotFoundException" in err and "--image URI" in err
    assert len(revisions(stage)) == 1


def test_an_image_pushed_just_now_gets_new_tasks_on_the_same_revision(
    stage: Stage, call_log: CallLog
) -> None:
    """`up` registers the first revision before any image exists (its tasks cannot pull it): the
    deploy that pushes that image moves the service to new tasks, with no new revision."""
    image = ecs.current_image(stage, ecs.latest_task_definition(stage))
    stage.on_call(call_log)

    with pytest.raises(WaitTimeout):  # moto's services never start tasks
        workers.deploy_worker(
            stage, Reporter(as_json=True), image=image, build=lambda: (image, True), timeout=1
        )

    assert [operation for _, operation in call_log.mutating] == ["UpdateService"]
    assert len(revisions(stage)) == 1
