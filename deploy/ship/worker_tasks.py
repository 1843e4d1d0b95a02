"""The workers' tasks under their original names: create-ecs, create-ec2-instances, build-docker,
update-ecs, shutdown-ecs-workers, deploy-worker, describe-ecs, terminate-ecs."""

from __future__ import annotations

from typing import Any

from deploy.cli import deploy_task

SHUTDOWN_TIMEOUT_HELP = "seconds to wait for the acknowledgements (0: ecs.shutdown_timeout_seconds)"
DEPLOY_TIMEOUT_HELP = "seconds to wait for the service to be stable (0: ecs.deploy_timeout_minutes)"
IMAGE_HELP = "deploy this image URI instead of building one"
COUNT_HELP = "number of workers (default: as the service has now)"


def _whole(name: str, value: Any) -> int | None:
    """A count or timeout argument as an int (Invoke passes an option without default as text)."""
    from deploy.errors import ArgumentError

    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number < 0 or str(number) != str(value).strip():
        raise ArgumentError(name, f"{value!r} must be a whole number, 0 or more")
    return number


def _image_argument(image: str | None) -> None:
    import re

    from deploy.errors import ArgumentError

    if image is not None and not re.fullmatch(
        r"[a-z0-9.-]+(:\d+)?/[a-z0-9._/-]+(:[\w.-]{1,128}|@sha256:[0-9a-f]{64})", image
    ):
        raise ArgumentError("--image", f"{image!r} is not an image URI such as <registry>/<repository>:<tag>")


@deploy_task()
def create_ecs(c, stage=None, dry_run=False, json=False):
    """Create or converge the image repository, cluster, EC2 capacity, task definition and service.
    Example: inv create-ecs --stage dev --dry-run"""
    from deploy.areas import ecr, ecs
    from deploy.execute import run_converge

    run_converge(stage, [{"ecr": ecr.plan}, {"ecs": ecs.plan}], dry_run=dry_run, as_json=json)


@deploy_task(
    help={"count": "instances the group runs (default: ecs.min_instances): set, so a rerun adds none"}
)
def create_ec2_instances(c, stage=None, count=None, dry_run=False):
    """Converge the workers' EC2 capacity, then set the Auto Scaling group's capacity (set, never
    added to: a rerun adds no instance). Example: inv create-ec2-instances --stage dev --count 2"""
    from deploy.areas import ecs
    from deploy.errors import ArgumentError
    from deploy.execute import run_converge
    from deploy.report import Reporter
    from deploy.ship.workers import set_capacity

    count = _whole("--count", count)
    outcome = run_converge(stage, [{"ecs": ecs.plan}], dry_run=dry_run, as_json=False)
    config = outcome.stage.config.ecs
    wanted = config.min_instances if count is None else count
    if wanted > config.max_instances:
        raise ArgumentError("--count", f"{wanted} is above ecs.max_instances ({config.max_instances})")
    set_capacity(outcome.stage, Reporter(), wanted)


@deploy_task(help={"tag": "image tag (default: the source label, the git commit)"})
def build_docker(c, stage=None, tag=None, json=False):
    """Build the worker image from server/Dockerfile, tag it with the git commit, log in to ECR and
    push it, showing progress. Example: inv build-docker --stage dev"""
    from deploy.report import Reporter
    from deploy.ship.docker_image import build_and_push
    from deploy.ship.workers import server_dir
    from deploy.stage import open_stage

    target = open_stage(stage)
    reporter = Reporter(as_json=json)
    image = build_and_push(target, server_dir(), reporter, tag)
    if json:
        reporter.json({"stage": target.name, "image": image})


@deploy_task(help={"image": IMAGE_HELP, "count": COUNT_HELP, "timeout": DEPLOY_TIMEOUT_HELP})
def update_ecs(c, stage=None, image=None, count=None, timeout=0, dry_run=False, json=False):
    """Register a task definition revision only when the rendered one differs from the latest, then
    update the service and follow it until stable. Example: inv update-ecs --stage dev --dry-run"""
    from deploy.report import Reporter
    from deploy.ship.workers import update_ecs as run_update
    from deploy.stage import open_stage

    count = _whole("--count", count)
    timeout = _whole("--timeout", timeout)
    _image_argument(image)
    target = open_stage(stage, dry_run=dry_run)
    reporter = Reporter(as_json=json)
    result = run_update(target, reporter, image=image, count=count, timeout=timeout or None)
    if json:
        reporter.json({"stage": target.name, "dry_run": dry_run, **result.summary()})


