"""The whole stack: the areas it finds in deploy/areas/, the waves their declarations give, and the
up / plan / status tasks over them."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Collection, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from invoke import Exit

from deploy.cli import deploy_task
from deploy.execute import (
    Outcome,
    Planner,
    Wave,
    converge_waves,
    divergence_code,
    manual_actions,
    read_areas,
    run_converge,
)
from deploy.parallel import call_concurrently

if TYPE_CHECKING:
    from types import ModuleType

    from deploy.report import Reporter
    from deploy.stage import Stage

AREAS_PACKAGE = "deploy.areas"


class AreaOrderError(ValueError):
    """The areas' AFTER declarations name an unknown area or go round in a cycle."""


def discover_areas() -> dict[str, ModuleType]:
    """Every module of deploy/areas/ that takes part in the stack: it has plan() and AFTER."""
    package = importlib.import_module(AREAS_PACKAGE)
    found = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{AREAS_PACKAGE}.{info.name}")
        if hasattr(module, "plan") and hasattr(module, "AFTER"):
            found[info.name] = module
    return found


def compute_waves(
    after: Mapping[str, Sequence[str]], slow: Collection[str] = ()
) -> tuple[tuple[str, ...], ...]:
    """Dependency waves from each area's AFTER: an area goes in the wave after the last of those
    it needs. The slow areas (the data stores, 10 to 40 minutes each on AWS) share the latest wave
    any of them gets, so they start together and are awaited together instead of one after
    another; whatever needs one of them moves later with it."""
    first = _earliest_levels(after)
    together = max((first[area] for area in slow), default=0)
    level: dict[str, int] = {}
    for area in sorted(after, key=lambda a: (first[a], a)):
        needed = 1 + max((level[dep] for dep in after[area]), default=-1)
        level[area] = max(needed, together) if area in slow else needed
    count = 1 + max(level.values(), default=-1)
    return tuple(tuple(sorted(a for a in level if level[a] == n)) for n in range(count))


def _earliest_levels(after: Mapping[str, Sequence[str]]) -> dict[str, int]:
    level: dict[str, int] = {}
    path: list[str] = []

    def visit(area: str) -> int:
        if area in level:
            return level[area]
        if area in path:
            cycle = [*path[path.index(area) :], area]
            raise AreaOrderError(f"cycle in the areas' AFTER declarations: {' -> '.join(cycle)}")
        path.append(area)
        for dep in after[area]:
            if dep not in after:
                raise AreaOrderError(f"area {area!r} declares AFTER {dep!r}, which is no area")
        level[area] = 1 + max((visit(dep) for dep in after[area]), default=-1)
        path.pop()
        return level[area]

    for area in sorted(after):
        visit(area)
    return level


_MODULES = discover_areas()
# area name -> module holding plan(stage) -> list[Resource]
AREAS: dict[str, str] = {name: module.__name__ for name, module in _MODULES.items()}
WAVES = compute_waves(
    {name: tuple(module.AFTER) for name, module in _MODULES.items()},
    slow={name for name, module in _MODULES.items() if getattr(module, "SLOW", False)},
)


def planner(area: str) -> Planner:
    return _MODULES[area].plan


def waves_of(names: Sequence[Sequence[str]]) -> list[Wave]:
    return [{area: planner(area) for area in wave} for wave in names]


def teardown_waves() -> list[Wave]:
    """`down`'s waves: the areas that declare `teardown(stage)`, in the reverse of `up`'s order, so
    what depends on a thing goes before it (alias records before their targets, triggers before
    their functions)."""
    found = [
        {area: _MODULES[area].teardown for area in wave if hasattr(_MODULES[area], "teardown")}
        for wave in reversed(WAVES)
    ]
    return [wave for wave in found if wave]


def converge_areas(
    stage: Stage, waves: Sequence[Sequence[str]], reporter: Reporter, *, dry_run: bool
) -> Outcome:
    """converge_waves over areas named (e.g. [("iam", "network"), ("rds",)])."""
    return converge_waves(stage, waves_of(waves), reporter, dry_run=dry_run)


def status_of(stage: Stage, areas: Sequence[str]) -> list:
    with stage.one_run():
        return read_areas(stage, waves_of([areas])[0])


def all_areas() -> tuple[str, ...]:
    return tuple(area for wave in WAVES for area in wave)


