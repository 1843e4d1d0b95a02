"""Shipping the workers: shut the running ones down (one WorkerShutDownAction each, acknowledged in
the worker log table), register a task definition revision only when it differs, roll the service
onto it and follow it until stable, failing fast and rolling back. Also the service's report and
its teardown, and which image they get. The protocol is DESIGN section 5; the worker's side is
server/apps/sqsworker."""

from __future__ import annotations

import json as jsonlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from deploy import parallel
from deploy.errors import AwsError, WaitTimeout

if TYPE_CHECKING:
    from pathlib import Path

    from deploy.report import Reporter
    from deploy.stage import Stage

WORKER_MODULE = "apps.sqsworker.worker"
SHUTDOWN_ACTION = "WorkerShutDownAction"
ACK_ACTION = "WorkerShutDownAck"
# Acknowledgements are looked up from the send time minus this, for clocks a little apart.
CLOCK_SKEW_SECONDS = 5.0
FIRST_POLL_SECONDS = 0.1
MAX_POLL_SECONDS = 2.0
# Service events that mean the new tasks fail: the deploy stops at once instead of at its timeout.
FAILING_EVENTS = ("essential container in task exited", "unable to place", "failed", "circuit breaker")


def iso_utc(epoch: float) -> str:
    """The worker's timestamp format (fixed width, so strings sort as times)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_deploy_id(now: float) -> str:
    return f"{datetime.fromtimestamp(now, UTC).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


# -- the service's tasks -----------------------------------------------------------------------------


def running_tasks(stage: Stage) -> list[dict[str, Any]]:
    """The RUNNING tasks of the worker service (its group), oldest first."""
    ecs, client = stage.config.ecs, stage.client("ecs")
    arns: list[str] = []
    for page in client.get_paginator("list_tasks").paginate(
        cluster=ecs.cluster, serviceName=ecs.service, desiredStatus="RUNNING"
    ):
        arns.extend(page.get("taskArns", []))
    tasks: list[dict[str, Any]] = []
    for start in range(0, len(arns), 100):
        tasks += client.describe_tasks(cluster=ecs.cluster, tasks=arns[start : start + 100])["tasks"]
    group = f"service:{ecs.service}"
    mine = [t for t in tasks if t.get("group") == group and t.get("lastStatus") == "RUNNING"]
    return sorted(mine, key=lambda t: (str(t.get("startedAt") or t.get("createdAt") or ""), t["taskArn"]))


def short_task(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


# -- shutdown ----------------------------------------------------------------------------------------


@dataclass
class Shutdown:
    deploy_id: str
    sent_at: float
    workers: list[str]
    acknowledged: dict[str, str] = field(default_factory=dict)  # worker -> ack time

    @property
    def missing(self) -> list[str]:
        return [w for w in self.workers if w not in self.acknowledged]

    def summary(self) -> dict[str, Any]:
        return {
            "deploy_id": self.deploy_id,
            "workers": self.workers,
            "acknowledged": self.acknowledged,
            "missing": self.missing,
        }


def shutdown_message(deploy_id: str, sent_at: float) -> str:
    arguments = {"deploy_id": deploy_id, "timestamp": iso_utc(sent_at)}
    return jsonlib.dumps({"module": WORKER_MODULE, "class": SHUTDOWN_ACTION, "arguments": arguments})


def send_shutdowns(stage: Stage, count: int, deploy_id: str, sent_at: float) -> None:
    """`count` shutdown messages on the worker queue, ten a batch."""
    from deploy.areas.sqs import queue_url

    url = queue_url(stage, stage.config.sqs.queues.worker)
    if url is None:
        raise AwsError("QueueDoesNotExist", f"{stage.config.sqs.queues.worker} does not exist", "Run inv up.")
    body = shutdown_message(deploy_id, sent_at)
    sqs = stage.client("sqs")
    for start in range(0, count, 10):
        entries = [{"Id": str(n), "MessageBody": body} for n in range(start, min(start + 10, count))]
        failed = sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed", [])
        if failed:
            first = failed[0]
            raise AwsError(
                first.get("Code", "SendFailed"), first.get("Message", "send failed"), "Rerun the task."
            )


def read_acknowledgements(stage: Stage, deploy_id: str | None, since: float) -> dict[str, str]:
    """worker -> time of its acknowledgement of `deploy_id` (of any deploy when None) made after
    `since`, from the worker log table's index."""
    from deploy.areas.dynamodb import WORKER_LOGS_INDEX

    values = {":ack": {"S": ACK_ACTION}, ":since": {"S": iso_utc(since)}}
    params: dict[str, Any] = {
        "TableName": stage.config.dynamodb.tables.worker_logs,
        "IndexName": WORKER_LOGS_INDEX,
        "KeyConditionExpression": "#action = :ack AND started_at >= :since",
        "ExpressionAttributeNames": {"#action": "action"},
        "ExpressionAttributeValues": values,
    }
    if deploy_id is not None:
        params["FilterExpression"] = "deploy_id = :deploy"
        values[":deploy"] = {"S": deploy_id}
    found: dict[str, str] = {}
    client = stage.client("dynamodb")
    while True:
        page = client.query(**params)
        for item in page.get("Items", []):
            found.setdefault(item["worker"]["S"], item["started_at"]["S"])
        if "LastEvaluatedKey" not in page:
            return found
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def idle_workers(stage: Stage, tasks: list[dict[str, Any]], deployment: str | None) -> list[str]:
    """The running tasks of the service's primary `deployment` that acknowledged a shutdown: they
    take no more messages, so the service needs new tasks even when nothing else changed. (Tasks of
    an older deployment are being replaced already.)"""
    tasks = [t for t in tasks if deployment and t.get("startedBy") == deployment]
    if not tasks:
        return []
    starts = [t["startedAt"].timestamp() for t in tasks if t.get("startedAt") is not None]
    since = (min(starts) if starts else 0.0) - CLOCK_SKEW_SECONDS
    acknowledged = read_acknowledgements(stage, None, max(since, 0.0))
    return [t["taskArn"] for t in tasks if t["taskArn"] in acknowledged]