@deploy_task(
    help={
        "wait": "wait for every worker's acknowledgement (default; --no-wait to only send)",
        "timeout": SHUTDOWN_TIMEOUT_HELP,
    }
)
def shutdown_ecs_workers(c, stage=None, wait=True, timeout=0, dry_run=False, json=False):
    """Send one WorkerShutDownAction per running worker and wait until each acknowledged (one line
    per worker); exit 1 at the timeout naming those that did not. Example: inv shutdown-ecs-workers"""
    from deploy.report import Reporter
    from deploy.ship.workers import shutdown_workers
    from deploy.stage import open_stage

    timeout = _whole("--timeout", timeout)
    target = open_stage(stage, dry_run=dry_run)
    reporter = Reporter(as_json=json)
    shutdown = shutdown_workers(target, reporter, wait=wait, timeout=timeout or None)
    if json:
        reporter.json({"stage": target.name, "dry_run": dry_run, **shutdown.summary()})
    elif wait and shutdown.workers and not dry_run:
        reporter.message(f"all {len(shutdown.workers)} worker(s) acknowledged shutdown {shutdown.deploy_id}")


@deploy_task(
    help={
        "count": COUNT_HELP,
        "skip_build": "do not build: deploy the image of the current commit, already in the repository",
        "image": IMAGE_HELP,
        "skip_shutdown": "do not shut the running workers down first",
        "timeout": DEPLOY_TIMEOUT_HELP,
    }
)
def deploy_worker(
    c,
    stage=None,
    count=None,
    skip_build=False,
    image=None,
    skip_shutdown=False,
    timeout=0,
    dry_run=False,
    json=False,
):
    """Ship the workers with no manual step: build and push, shut the running workers down and wait
    for them, register a revision (only if changed), update the service, wait until stable (failing
    fast, rolling back on failure). Example: inv deploy-worker --stage dev --skip-build"""
    from deploy.report import Reporter
    from deploy.ship.workers import deploy_worker as run_deploy
    from deploy.ship.workers import worker_image
    from deploy.stage import open_stage

    count = _whole("--count", count)
    timeout = _whole("--timeout", timeout)
    _image_argument(image)
    target = open_stage(stage, dry_run=dry_run)
    reporter = Reporter(as_json=json)
    image, build = worker_image(target, reporter, image, skip_build)
    result = run_deploy(
        target,
        reporter,
        image=image,
        build=build,
        count=count,
        skip_shutdown=skip_shutdown,
        timeout=timeout or None,
    )
    if json:
        reporter.json({"stage": target.name, "dry_run": dry_run, **result.summary()})


@deploy_task()
def describe_ecs(c, stage=None, json=False):
    """The cluster, its instances, the service (running/desired, revision, image) and recent events.
    Example: inv describe-ecs --stage dev --json"""
    from deploy.report import Reporter
    from deploy.ship.workers import describe_workers, print_report
    from deploy.stage import open_stage

    target = open_stage(stage, dry_run=True)
    reporter = Reporter(as_json=json)
    report = describe_workers(target)
    if json:
        reporter.json(report)
    else:
        print_report(reporter, report)


@deploy_task(
    help={
        "yes": "do not ask for the stage name to be typed back",
        "prod": "required on the prod stage, with the confirmation",
    }
)
def terminate_ecs(c, stage=None, yes=False, prod=False, dry_run=False):
    """Scale the worker service to zero, delete it, deregister its task definitions and set the
    instances' capacity to zero; the cluster and repository stay. Example: inv terminate-ecs --yes"""
    from deploy.report import Reporter
    from deploy.secrets import confirm_destruction
    from deploy.ship.workers import terminate_workers
    from deploy.stage import open_stage

    target = open_stage(stage, dry_run=dry_run)
    what = f"terminate the workers of {target.config.ecs.cluster}"
    confirm_destruction(target, what, yes=yes, prod=prod, dry_run=dry_run)
    terminate_workers(target, Reporter())
