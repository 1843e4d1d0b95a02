"""The emulator runs ECS services: a service's tasks are real worker processes (environment and
secrets from the task definition) that consume the queue; a new task definition rolls them (new
ones first, old ones SIGTERMed once the new run, the deployment COMPLETED, boto3's services_stable
waiter satisfied); a task that cannot start stops with AWS's reason and event and trips the circuit
breaker; deleting the service, a reset or stopping the emulator leaves no process behind."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from deploy.emulator import workers
from deploy.emulator.fillins.ecs.models import fillin_backends
from deploy.emulator.server import EmulatorServer

REGION, ACCOUNT = "us-east-1", "123456789012"
CLUSTER, SERVICE, FAMILY = (
    "iotile-cloud-cluster-local",
    "iotile-cloud-sqs-worker-service",
    "iotile-cloud-sqs-worker-task",
)
QUEUE, TABLE = "iotile-worker-local", "iotile-worker-logs-local"
SECRET = "/iotile-cloud/local/SECRET_KEY"
WORKER_MESSAGE = json.dumps(
    {"module": "apps.sqsworker.worker", "class": "WorkerHealthCheckAction", "arguments": {}}
)
BREAKER = {
    "deploymentCircuitBreaker": {"enable": True, "rollback": True},
    "minimumHealthyPercent": 50,
    "maximumPercent": 200,
}


def wait_for(condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s")


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer() as running:
        yield running
    assert workers.running_processes() == 0


class Aws:
    def __init__(self, endpoint_url: str) -> None:
        def client(service: str) -> Any:
            return boto3.client(
                service,
                endpoint_url=endpoint_url,
                region_name=REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )

        self.ecs, self.sqs, self.ddb, self.ssm = (
            client("ecs"),
            client("sqs"),
            client("dynamodb"),
            client("ssm"),
        )

    def register(self, version: str, **extra_environment: str) -> str:
        environment = {
            "IOTILE_STAGE": "local",
            "WORKER_QUEUE_NAME": QUEUE,
            "WORKER_LOG_TABLE": TABLE,
            "WORKER_WAIT_SECONDS": "1",
            "IOTILE_VERSION": version,
            **extra_environment,
        }
        secret_arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{SECRET}"
        answer = self.ecs.register_task_definition(
            family=FAMILY,
            requiresCompatibilities=["EC2"],
            networkMode="bridge",
            containerDefinitions=[
                {
                    "name": "worker",
                    "image": f"123456789012.dkr.ecr.us-east-1.amazonaws.com/iotile-cloud-worker:{version}",
                    "memory": 512,
                    "essential": True,
                    "environment": [{"name": k, "value": v} for k, v in environment.items()],
                    "secrets": [{"name": "SECRET_KEY", "valueFrom": secret_arn}],
                }
            ],
        )
        return answer["taskDefinition"]["taskDefinitionArn"]

    def service(self) -> dict[str, Any]:
        (found,) = self.ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"]
        return found

    def tasks(self, status: str = "RUNNING") -> list[dict[str, Any]]:
        arns = self.ecs.list_tasks(cluster=CLUSTER, serviceName=SERVICE, desiredStatus=status)["taskArns"]
        return self.ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"] if arns else []

    def running(self) -> list[dict[str, Any]]:
        return [t for t in self.tasks() if t["lastStatus"] == "RUNNING"]

    def workers_of(self, task_ids: set[str]) -> set[str]:
        items = self.ddb.scan(TableName=TABLE)["Items"]
        return {i["worker"]["S"] for i in items if i["worker"]["S"] in task_ids}


@pytest.fixture
def aws(server: EmulatorServer) -> Iterator[Aws]:
    server.reset()
    made = Aws(server.endpoint_url)
    made.ecs.create_cluster(clusterName=CLUSTER)
    made.sqs.create_queue(QueueName=QUEUE)
    made.ddb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "task_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "task_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    made.ssm.put_parameter(Name=SECRET, Value="s3cr3t-value", Type="SecureString")
    yield made
    server.reset()
    assert workers.running_processes() == 0


def process_environment(task_arn: str) -> dict[str, str]:
    task = fillin_backends.get(ACCOUNT, REGION).tasks[task_arn]
    raw = Path(f"/proc/{task.process.pid}/environ").read_bytes()  # type: ignore[union-attr]
    return dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_service_runs_its_tasks_as_worker_processes_that_consume_the_queue(aws: Aws) -> None:
    definition = aws.register("v1")
    aws.ecs.create_service(
        cluster=CLUSTER,
        serviceName=SERVICE,
        taskDefinition=definition,
        desiredCount=3,
        deploymentConfiguration=BREAKER,
    )

    running = wait_for(lambda: len(aws.running()) == 3 and aws.running())
    aws.ecs.get_waiter("services_stable").wait(
        cluster=CLUSTER, services=[SERVICE], WaiterConfig={"Delay": 1, "MaxAttempts": 20}
    )

    service = aws.service()
    assert (service["runningCount"], service["desiredCount"]) == (3, 3)
    (cluster,) = aws.ecs.describe_clusters(clusters=[CLUSTER])["clusters"]
    assert (cluster["activeServicesCount"], cluster["runningTasksCount"]) == (1, 3)
    (deployment,) = service["deployments"]
    assert (deployment["status"], deployment["rolloutState"]) == ("PRIMARY", "COMPLETED")
    assert service["deploymentConfiguration"] == BREAKER
    messages = [e["message"] for e in service["events"]]
    assert any("has started 3 tasks" in m for m in messages)
    assert messages[0] == f"(service {SERVICE}) has reached a steady state."
    for task in running:
        assert task["startedBy"] == deployment["id"] and task["group"] == f"service:{SERVICE}"
        assert task["taskDefinitionArn"] == definition
    env = process_environment(running[0]["taskArn"])
    assert env["SECRET_KEY"] == "s3cr3t-value" and env["WORKER_QUEUE_NAME"] == QUEUE
    assert env["IOTILE_WORKER_ID"] == running[0]["taskArn"] and env["AWS_ENDPOINT_URL"].startswith(
        "http://127.0.0.1:"
    )

    url = aws.sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    for _ in range(30):
        aws.sqs.send_message(QueueUrl=url, MessageBody=WORKER_MESSAGE)
    task_arns = {t["taskArn"] for t in running}
    wait_for(lambda: aws.ddb.scan(TableName=TABLE, Select="COUNT")["Count"] == 30)
    assert aws.workers_of(task_arns) <= task_arns and len(aws.workers_of(task_arns)) >= 2


def test_a_new_task_definition_rolls_the_workers_new_first(aws: Aws) -> None:
    aws.ecs.create_service(
        cluster=CLUSTER, serviceName=SERVICE, taskDefinition=aws.register("v1"), desiredCount=3
    )
    old = {t["taskArn"] for t in wait_for(lambda: len(aws.running()) == 3 and aws.running())}
    old_pids = [fillin_backends.get(ACCOUNT, REGION).tasks[arn].process.pid for arn in old]  # type: ignore[union-attr]

    second = aws.register("v2")
    aws.ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=second)
    during = aws.service()
    assert [d["status"] for d in during["deployments"]] == ["PRIMARY", "ACTIVE"]
    assert during["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    aws.ecs.get_waiter("services_stable").wait(
        cluster=CLUSTER, services=[SERVICE], WaiterConfig={"Delay": 1, "MaxAttempts": 20}
    )

    new = aws.running()
    assert len(new) == 3 and not old & {t["taskArn"] for t in new}
    assert {t["taskDefinitionArn"] for t in new} == {second}
    service = aws.service()
    (deployment,) = service["deployments"]
    assert deployment["rolloutState"] == "COMPLETED" and service["taskDefinition"] == second
    stopped = {t["taskArn"]: t for t in aws.tasks("STOPPED")}
    assert set(stopped) == old
    for task in stopped.values():
        assert task["lastStatus"] == "STOPPED" and task["stoppedReason"].startswith("Scaling activity")
        assert task["containers"][0]["exitCode"] == 0  # SIGTERM: the worker exited cleanly
    # One for one: the n-th old task stopped only once n new ones ran.
    stops, starts = sorted(t["stoppedAt"] for t in stopped.values()), sorted(t["startedAt"] for t in new)
    assert all(stop >= start for stop, start in zip(stops, starts, strict=True))
    assert not any(pid_alive(pid) for pid in old_pids)


def test_tasks_that_cannot_start_stop_with_the_reason_and_trip_the_circuit_breaker(aws: Aws) -> None:
    first = aws.register("v1")
    aws.ecs.create_service(
        cluster=CLUSTER,
        serviceName=SERVICE,
        taskDefinition=first,
        desiredCount=3,
        deploymentConfiguration=BREAKER,
    )
    old = {t["taskArn"] for t in wait_for(lambda: len(aws.running()) == 3 and aws.running())}

    aws.ecs.update_service(
        cluster=CLUSTER, service=SERVICE, taskDefinition=aws.register("v2", EMULATOR_FAIL_START="1")
    )
    messages = wait_for(
        lambda: (
            [e["message"] for e in aws.service()["events"] if "deployment failed" in e["message"]]
            and [e["message"] for e in aws.service()["events"]]
        )
    )
    aws.ecs.get_waiter("services_stable").wait(
        cluster=CLUSTER, services=[SERVICE], WaiterConfig={"Delay": 1, "MaxAttempts": 20}
    )

    assert any("Essential container in task exited (exit code 1)" in m for m in messages)
    failed = [t for t in aws.tasks("STOPPED") if t["taskArn"] not in old]
    assert failed and all(t["stopCode"] == "EssentialContainerExited" for t in failed)
    assert all(t["containers"][0]["exitCode"] == 1 for t in failed)
    service = aws.service()
    assert service["taskDefinition"] == first  # rolled back
    assert any("rolling back" in m for m in [e["message"] for e in service["events"]])
    assert len(aws.running()) == 3


def test_a_missing_secret_stops_the_task_as_aws_does(aws: Aws) -> None:
    aws.ssm.delete_parameter(Name=SECRET)
    aws.ecs.create_service(
        cluster=CLUSTER, serviceName=SERVICE, taskDefinition=aws.register("v1"), desiredCount=1
    )

    (task,) = wait_for(lambda: aws.tasks("STOPPED"))

    assert task["stoppedReason"].startswith("ResourceInitializationError") and SECRET in task["stoppedReason"]
    assert aws.service()["deployments"][0]["failedTasks"] >= 1


def test_deleting_the_service_stops_every_process(aws: Aws) -> None:
    aws.ecs.create_service(
        cluster=CLUSTER, serviceName=SERVICE, taskDefinition=aws.register("v1"), desiredCount=2
    )
    wait_for(lambda: len(aws.running()) == 2)
    with pytest.raises(ClientError, match="scaled above 0"):
        aws.ecs.delete_service(cluster=CLUSTER, service=SERVICE)

    aws.ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=0)
    wait_for(lambda: workers.running_processes() == 0)
    aws.ecs.delete_service(cluster=CLUSTER, service=SERVICE)

    assert wait_for(lambda: aws.service()["status"] == "INACTIVE")
    assert aws.ecs.list_services(cluster=CLUSTER)["serviceArns"] == []
    assert aws.tasks() == []


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def test_local_stop_leaves_no_worker_process() -> None:
    from deploy.emulator import control
    from tests.e2e.conftest import free_port

    info = control.start(free_port())
    try:
        made = Aws(info.endpoint_url)
        made.ecs.create_cluster(clusterName=CLUSTER)
        made.ssm.put_parameter(Name=SECRET, Value="x", Type="SecureString")
        definition = made.register("v1")
        made.ecs.create_service(
            cluster=CLUSTER, serviceName=SERVICE, taskDefinition=definition, desiredCount=2
        )
        wait_for(lambda: len(made.running()) == 2)
        pids = children_of(info.pid)
        assert len(pids) == 2
    finally:
        control.stop()

    assert not any(pid_alive(pid) for pid in pids)


def test_a_long_poll_waits_for_a_message_without_holding_up_other_calls(aws: Aws) -> None:
    import threading

    url = aws.sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    received: list[Any] = []
    poll = threading.Thread(
        target=lambda: received.append(aws.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)),
        daemon=True,
    )
    poll.start()
    time.sleep(0.3)

    began = time.monotonic()
    aws.sqs.list_queues()
    aws.ecs.list_clusters()
    assert time.monotonic() - began < 1.0  # served while the poll waits
    aws.sqs.send_message(QueueUrl=url, MessageBody="hello")
    poll.join(timeout=3)

    assert not poll.is_alive() and received[0]["Messages"][0]["Body"] == "hello"
    began = time.monotonic()
    assert "Messages" not in aws.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    assert time.monotonic() - began >= 0.9  # an empty queue: the whole wait, as AWS does


def test_in_process_the_tasks_are_stand_ins_without_processes(aws_in_process: Any) -> None:
    ecs = boto3.client("ecs", region_name=REGION)
    ecs.create_cluster(clusterName=CLUSTER)
    container = {"name": "worker", "image": "worker:1", "memory": 256, "essential": True}
    good = ecs.register_task_definition(family=FAMILY, containerDefinitions=[container])
    ecs.create_service(
        cluster=CLUSTER,
        serviceName=SERVICE,
        taskDefinition=good["taskDefinition"]["taskDefinitionArn"],
        desiredCount=2,
    )

    (service,) = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"]
    assert (service["runningCount"], service["deployments"][0]["rolloutState"]) == (2, "COMPLETED")
    assert not any(hasattr(p, "pid") for p in fillin_backends.get(ACCOUNT, REGION).processes())

    failing = {**container, "environment": [{"name": "EMULATOR_FAIL_START", "value": "1"}]}
    bad = ecs.register_task_definition(family=FAMILY, containerDefinitions=[failing])
    ecs.update_service(
        cluster=CLUSTER, service=SERVICE, taskDefinition=bad["taskDefinition"]["taskDefinitionArn"]
    )
    (service,) = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"]
    assert any("Essential container in task exited (exit code 1)" in e["message"] for e in service["events"])
    assert service["runningCount"] == 2  # the old tasks stay while the new ones fail


@pytest.fixture
def aws_in_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from moto import mock_aws

    from deploy.emulator.fillins.ecs import processes
    from deploy.emulator.fillins.inprocess import serving_in_process

    # This module's emulator server runs in this process too: its processes are not wanted here.
    monkeypatch.setattr(processes.launcher, "endpoint_url", None)
    with mock_aws(), serving_in_process():
        yield


def test_a_second_server_in_the_process_shares_the_workers(aws: Aws, server: EmulatorServer) -> None:
    from deploy.emulator.fillins.ecs import processes

    aws.ecs.create_service(
        cluster=CLUSTER, serviceName=SERVICE, taskDefinition=aws.register("v1"), desiredCount=1
    )
    wait_for(lambda: len(aws.running()) == 1)
    with EmulatorServer() as second:
        assert processes.launcher.endpoint_url == second.endpoint_url
    assert processes.launcher.endpoint_url == server.endpoint_url
    assert workers.running_processes() == 1  # the first server still serves them


def test_a_strategy_needs_providers_of_the_cluster(aws: Aws) -> None:
    strategy = [{"capacityProvider": "iotile-workers-local", "weight": 1}]
    with pytest.raises(ClientError, match="not associated with the cluster"):
        aws.ecs.create_service(
            cluster=CLUSTER,
            serviceName=SERVICE,
            taskDefinition=aws.register("v1"),
            desiredCount=1,
            capacityProviderStrategy=strategy,
        )
    assert aws.ecs.list_services(cluster=CLUSTER)["serviceArns"] == []


def test_a_process_that_cannot_be_started_stops_its_task(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from deploy.emulator.fillins.ecs import processes

    monkeypatch.setattr(processes.launcher, "cwd", tmp_path / "no-such-folder")
    aws.ecs.create_service(
        cluster=CLUSTER, serviceName=SERVICE, taskDefinition=aws.register("v1"), desiredCount=1
    )

    (task,) = wait_for(lambda: aws.tasks("STOPPED"))
    assert task["stoppedReason"].startswith("CannotStartContainerError")