def shutdown_workers(
    stage: Stage,
    reporter: Reporter,
    *,
    wait: bool = True,
    timeout: float | None = None,
    skip: list[str] | tuple[str, ...] = (),
) -> Shutdown:
    """One WorkerShutDownAction per RUNNING task of the service (but those in `skip`, which already
    acknowledged one); with `wait`, one line per worker as its acknowledgement arrives, until all
    did (WaitTimeout naming the others after `timeout`)."""
    tasks = [task for task in running_tasks(stage) if task["taskArn"] not in skip]
    now = time.time()
    shutdown = Shutdown(new_deploy_id(now), now, [t["taskArn"] for t in tasks])
    if not tasks:
        reporter.message(f"{stage.config.ecs.service}: no running worker, nothing to shut down")
        return shutdown
    if stage.read_only:
        reporter.message(
            f"would send {len(tasks)} {SHUTDOWN_ACTION} message(s) and wait for as many acknowledgements"
        )
        return shutdown
    send_shutdowns(stage, len(tasks), shutdown.deploy_id, now)
    reporter.message(f"shutdown {shutdown.deploy_id}: sent {len(tasks)} {SHUTDOWN_ACTION} message(s)")
    if wait:
        wait_for_acknowledgements(
            stage, reporter, shutdown, timeout or stage.config.ecs.shutdown_timeout_seconds
        )
    return shutdown


def wait_for_acknowledgements(stage: Stage, reporter: Reporter, shutdown: Shutdown, timeout: float) -> None:
    started, pause = time.monotonic(), FIRST_POLL_SECONDS
    expected = len(shutdown.workers)
    while True:
        found = read_acknowledgements(stage, shutdown.deploy_id, shutdown.sent_at - CLOCK_SKEW_SECONDS)
        for worker, when in sorted(found.items(), key=lambda item: item[1]):
            if worker not in shutdown.acknowledged:
                shutdown.acknowledged[worker] = when
                shown = (
                    f"  {short_task(worker)} acknowledged at {when} ({len(shutdown.acknowledged)}/{expected})"
                )
                if not reporter.as_json:
                    reporter.err.print(shown)
        if len(shutdown.acknowledged) >= expected:
            return
        elapsed = time.monotonic() - started
        if elapsed >= timeout:
            names = ", ".join(short_task(w) for w in shutdown.missing) or "none by task ARN"
            raise WaitTimeout(
                f"{expected - len(shutdown.acknowledged)} worker(s) to acknowledge shutdown "
                f"{shutdown.deploy_id} (not acknowledged: {names})",
                f"{len(shutdown.acknowledged)}/{expected} acknowledged",
                elapsed,
            )
        parallel.pause(min(pause, max(0.0, timeout - elapsed)))
        pause = min(pause * 2, MAX_POLL_SECONDS)


# -- registering and rolling ------------------------------------------------------------------------


