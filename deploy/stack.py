"""The whole stack: its areas, the order they converge in, and up / plan / status over them."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from invoke import Exit

from deploy.cli import deploy_task
from deploy.errors import EXIT_CHANGES_PENDING
from deploy.parallel import map_concurrently
from deploy.plan import DryRunExecutor, Executor, Resource, dependency_levels

if TYPE_CHECKING:
    from deploy.report import Reporter
    from deploy.stage import Stage

# area name -> module holding plan(stage) -> list[Resource]
AREAS: dict[str, str] = {
    "iam": "deploy.iam",
    "network": "deploy.network",
    "kms": "deploy.kms",
    "s3": "deploy.s3",
    "sns": "deploy.sns",
    "sqs": "deploy.sqs",
    "dynamodb": "deploy.dynamodb",
    "ses": "deploy.ses",
    "rds": "deploy.rds",
    "redshift": "deploy.redshift",
    "redis": "deploy.redis",
    "search": "deploy.search",
    "firehose": "deploy.firehose",
}

# Resources converged at once inside a wave: enough to hide API latency, few enough to stay
# clear of AWS request-rate limits.
MAX_CONCURRENT_RESOURCES = 8

# Dependency waves: areas in one wave are independent and converge concurrently; a wave starts
# when the one before it is done, because it reads what the earlier wave made (ARNs, endpoints).
WAVES: tuple[tuple[str, ...], ...] = (
    ("iam", "network", "kms"),
    ("s3", "sns", "sqs", "dynamodb"),
    # SES sends its notifications to a topic of the wave before. The data stores are slow (10 to 40
    # minutes on AWS): they start together here and are awaited together.
    ("ses", "rds", "redshift", "redis", "search"),
    ("firehose",),  # delivers into the Redshift cluster of the wave before
)


def planner(area: str) -> Callable[[Stage], list[Resource]]:
    return importlib.import_module(AREAS[area]).plan


def plan_wave(stage: Stage, areas: Sequence[str]) -> list[Resource]:
    per_area = map_concurrently(lambda area: planner(area)(stage), areas)
    return [resource for resources in per_area for resource in resources]


@dataclass
class Outcome:
    stage: Stage
    resources: list[Resource]
    calls: int

    @property
    def changed(self) -> bool:
        """Whether any call would be made (a resource only still creating is no change)."""
        return any(resource.calls for resource in self.resources)


def converge_areas(
    stage: Stage, waves: Sequence[Sequence[str]], reporter: Reporter, *, dry_run: bool
) -> Outcome:
    """Wave by wave: read, show what will change, then run it (or, on a dry run, only show it)."""
    executor_type = DryRunExecutor if dry_run else Executor
    everything: list[Resource] = []
    calls = 0
    for wave in waves:
        resources = plan_wave(stage, wave)
        everything.extend(resources)
        changing = [r for r in resources if r.steps]
        if changing:
            verb = "would change" if dry_run else "changing"
            reporter.plan(changing, title=f"{stage.name}: {verb} {', '.join(wave)}")
            calls += execute_areas(stage, changing, reporter, executor_type)
    if not any(r.steps for r in everything):
        reporter.plan([], title=f"{stage.name}")
    return Outcome(stage, everything, calls)


def execute_areas(
    stage: Stage,
    resources: Sequence[Resource],
    reporter: Reporter,
    executor_type: type[Executor] = Executor,
) -> int:
    """Run each resource's steps in order, independent resources side by side (a resource starts
    once those it depends on are done). Returns the number of calls made."""

    def run(resource: Resource) -> int:
        executor = executor_type(stage, reporter)
        executor.run(resource.steps)
        return len(executor.made)

    return sum(
        sum(map_concurrently(run, level, workers=MAX_CONCURRENT_RESOURCES))
        for level in dependency_levels(resources)
    )


def status_of(stage: Stage, areas: Sequence[str]) -> list[Resource]:
    return plan_wave(stage, areas)


def all_areas() -> tuple[str, ...]:
    return tuple(area for wave in WAVES for area in wave)


def secrets_rows(stage: Stage) -> list[dict[str, Any]]:
    from deploy.secrets import required_secret_rows

    return required_secret_rows(stage)


def run_converge(
    stage_name: str | None, waves: Sequence[Sequence[str]], *, dry_run: bool, as_json: bool
) -> Outcome:
    """What `up`, `plan` and every `<area>.create` do: open the stage, converge, report."""
    from deploy.report import Reporter
    from deploy.stage import open_stage

    stage = open_stage(stage_name, dry_run=dry_run)
    reporter = Reporter(as_json=as_json)
    outcome = converge_areas(stage, waves, reporter, dry_run=dry_run)
    reporter.outcome(outcome.resources, stage=stage.name, dry_run=dry_run, calls=outcome.calls)
    return outcome


def run_status(stage_name: str | None, areas: Sequence[str], *, as_json: bool) -> list[Resource]:
    """What `status` and every `<area>.status` do: read only, then one table."""
    from deploy.report import Reporter
    from deploy.stage import open_stage

    stage = open_stage(stage_name, dry_run=True)
    resources = status_of(stage, areas)
    Reporter(as_json=as_json).status(resources)
    return resources


# -- tasks -------------------------------------------------------------------------------------


@deploy_task()
def up(c, stage=None, dry_run=False, json=False):
    """Create or converge the whole stack, wave by wave. Example: inv up --stage local"""
    outcome = run_converge(stage, WAVES, dry_run=dry_run, as_json=json)
    if not dry_run and not json:
        _warn_missing_secrets(outcome.stage)


@deploy_task()
def plan(c, stage=None, json=False):
    """Show what `up` would change; exit 0 when nothing, 3 when something. Example: inv plan --stage prod"""
    outcome = run_converge(stage, WAVES, dry_run=True, as_json=json)
    if outcome.changed:
        raise Exit(code=EXIT_CHANGES_PENDING)


@deploy_task()
def status(c, stage=None, json=False):
    """Inventory every managed resource: present, missing or drifted. Example: inv status --json"""
    from deploy.report import Reporter
    from deploy.stage import open_stage

    target = open_stage(stage, dry_run=True)
    resources = status_of(target, all_areas())
    Reporter(as_json=json).status(resources, rows=secrets_rows(target))


def _warn_missing_secrets(stage: Stage) -> None:
    from deploy.report import Reporter

    for row in secrets_rows(stage):
        if row["state"] == "missing":
            Reporter().warn(f"secret {row['name']} is not set: {row['detail']}")