def finish_areas(stage: Stage) -> None:
    """What an area does once the whole stack has converged, when it declares `converged(stage)`
    (the eb area writes the eb CLI's config)."""
    for area in all_areas():
        finish = getattr(_MODULES[area], "converged", None)
        if finish is not None:
            finish(stage)


def secrets_rows(stage: Stage) -> list[dict[str, Any]]:
    from deploy.secrets import required_secret_rows

    return required_secret_rows(stage)


# -- tasks -------------------------------------------------------------------------------------


def by_hand(stage: Stage, outcome: Outcome) -> list[str]:
    """Everything the operator must still do by hand after `up`: drift no call repairs, what areas
    that declare `by_hand(stage)` leave to a person (DNS records at another provider, say), and
    required secrets not set."""
    items = manual_actions(outcome.resources)
    leaves = [left for area in all_areas() if (left := getattr(_MODULES[area], "by_hand", None)) is not None]
    # What each area leaves to a person, and the secrets: each reads on its own, side by side.
    reads = [*(partial(left, stage) for left in leaves), partial(secrets_rows, stage)]
    *per_area, rows = call_concurrently(*reads)
    for left in per_area:
        items.extend(left)
    for row in rows:
        if row["state"] == "missing":
            items.append(f"secret {row['name']} is not set: {row['detail']}")
    return items


@deploy_task()
def up(c, stage=None, dry_run=False, json=False):
    """Create or converge the whole stack, wave by wave. Example: inv up --stage local"""
    from deploy.report import Reporter
    from deploy.stage import open_stage

    target = open_stage(stage, dry_run=dry_run)
    reporter = Reporter(as_json=json)
    with target.one_run():
        outcome = converge_waves(target, waves_of(WAVES), reporter, dry_run=dry_run)
        if not dry_run:
            finish_areas(target)
        left = [] if dry_run else by_hand(target, outcome)
    reporter.outcome(
        outcome.resources, stage=target.name, dry_run=dry_run, calls=outcome.calls, extra={"by_hand": left}
    )
    reporter.by_hand(left)


@deploy_task()
def plan(c, stage=None, json=False):
    """Show what `up` would change; exit 0 when nothing, 3 when something, 4 when only the operator
    can act. Example: inv plan --stage prod"""
    outcome = run_converge(stage, waves_of(WAVES), dry_run=True, as_json=json)
    if outcome.exit_code:
        raise Exit(code=outcome.exit_code)


@deploy_task()
def status(c, stage=None, json=False):
    """Inventory every managed resource: present, missing or drifted; exit 0 when all is as config
    says, 3 when `up` would change something, 4 when only the operator can act. Example: inv status --json"""
    from deploy.report import Reporter
    from deploy.stage import open_stage

    target = open_stage(stage, dry_run=True)
    resources = status_of(target, all_areas())
    secrets = secrets_rows(target)
    Reporter(as_json=json).status(resources, rows=secrets)
    code = divergence_code(resources, missing_secrets=any(row["state"] == "missing" for row in secrets))
    if code:
        raise Exit(code=code)


@deploy_task(
    help={
        "yes": "do not ask for the stage name to be typed back",
        "prod": "required on the prod stage, with the confirmation",
    }
)
def down(c, stage=None, yes=False, prod=False, dry_run=False, json=False):
    """Remove the stage's compute and front end (the Beanstalk environment, the worker service and
    its instances, the functions and their triggers, the alias records pointing at them; the
    distributions when cdn.remove_on_down), in the reverse of `up`'s order. Data stores, buckets,
    queues, keys and secrets stay: `up` brings the stage back. Example: inv down --stage dev --dry-run"""
    from deploy.report import Reporter
    from deploy.secrets import confirm_destruction
    from deploy.stage import open_stage

    target = open_stage(stage, dry_run=dry_run)
    confirm_destruction(target, "remove compute and front end", yes=yes, prod=prod, dry_run=dry_run)
    reporter = Reporter(as_json=json)
    outcome = converge_waves(
        target,
        teardown_waves(),
        reporter,
        dry_run=dry_run,
        title="compute and front end",
        verbs=("would remove", "removing"),
        nothing="no compute or front end left for `down` to remove",
    )
    reporter.outcome(outcome.resources, stage=target.name, dry_run=dry_run, calls=outcome.calls)