@dataclass
class Rollout:
    """What a deploy would change: a new revision (its parameters), a new count, new tasks in place
    of idle ones, or nothing."""

    service: dict[str, Any]
    live: dict[str, Any] | None
    wanted: dict[str, Any]
    register: bool
    count: int | None
    idle: list[str] = field(default_factory=list)
    pushed: bool = False

    @property
    def on_latest(self) -> bool:
        return self.live is not None and self.service.get("taskDefinition") == self.live["taskDefinitionArn"]

    @property
    def new_tasks(self) -> bool:
        """Whether the service needs a new deployment (then the running workers are shut down first)."""
        return self.register or not self.on_latest or bool(self.idle) or self.pushed

    @property
    def changes(self) -> bool:
        return self.new_tasks or self.count is not None


def plan_rollout(stage: Stage, image: str | None, count: int | None) -> Rollout:
    """Reads only: the service, the latest revision, the definition rendered for `image` (default:
    the image the latest revision runs), and the running workers that acknowledged a shutdown."""
    from deploy.areas.ecs import (
        current_image,
        latest_task_definition,
        read_service,
        render_task_definition,
        same_task_definition,
    )

    service = read_service(stage)
    if service is None:
        ecs = stage.config.ecs
        raise AwsError(
            "ServiceNotFoundException",
            f"service {ecs.service} does not exist in cluster {ecs.cluster}",
            f"Run `inv create-ecs --stage {stage.name}` first.",
        )
    live = latest_task_definition(stage)
    wanted = render_task_definition(stage, image or current_image(stage, live))
    register = not same_task_definition(wanted, live)
    new_count = count if count is not None and count != service.get("desiredCount") else None
    primary = next((d for d in service.get("deployments") or [] if d.get("status") == "PRIMARY"), {})
    idle = idle_workers(stage, running_tasks(stage), primary.get("id"))
    return Rollout(service, live, wanted, register, new_count, idle)


def register_revision(stage: Stage, wanted: dict[str, Any], reporter: Reporter) -> str:
    family = wanted["family"]
    tags = [{"key": k, "value": v} for k, v in sorted(stage.tags(family).items())]
    found = stage.client("ecs").register_task_definition(**wanted, tags=tags)["taskDefinition"]
    reporter.message(f"registered {family}:{found['revision']}")
    return found["taskDefinitionArn"]


def update_service(
    stage: Stage, revision: str, count: int | None, reporter: Reporter, *, force: bool
) -> None:
    """Move the service to `revision`; `force`: new tasks even on the revision it runs (its
    workers acknowledged a shutdown and take no more messages)."""
    ecs = stage.config.ecs
    params: dict[str, Any] = {"cluster": ecs.cluster, "service": ecs.service, "taskDefinition": revision}
    if count is not None:
        params["desiredCount"] = count
    if force:
        params["forceNewDeployment"] = True
    stage.client("ecs").update_service(**params)
    shown = f" with {count} worker(s)" if count is not None else ""
    reporter.message(f"updating {ecs.service} to {short_task(revision)}{shown}")


def apply_rollout(stage: Stage, rollout: Rollout, reporter: Reporter, timeout: float) -> str:
    """Register (when changed), update the service, follow it until stable; on failure roll back to
    the revision it ran and raise. Returns the revision it runs."""
    previous = str(rollout.service.get("taskDefinition"))
    since = latest_event_time(rollout.service)
    revision = (
        register_revision(stage, rollout.wanted, reporter)
        if rollout.register
        else rollout.live["taskDefinitionArn"]
    )  # type: ignore[index]
    update_service(stage, revision, rollout.count, reporter, force=rollout.new_tasks and revision == previous)
    try:
        wait_stable(stage, revision, since, reporter, timeout)
    except (AwsError, WaitTimeout) as exc:
        if previous and previous != revision:
            roll_back(stage, previous, rollout.service.get("desiredCount"), reporter)
            raise AwsError(
                "DeploymentFailed",
                f"{short_task(revision)} did not become stable ({exc}); "
                f"rolled back to {short_task(previous)}",
                f"Read the events (`inv describe-ecs --stage {stage.name}`), fix and deploy again.",
            ) from exc
        raise
    return revision


def roll_back(stage: Stage, previous: str, count: Any, reporter: Reporter) -> None:
    ecs = stage.config.ecs
    params: dict[str, Any] = {"cluster": ecs.cluster, "service": ecs.service, "taskDefinition": previous}
    if isinstance(count, int):
        params["desiredCount"] = count
    stage.client("ecs").update_service(**params)
    reporter.warn(f"rolling {ecs.service} back to {short_task(previous)}")


