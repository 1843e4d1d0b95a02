"""Behaviour of the ECS services fill-in: services whose tasks really run, per account and region.

moto keeps a service as a record and never starts its tasks. Here a service has deployments and
tasks, and a scheduler (`reconcile`, run on every ECS request and by a background thread) does
what ECS does: it places the primary deployment's tasks (PROVISIONING), gives each its process
(PENDING; see processes.py, a few booting at a time), marks them RUNNING once the process calls
the emulator, stops the tasks of older deployments one
for one as new ones run (so a rolling update never drops below the desired count), marks the
primary COMPLETED and drops the others once only its tasks run, and records AWS's service events
("has started 3 tasks", "has reached a steady state", "deployment completed"). A task whose
process exits while it should run is STOPPED with "Essential container in task exited" and the
exit code, counted as a failed task of its deployment and replaced; with the deployment circuit
breaker on, a deployment whose failures reach the threshold is FAILED and, with rollback, the
service returns to the task definition of the last completed deployment.

Clusters and task definitions stay moto's (read from its backend); secrets in a task definition
are resolved against moto's SSM and Secrets Manager when a task starts, and a missing one stops
the task as AWS does (ResourceInitializationError). Tasks started by RunTask stay moto's and are
not listed here: the project never runs one.
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from deploy.emulator.fillins.core import FillinBackends
from deploy.emulator.fillins.ecs import processes

RESTART_BACKOFF_SECONDS = 1.0
MAX_EVENTS = 100
STOP_TIMEOUT_SECONDS = 30.0
STOPPED_TASK_SECONDS = 3600.0
ESSENTIAL_EXIT = "Essential container in task exited"
DEFAULT_DEPLOYMENT = {"minimumHealthyPercent": 100, "maximumPercent": 200}


class EcsError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _clock() -> float:
    return time.time()


def _deployment_id() -> str:
    return f"ecs-svc/{random.randrange(10**18, 10**19)}"


@dataclass
class Task:
    arn: str
    id: str
    cluster_arn: str
    service: str
    deployment_id: str
    task_definition_arn: str
    container_name: str
    image: str
    group: str
    launch_type: str
    capacity_provider: str | None
    created: float = field(default_factory=_clock)
    last_status: str = "PROVISIONING"
    desired_status: str = "RUNNING"
    started: float | None = None
    stopping: float | None = None
    stopped: float | None = None
    stopped_reason: str = ""
    stop_code: str = ""
    exit_code: int | None = None
    process: processes.TaskProcess | None = None
    stop_timeout: float = STOP_TIMEOUT_SECONDS

    @property
    def live(self) -> bool:
        return self.desired_status == "RUNNING"


@dataclass
class Deployment:
    id: str
    task_definition_arn: str
    desired_count: int
    status: str = "PRIMARY"
    rollout_state: str = "IN_PROGRESS"
    rollout_reason: str = ""
    failed_tasks: int = 0
    created: float = field(default_factory=_clock)
    updated: float = field(default_factory=_clock)
    last_failure: float = 0.0


@dataclass
class Service:
    name: str
    arn: str
    cluster_name: str
    cluster_arn: str
    settings: dict[str, Any]
    desired_count: int
    task_definition_arn: str
    tags: list[dict[str, str]]
    created: float = field(default_factory=_clock)
    status: str = "ACTIVE"
    deployments: list[Deployment] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    steady: bool = False

    @property
    def primary(self) -> Deployment:
        return self.deployments[0]

    def event(self, message: str) -> None:
        self.events.insert(0, {"id": str(uuid.uuid4()), "createdAt": _clock(), "message": message})
        del self.events[MAX_EVENTS:]

    @property
    def deployment_configuration(self) -> dict[str, Any]:
        return {**DEFAULT_DEPLOYMENT, **(self.settings.get("deploymentConfiguration") or {})}


def check_strategy(cluster: Any, strategy: list[dict[str, Any]] | None) -> None:
    """AWS refuses a capacity provider strategy naming a provider the cluster is not associated
    with (the strict rule moto's own CreateService gets, in strict.py, kept here)."""
    associated = set(getattr(cluster, "capacity_providers", None) or [])
    if any(item.get("capacityProvider") not in associated for item in strategy or []):
        raise EcsError(
            "InvalidParameterException",
            "The specified capacity provider strategy cannot contain a capacity provider that is not "
            "associated with the cluster. Associate the capacity provider with the cluster or specify "
            "a valid capacity provider and try again.",
        )


class EcsServicesFillin:
    """The services and their tasks of one account and region."""

    def __init__(self, account_id: str, region: str) -> None:
        self.account_id, self.region = account_id, region
        self.services: dict[tuple[str, str], Service] = {}
        self.tasks: dict[str, Task] = {}
        self.lock = threading.RLock()
        # Set by a reset: the scheduler may still hold this backend, and must start nothing more.
        self.closed = False

    def close(self) -> None:
        with self.lock:
            self.closed = True

    # -- moto's side: clusters, task definitions, secrets ------------------------------------------

    def _moto(self) -> Any:
        from moto.ecs.models import ecs_backends

        return ecs_backends[self.account_id][self.region]

    def cluster(self, name_or_arn: str | None) -> Any:
        name = (name_or_arn or "default").split("/")[-1]
        found = self._moto().clusters.get(name)
        if found is None or getattr(found, "status", "ACTIVE") != "ACTIVE":
            raise EcsError("ClusterNotFoundException", "Cluster not found.")
        return found

    def task_definition(self, name_or_arn: str, *, inactive: bool = False) -> Any:
        """A task definition by family, family:revision or ARN; an INACTIVE (deregistered) one only
        when asked: a service keeps running the revision it has, but a new one must be ACTIVE."""
        from moto.ecs.exceptions import TaskDefinitionNotFoundException

        try:
            found = self._moto().describe_task_definition(name_or_arn)
        except TaskDefinitionNotFoundException:
            found = None
        if found is None or (found.status != "ACTIVE" and not inactive):
            raise EcsError(
                "InvalidParameterException", f"TaskDefinition not found or not ACTIVE: {name_or_arn}"
            )
        return found

    def resolve_secret(self, value_from: str) -> str | None:
        """The value of a task definition secret: an SSM parameter (name or ARN) or a Secrets
        Manager secret ARN; None when it does not exist."""
        if ":secretsmanager:" in value_from:
            from moto.secretsmanager.models import secretsmanager_backends

            try:
                answer = secretsmanager_backends[self.account_id][self.region].get_secret_value(
                    value_from, "", ""
                )
            except Exception:
                return None
            return answer.get("SecretString")
        from moto.ssm.models import ssm_backends

        parameter = ssm_backends[self.account_id][self.region].get_parameter(value_from)
        if parameter is None:
            return None
        return parameter.decrypt(parameter.value)

    # -- services ----------------------------------------------------------------------------------

    def service_arn(self, cluster_name: str, name: str) -> str:
        from deploy.aws import partition

        return (
            f"arn:{partition(self.region)}:ecs:{self.region}:{self.account_id}:service/{cluster_name}/{name}"
        )

    def create_service(self, params: dict[str, Any]) -> Service:
        cluster = self.cluster(params.get("cluster"))
        name = params.get("serviceName") or ""
        if not name:
            raise EcsError("InvalidParameterException", "serviceName is required.")
        existing = self.services.get((cluster.name, name))
        if existing is not None and existing.status != "INACTIVE":
            raise EcsError("InvalidParameterException", "Creation of service was not idempotent.")
        definition = self.task_definition(params.get("taskDefinition") or "")
        check_strategy(cluster, params.get("capacityProviderStrategy"))
        desired = int(params.get("desiredCount") or 0)
        service = Service(
            name=name,
            arn=self.service_arn(cluster.name, name),
            cluster_name=cluster.name,
            cluster_arn=cluster.arn,
            settings={k: v for k, v in params.items() if k not in ("cluster", "desiredCount", "tags")},
            desired_count=desired,
            task_definition_arn=definition.arn,
            tags=list(params.get("tags") or []),
        )
        service.deployments.append(Deployment(_deployment_id(), definition.arn, desired))
        self.services[(cluster.name, name)] = service
        self.reconcile_service(service)
        return service

    def service(self, cluster: str | None, name_or_arn: str) -> Service:
        found = self.services.get((self.cluster(cluster).name, name_or_arn.split("/")[-1]))
        if found is None:
            raise EcsError("ServiceNotFoundException", "Service not found.")
        return found

    def describe_services(self, cluster: str | None, names: list[str]) -> tuple[list[Service], list[dict]]:
        cluster_name = self.cluster(cluster).name
        found, failures = [], []
        for name in names:
            service = self.services.get((cluster_name, name.split("/")[-1]))
            if service is None:
                arn = name if name.startswith("arn:") else self.service_arn(cluster_name, name)
                failures.append({"arn": arn, "reason": "MISSING"})
            else:
                self.reconcile_service(service)
                found.append(service)
        return found, failures

    def list_services(self, cluster: str | None) -> list[str]:
        cluster_name = self.cluster(cluster).name
        return sorted(
            s.arn for (c, _), s in self.services.items() if c == cluster_name and s.status != "INACTIVE"
        )

    def update_service(self, params: dict[str, Any]) -> Service:
        service = self.service(params.get("cluster"), params.get("service") or "")
        if service.status != "ACTIVE":
            raise EcsError("ServiceNotActiveException", "Service was not ACTIVE.")
        definition = self.task_definition(params["taskDefinition"]) if params.get("taskDefinition") else None
        check_strategy(self.cluster(service.cluster_name), params.get("capacityProviderStrategy"))
        for key, value in params.items():
            if key not in ("cluster", "service", "desiredCount", "taskDefinition", "forceNewDeployment"):
                service.settings[key] = value
        if params.get("desiredCount") is not None:
            service.desired_count = int(params["desiredCount"])
        new_definition = definition is not None and definition.arn != service.task_definition_arn
        if new_definition or params.get("forceNewDeployment"):
            arn = definition.arn if definition is not None else service.task_definition_arn
            self._new_deployment(service, arn)
        else:
            service.primary.desired_count = service.desired_count
            service.primary.updated = _clock()
            if service.steady and self._count(service, service.primary, "RUNNING") != service.desired_count:
                service.steady = False
        self.reconcile_service(service)
        return service

    def _new_deployment(self, service: Service, task_definition_arn: str) -> None:
        for old in service.deployments:
            old.status = "ACTIVE"
        service.task_definition_arn = task_definition_arn
        service.deployments.insert(
            0, Deployment(_deployment_id(), task_definition_arn, service.desired_count)
        )
        service.steady = False

    def delete_service(self, cluster: str | None, name: str, force: bool) -> Service:
        service = self.service(cluster, name)
        if service.status != "ACTIVE":
            raise EcsError("ServiceNotActiveException", "Service was not ACTIVE.")
        if service.desired_count > 0 and not force:
            raise EcsError(
                "InvalidParameterException", "The service cannot be stopped while it is scaled above 0."
            )
        service.desired_count = 0
        service.status = "DRAINING"
        for task in self._tasks(service):
            self._stop(task, "Service deleted", "ServiceSchedulerInitiated")
        self.reconcile_service(service)
        return service

    # -- tasks -------------------------------------------------------------------------------------

    def _tasks(self, service: Service, deployment: Deployment | None = None) -> list[Task]:
        return [
            t
            for t in self.tasks.values()
            if t.service == service.name
            and t.cluster_arn == service.cluster_arn
            and t.live
            and (deployment is None or t.deployment_id == deployment.id)
        ]

    def _count(self, service: Service, deployment: Deployment | None, status: str) -> int:
        return sum(1 for t in self._tasks(service, deployment) if t.last_status == status)

    def list_tasks(self, params: dict[str, Any]) -> list[str]:
        cluster = self.cluster(params.get("cluster"))
        self.reconcile_all()
        desired = params.get("desiredStatus") or "RUNNING"
        service_name = params.get("serviceName")
        return [
            t.arn
            for t in self.tasks.values()
            if t.cluster_arn == cluster.arn
            and t.desired_status == desired
            and (not service_name or t.service == service_name.split("/")[-1])
            and (not params.get("startedBy") or t.deployment_id == params["startedBy"])
            and (not params.get("family") or f":task-definition/{params['family']}:" in t.task_definition_arn)
        ]

    def describe_tasks(self, cluster: str | None, names: list[str]) -> tuple[list[Task], list[dict]]:
        cluster_arn = self.cluster(cluster).arn
        self.reconcile_all()
        found, failures = [], []
        for name in names:
            task = self.tasks.get(name) or next(
                (t for t in self.tasks.values() if t.id == name.split("/")[-1]), None
            )
            if task is None or task.cluster_arn != cluster_arn:
                failures.append({"arn": name, "reason": "MISSING"})
            else:
                found.append(task)
        return found, failures

    def stop_task(self, cluster: str | None, name: str, reason: str) -> Task:
        found, _ = self.describe_tasks(cluster, [name])
        if not found:
            raise EcsError("InvalidParameterException", "The referenced task was not found.")
        task = found[0]
        self._stop(task, reason or "Task stopped by user", "UserInitiated")
        return task

    def _stop(self, task: Task, reason: str, code: str) -> None:
        if not task.live:
            return
        task.desired_status, task.stopping = "STOPPED", _clock()
        task.stopped_reason, task.stop_code = reason, code
        if task.last_status != "STOPPED":
            task.last_status = "DEACTIVATING"
        if task.process is not None:
            task.process.terminate()

    def _start_tasks(self, service: Service, deployment: Deployment, count: int) -> None:
        definition = self.task_definition(deployment.task_definition_arn, inactive=True)
        container = definition.container_definitions[0]
        started = []
        for _ in range(count):
            task_id = uuid.uuid4().hex
            task = Task(
                arn=f"{service.arn.replace(':service/', ':task/').rsplit('/', 1)[0]}/{task_id}",
                id=task_id,
                cluster_arn=service.cluster_arn,
                service=service.name,
                deployment_id=deployment.id,
                task_definition_arn=definition.arn,
                container_name=container.get("name", ""),
                image=container.get("image", ""),
                group=f"service:{service.name}",
                launch_type=service.settings.get("launchType") or ("" if self._strategy(service) else "EC2"),
                capacity_provider=self._strategy(service),
                stop_timeout=float(container.get("stopTimeout") or STOP_TIMEOUT_SECONDS),
            )
            self.tasks[task.arn] = task
            started.append(task)
        if started:
            ids = " ".join(f"(task {t.id})" for t in started)
            service.event(f"(service {service.name}) has started {len(started)} tasks: {ids}.")
        self._launch_provisioned()

    def _launch_provisioned(self) -> None:
        """Give PROVISIONING tasks their process, oldest first, MAX_BOOTING booting at a time."""
        booting = sum(1 for t in self.tasks.values() if t.last_status == "PENDING" and t.process is not None)
        waiting = sorted(
            (t for t in self.tasks.values() if t.last_status == "PROVISIONING" and t.live),
            key=lambda t: t.created,
        )
        for task in waiting[: max(0, processes.MAX_BOOTING - booting)]:
            service = self.services.get((task.cluster_arn.rsplit("/", 1)[-1], task.service))
            definition = self.task_definition(task.task_definition_arn, inactive=True)
            environment, missing = self._environment(definition.container_definitions[0])
            if service is not None and missing:
                self._fail(service, task, f"ResourceInitializationError: unable to pull secrets: {missing}")
                continue
            try:
                task.process = processes.launcher.launch(environment, self.region, task.arn)
            except OSError as exc:  # no server/ folder, no interpreter: what a bad image does on ECS
                if service is not None:
                    self._fail(service, task, f"CannotStartContainerError: {exc}")
                continue
            task.last_status = "PENDING"

    def _strategy(self, service: Service) -> str | None:
        strategy = service.settings.get("capacityProviderStrategy") or []
        return strategy[0].get("capacityProvider") if strategy else None

    def _environment(self, container: dict[str, Any]) -> tuple[dict[str, str], str]:
        environment = {e["name"]: str(e.get("value", "")) for e in container.get("environment") or []}
        missing = []
        for secret in container.get("secrets") or []:
            value = self.resolve_secret(secret.get("valueFrom", ""))
            if value is None:
                missing.append(f"{secret.get('name')} ({secret.get('valueFrom')}) does not exist")
            else:
                environment[secret["name"]] = value
        return environment, "; ".join(missing)

    def _fail(self, service: Service, task: Task, reason: str, exit_code: int | None = None) -> None:
        """A task that stopped while it should run: STOPPED, counted against its deployment."""
        now = _clock()
        was_running = task.last_status == "RUNNING"
        task.last_status, task.desired_status, task.stopped = "STOPPED", "STOPPED", now
        task.stopped_reason, task.stop_code, task.exit_code = reason, "EssentialContainerExited", exit_code
        deployment = next((d for d in service.deployments if d.id == task.deployment_id), None)
        if deployment is not None:
            deployment.failed_tasks += 1
            deployment.last_failure = now
        code = f" (exit code {exit_code})" if exit_code is not None else ""
        verb = "has stopped 1 running tasks" if was_running else "has stopped 1 pending tasks"
        service.event(f"(service {service.name}) {verb}: (task {task.id}). Reason: {reason}{code}.")
        service.steady = False

    # -- the scheduler -----------------------------------------------------------------------------

    def reconcile_all(self) -> None:
        with self.lock:
            for service in list(self.services.values()):
                self.reconcile_service(service)
            # ECS forgets a stopped task after about an hour.
            forgotten = _clock() - STOPPED_TASK_SECONDS
            for arn in [a for a, t in self.tasks.items() if t.stopped is not None and t.stopped < forgotten]:
                del self.tasks[arn]

    def reconcile_service(self, service: Service) -> None:
        with self.lock:
            if self.closed:
                return
            self._observe(service)
            if service.status == "ACTIVE":
                self._check_circuit_breaker(service)
                self._scale_primary(service)
                self._launch_provisioned()
                self._retire_old(service)
                self._complete(service)
            elif service.status == "DRAINING" and not self._tasks(service):
                service.status = "INACTIVE"
            self._count_on_cluster(service)

    def _count_on_cluster(self, service: Service) -> None:
        """DescribeClusters (moto's) counts the services and tasks this fill-in runs."""
        cluster = self._moto().clusters.get(service.cluster_name)
        if cluster is None:
            return
        tasks = [t for t in self.tasks.values() if t.cluster_arn == service.cluster_arn and t.live]
        cluster.running_tasks_count = sum(1 for t in tasks if t.last_status == "RUNNING")
        cluster.pending_tasks_count = len(tasks) - cluster.running_tasks_count
        cluster.active_services_count = sum(
            1 for s in self.services.values() if s.cluster_arn == service.cluster_arn and s.status == "ACTIVE"
        )

    def _observe(self, service: Service) -> None:
        """Read what the processes did: started, exited, stopped on request."""
        now = _clock()
        for task in [
            t for t in self.tasks.values() if t.service == service.name and t.last_status != "STOPPED"
        ]:
            if task.cluster_arn != service.cluster_arn:
                continue
            code = task.process.poll() if task.process is not None else None
            if task.live and code is not None:
                self._fail(service, task, ESSENTIAL_EXIT, code)
            elif not task.live and (code is not None or task.process is None):
                task.last_status, task.stopped, task.exit_code = "STOPPED", now, code
            elif (
                not task.live
                and task.process is not None
                and now - (task.stopping or now) > task.stop_timeout
            ):
                task.process.kill()
            elif task.last_status == "PENDING" and task.process is not None and task.process.ready():
                task.last_status, task.started = "RUNNING", now

    def _scale_primary(self, service: Service) -> None:
        primary, config = service.primary, service.deployment_configuration
        if primary.rollout_state == "FAILED":
            return
        live = self._tasks(service, primary)
        missing = primary.desired_count - len(live)
        if missing < 0:
            for task in sorted(live, key=lambda t: t.created, reverse=True)[:-missing]:
                self._stop(
                    task,
                    f"Scaling activity initiated by (deployment {primary.id})",
                    "ServiceSchedulerInitiated",
                )
            return
        if primary.failed_tasks and _clock() - primary.last_failure < RESTART_BACKOFF_SECONDS:
            return
        room = math.floor(primary.desired_count * config["maximumPercent"] / 100) - len(self._tasks(service))
        count = min(missing, max(room, 0))
        if count == 0 and missing and not self._old_running(service):
            count = missing  # nothing old left to wait for
        if count > 0:
            self._start_tasks(service, primary, count)

    def _old_running(self, service: Service) -> list[Task]:
        return [t for d in service.deployments[1:] for t in self._tasks(service, d)]

    def _stopping_old(self, service: Service) -> bool:
        """An older deployment still has a task that has not stopped (running or on its way)."""
        old = {d.id for d in service.deployments[1:]}
        return any(
            t.deployment_id in old and t.last_status != "STOPPED"
            for t in self.tasks.values()
            if t.service == service.name and t.cluster_arn == service.cluster_arn
        )

    def _retire_old(self, service: Service) -> None:
        """Stop old tasks one for one as the primary's run, keeping the minimum healthy."""
        old = self._old_running(service)
        if not old:
            return
        primary = service.primary
        new_running = self._count(service, primary, "RUNNING")
        # Old tasks stay until new ones run in their place; a failed deployment replaces none.
        keep = len(old) if primary.rollout_state == "FAILED" else max(0, service.desired_count - new_running)
        # With no room above the desired count (maximumPercent) new tasks wait for old ones to
        # go, down to the minimum healthy.
        config = service.deployment_configuration
        needed = primary.desired_count - len(self._tasks(service, primary))
        room = math.floor(service.desired_count * config["maximumPercent"] / 100) - len(self._tasks(service))
        if needed > room and primary.rollout_state != "FAILED":
            floor = math.ceil(service.desired_count * config["minimumHealthyPercent"] / 100)
            extra = min(needed - room, max(0, new_running + len(old) - floor))
            keep = min(keep, len(old) - extra)
        for task in sorted(old, key=lambda t: t.created)[: max(0, len(old) - keep)]:
            self._stop(
                task, f"Scaling activity initiated by (deployment {primary.id})", "ServiceSchedulerInitiated"
            )
        if len(old) > keep:
            service.event(f"(service {service.name}) has stopped {len(old) - keep} running tasks.")

    def _complete(self, service: Service) -> None:
        primary = service.primary
        running = self._count(service, primary, "RUNNING")
        settled = running == primary.desired_count and len(self._tasks(service, primary)) == running
        if not settled or self._stopping_old(service) or primary.rollout_state == "FAILED":
            return
        if primary.rollout_state != "COMPLETED":
            primary.rollout_state, primary.updated = "COMPLETED", _clock()
            primary.rollout_reason = f"ECS deployment {primary.id} completed."
            service.event(f"(service {service.name}) (deployment {primary.id}) deployment completed.")
        del service.deployments[1:]
        if not service.steady:
            service.steady = True
            service.event(f"(service {service.name}) has reached a steady state.")

    def _check_circuit_breaker(self, service: Service) -> None:
        primary = service.primary
        breaker = service.deployment_configuration.get("deploymentCircuitBreaker") or {}
        if not breaker.get("enable") or primary.rollout_state != "IN_PROGRESS":
            return
        threshold = min(max(math.ceil(primary.desired_count / 2), 3), 200)
        if primary.failed_tasks < threshold:
            return
        primary.rollout_state, primary.updated = "FAILED", _clock()
        primary.rollout_reason = (
            f"ECS deployment circuit breaker: tasks failed to start ({primary.failed_tasks})."
        )
        service.event(
            f"(service {service.name}) (deployment {primary.id}) deployment failed: tasks failed to start."
        )
        for task in self._tasks(service, primary):
            self._stop(task, "Deployment circuit breaker", "ServiceSchedulerInitiated")
        previous = next((d for d in service.deployments[1:] if d.rollout_state == "COMPLETED"), None)
        if breaker.get("rollback") and previous is not None:
            service.event(f"(service {service.name}) rolling back to deployment {previous.id}.")
            self._new_deployment(service, previous.task_definition_arn)
            service.deployments = [d for d in service.deployments if d.id != primary.id]

    # -- processes ---------------------------------------------------------------------------------

    def processes(self) -> list[processes.TaskProcess]:
        return [
            t.process for t in list(self.tasks.values()) if t.process is not None and t.process.poll() is None
        ]


class EcsBackends(FillinBackends[EcsServicesFillin]):
    """Every account's services; a reset (or the emulator's exit) stops every task's process."""

    def all(self) -> list[EcsServicesFillin]:
        with self._lock:
            return list(self._backends.values())

    def reset(self) -> None:
        backends = self.all()
        for backend in backends:
            backend.close()
        stop_processes(backends)
        super().reset()


def stop_processes(backends: list[EcsServicesFillin], grace: float = 5.0) -> None:
    running = [p for backend in backends for p in backend.processes()]
    for process in running:
        process.terminate()
    for process in processes.wait_for_exit(running, grace):
        process.kill()
    processes.wait_for_exit(running, grace)


fillin_backends: EcsBackends = EcsBackends(EcsServicesFillin)