def latest_event_time(service: dict[str, Any]) -> Any:
    events = service.get("events") or []
    return max((e["createdAt"] for e in events), default=None)


def failing_events(service: dict[str, Any], since: Any) -> list[str]:
    return [
        e.get("message", "")
        for e in service.get("events") or []
        if (since is None or e["createdAt"] > since)
        and any(word in e.get("message", "").lower() for word in FAILING_EVENTS)
    ]


def is_stable(service: dict[str, Any], revision: str) -> bool:
    """One deployment, on `revision`, with every desired task running."""
    deployments = service.get("deployments") or []
    if len(deployments) != 1 or deployments[0].get("taskDefinition") != revision:
        return False
    primary = deployments[0]
    done = primary.get("rolloutState", "COMPLETED") == "COMPLETED"
    return done and service.get("runningCount") == service.get("desiredCount")


def wait_stable(stage: Stage, revision: str, since: Any, reporter: Reporter, timeout: float) -> None:
    """Poll the service until stable on `revision`; raise at the first failing event, a failed
    rollout, or the timeout."""
    from deploy.areas.ecs import read_service

    started, pause = time.monotonic(), FIRST_POLL_SECONDS
    name = stage.config.ecs.service
    with reporter.waiting(f"{name} on {short_task(revision)}") as progress:
        while True:
            service = read_service(stage)
            if service is None:
                raise AwsError("ServiceNotFoundException", f"{name} is gone", "Run inv create-ecs.")
            failing = failing_events(service, since)
            primary = next((d for d in service.get("deployments") or [] if d.get("status") == "PRIMARY"), {})
            if failing or primary.get("rolloutState") == "FAILED":
                reason = "; ".join(failing) or primary.get("rolloutStateReason", "rollout failed")
                raise AwsError("TasksFailed", f"{name}: {reason}", "")
            elapsed = time.monotonic() - started
            running, desired = service.get("runningCount", 0), service.get("desiredCount", 0)
            state = f"{running}/{desired} running, {len(service.get('deployments') or [])} deployment(s)"
            progress(state, elapsed)
            if is_stable(service, revision):
                return
            if elapsed >= timeout:
                raise WaitTimeout(f"{name} to be stable on {short_task(revision)}", state, elapsed)
            parallel.pause(min(pause, max(0.0, timeout - elapsed)))
            pause = min(pause * 2, MAX_POLL_SECONDS)


# -- deploy-worker -------------------------------------------------------------------------------------


@dataclass
class WorkerDeploy:
    image: str
    revision: str | None = None
    changed: bool = False
    shutdown: Shutdown | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "revision": self.revision,
            "changed": self.changed,
            "shutdown": self.shutdown.summary() if self.shutdown else None,
        }


def deploy_worker(
    stage: Stage,
    reporter: Reporter,
    *,
    image: str | None,
    build: Callable[[], tuple[str, bool]] | None,
    count: int | None = None,
    skip_shutdown: bool = False,
    timeout: float | None = None,
) -> WorkerDeploy:
    """Build and push (when `build` is given: it returns the image and whether it pushed it; an
    image already in the repository is not built again), then, only if the rendered definition,
    the count or the service's revision would change (or the image was just pushed, or running
    workers already acknowledged a shutdown): shut the workers down and wait, register, update the
    service and follow it until stable (rolling back on failure). The image is built before the
    shutdown so the workers stop only once there is something to run."""
    rollout = plan_rollout(stage, image, count)
    if build is not None and not stage.read_only:
        # Built unless the repository has the image; one pushed just now (a first deploy after
        # `up`, whose tasks could not pull it yet) needs new tasks even on the same revision.
        image, pushed = build()
        rollout = plan_rollout(stage, image, count)
        rollout.pushed = pushed
    result = WorkerDeploy(rollout.wanted["containerDefinitions"][0]["image"])
    if not rollout.changes:
        running = short_task(str(rollout.service.get("taskDefinition")))
        reporter.message(
            f"{stage.config.ecs.service} already runs {running} with {result.image}: nothing to deploy"
        )
        result.revision = str(rollout.service.get("taskDefinition"))
        return result
    result.changed = True
    if stage.read_only:
        reporter.message(
            f"would {preview(rollout, skip_shutdown)} {stage.config.ecs.service} to {result.image}"
        )
        return result
    if rollout.idle:
        reporter.message(f"{len(rollout.idle)} running worker(s) acknowledged a shutdown: they are replaced")
    if rollout.new_tasks and not skip_shutdown:
        result.shutdown = shutdown_workers(stage, reporter, wait=True, skip=rollout.idle)
    limit = timeout or stage.config.ecs.deploy_timeout_minutes * 60
    result.revision = apply_rollout(stage, rollout, reporter, limit)
    reporter.message(f"{stage.config.ecs.service} runs {short_task(result.revision)}, stable")
    return result


def preview(rollout: Rollout, skip_shutdown: bool) -> str:
    """What a deploy would do, for a dry run: "shut the workers down, register a new revision and
    update", or less."""
    steps = []
    if rollout.new_tasks and not skip_shutdown:
        steps.append("shut the workers down")
    if rollout.register:
        steps.append("register a new revision")
    if rollout.count is not None:
        steps.append(f"set {rollout.count} worker(s)")
    return ", ".join(steps) + (" and update" if steps else "update")


def update_ecs(
    stage: Stage, reporter: Reporter, *, image: str | None, count: int | None, timeout: float | None
) -> WorkerDeploy:
    """Register only when changed, then update the service (no shutdown: the original update-ecs)."""
    return deploy_worker(
        stage, reporter, image=image, build=None, count=count, skip_shutdown=True, timeout=timeout
    )


# -- describe and terminate ---------------------------------------------------------------------------


def describe_workers(stage: Stage, events: int = 10) -> dict[str, Any]:
    from deploy.areas.ecs import capacity_names, latest_task_definition, read_service

    ecs = stage.config.ecs
    client = stage.client("ecs")
    clusters = client.describe_clusters(clusters=[ecs.cluster]).get("clusters", [])
    cluster = next((c for c in clusters if c.get("status") == "ACTIVE"), None)
    report: dict[str, Any] = {
        "cluster": ecs.cluster,
        "cluster_status": cluster["status"] if cluster else "missing",
    }
    if cluster is None:
        return report
    group_name = capacity_names(stage).group
    groups = stage.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group_name])
    group = next(iter(groups.get("AutoScalingGroups", [])), None)
    report["instances"] = {
        "registered": cluster.get("registeredContainerInstancesCount", 0),
        "group": group_name,
        "desired": group.get("DesiredCapacity") if group else None,
        "in_group": [i["InstanceId"] for i in group.get("Instances", [])] if group else [],
    }
    service = read_service(stage)
    if service is None:
        report["service"] = {"name": ecs.service, "status": "missing"}
        return report
    live = latest_task_definition(stage)
    image = next((c["image"] for c in (live or {}).get("containerDefinitions", [])), None)
    report["service"] = {
        "name": ecs.service,
        "status": service.get("status"),
        "running": service.get("runningCount", 0),
        "desired": service.get("desiredCount", 0),
        "revision": short_task(str(service.get("taskDefinition", ""))),
        "latest_revision": short_task(live["taskDefinitionArn"]) if live else None,
        "image": image,
        "deployments": [
            {
                k: d.get(k)
                for k in ("status", "taskDefinition", "runningCount", "desiredCount", "rolloutState")
            }
            for d in service.get("deployments") or []
        ],
        "events": [
            f"{e['createdAt']} {e.get('message', '')}" for e in (service.get("events") or [])[:events]
        ],
    }
    return report


def print_report(reporter: Reporter, report: dict[str, Any]) -> None:
    from rich.markup import escape

    reporter.message(escape(f"cluster {report['cluster']}: {report['cluster_status']}"))
    instances = report.get("instances")
    if instances:
        reporter.message(
            escape(
                f"instances: {instances['registered']} registered; group {instances['group']} desired "
                f"{instances['desired']}, {len(instances['in_group'])} in it"
            )
        )
    service = report.get("service")
    if service and service.get("status") != "missing":
        reporter.message(
            escape(
                f"service {service['name']}: {service['running']}/{service['desired']} running, "
                f"revision {service['revision']} (latest {service['latest_revision']}), "
                f"image {service['image']}"
            )
        )
        for line in service["events"]:
            reporter.message(escape(f"  {line}"))
    elif service:
        reporter.message(escape(f"service {service['name']}: missing"))


def terminate_workers(stage: Stage, reporter: Reporter) -> list[str]:
    """Service to zero, deleted, its task definitions deregistered, the group's capacity to zero.
    The cluster, the repository and every data store stay. Returns what it did."""
    from deploy.areas.ecs import capacity_names, read_service

    ecs, client = stage.config.ecs, stage.client("ecs")
    done: list[str] = []
    service = read_service(stage)
    if service is not None:
        if stage.read_only:
            done.append(f"would scale {ecs.service} to 0 and delete it")
        else:
            client.update_service(cluster=ecs.cluster, service=ecs.service, desiredCount=0)
            client.delete_service(cluster=ecs.cluster, service=ecs.service)
            done.append(f"deleted service {ecs.service}")
    arns: list[str] = []
    for page in client.get_paginator("list_task_definitions").paginate(
        familyPrefix=ecs.task_definition, status="ACTIVE"
    ):
        arns += [
            a
            for a in page.get("taskDefinitionArns", [])
            if a.rsplit("/", 1)[-1].rsplit(":", 1)[0] == ecs.task_definition
        ]
    for arn in arns:
        if not stage.read_only:
            client.deregister_task_definition(taskDefinition=arn)
    if arns:
        done.append(
            f"{'would deregister' if stage.read_only else 'deregistered'} {len(arns)} "
            f"revision(s) of {ecs.task_definition}"
        )
    group_name = capacity_names(stage).group
    groups = stage.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group_name])
    group = next(iter(groups.get("AutoScalingGroups", [])), None)
    if group is not None and (group["MinSize"], group["DesiredCapacity"]) != (0, 0):
        if not stage.read_only:
            stage.client("autoscaling").update_auto_scaling_group(
                AutoScalingGroupName=group_name, MinSize=0, DesiredCapacity=0
            )
        done.append(f"{'would set' if stage.read_only else 'set'} {group_name} capacity to 0")
    for line in done or ["nothing to terminate"]:
        reporter.message(line)
    return done


def set_capacity(stage: Stage, reporter: Reporter, count: int) -> bool:
    """The group's desired capacity (create-ec2-instances): set, never added to. Whether it changed."""
    from deploy.areas.ecs import capacity_names

    group_name = capacity_names(stage).group
    groups = stage.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group_name])
    group = next(iter(groups.get("AutoScalingGroups", [])), None)
    if group is None:
        raise AwsError(
            "AutoScalingGroupNotFound",
            f"{group_name} does not exist",
            f"Run `inv create-ecs --stage {stage.name}`.",
        )
    if group["DesiredCapacity"] == count:
        reporter.message(f"{group_name} already has capacity {count}")
        return False
    if stage.read_only:
        reporter.message(f"would set {group_name} capacity from {group['DesiredCapacity']} to {count}")
        return True
    stage.client("autoscaling").set_desired_capacity(
        AutoScalingGroupName=group_name, DesiredCapacity=count, HonorCooldown=False
    )
    reporter.message(f"set {group_name} capacity from {group['DesiredCapacity']} to {count}")
    return True


# -- the image the workers get ----------------------------------------------------------------


def server_dir() -> Path:
    from deploy.ship.bundle import SERVER_DIR

    return SERVER_DIR


def skip_build_image(stage: Stage) -> str:
    """--skip-build: the image of the current source label, which must already be in the repository
    (the emulator runs server/ itself and needs none)."""
    from deploy.areas.ecr import repository_uri
    from deploy.errors import AwsError
    from deploy.ship.docker_image import image_pushed, source_tag

    tag = source_tag(server_dir())
    if not stage.uses_emulator and not image_pushed(stage, tag):
        raise AwsError(
            "ImageNotFoundException",
            f"{stage.config.ecs.repository}:{tag} is not in the repository",
            "Build and push it (inv build-docker) or name one with --image URI.",
        )
    return f"{repository_uri(stage)}:{tag}"


def worker_image(
    stage: Stage, reporter: Any, image: str | None, skip_build: bool
) -> tuple[str, Callable[[], tuple[str, bool]] | None]:
    """The image the workers get, and the build that makes it when it must be built: `image` as
    given; with `skip_build` the current source label's, already pushed; else the current source
    label's, built and pushed unless the repository has it. On the emulator there is nothing to
    build: its ECS runs server/ itself, so the label's image stands for that code."""
    from deploy.areas.ecr import repository_uri
    from deploy.ship.docker_image import ensure_image, source_tag

    if image is not None:
        return image, None
    if skip_build or stage.uses_emulator:
        return skip_build_image(stage), None
    tag = source_tag(server_dir())
    return f"{repository_uri(stage)}:{tag}", lambda: ensure_image(stage, server_dir(), reporter, tag)
