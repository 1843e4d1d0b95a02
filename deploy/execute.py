"""Running plans: the real and the dry-run executor over the same steps, and the convergence of
areas wave by wave that `up`, `plan` and every `<area>.create` share. It knows no area by name:
callers hand it each area's planner."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_all
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deploy.errors import (
    EXIT_ACTION_NEEDED,
    EXIT_CHANGES_PENDING,
    EXIT_OK,
    AwsError,
    WaitTimeout,
    error_code,
)
from deploy.parallel import check_stop, map_concurrently, max_workers, pause, request_stop
from deploy.plan import Call, Check, Resource, Step, Wait, dependency_levels, resolve_deferred

if TYPE_CHECKING:
    from deploy.report import Reporter
    from deploy.stage import Stage

# Resources converged at once inside a wave: enough to hide API latency, few enough to stay
# clear of AWS request-rate limits.
MAX_CONCURRENT_RESOURCES = 8
# The first pause of a wait; each next one doubles, up to waits.poll_seconds.
FIRST_POLL_SECONDS = 0.25

Planner = Callable[["Stage"], list[Resource]]
# One wave: area name -> its planner. Areas in a wave are independent and converge side by side.
Wave = Mapping[str, Planner]


@dataclass
class Executor:
    """Runs steps in order against AWS, reporting each."""

    stage: Stage
    reporter: Reporter
    made: list[Call] = field(default_factory=list)

    def run(self, steps: Sequence[Step]) -> None:
        for step in steps:
            check_stop()
            if isinstance(step, Check):
                self.stage.forget_reads()
                state = step.probe(self.stage)
                if state not in step.ready:
                    self.reporter.deferred(step, state)
                    return
            elif isinstance(step, Call):
                self.call(step)
            else:
                self.wait(step)

    def call(self, call: Call) -> Any:
        from botocore import xform_name

        client = self.stage.client(call.service)
        self.reporter.step_started(call)
        params = resolve_deferred(call.params, self.stage)
        send = getattr(client, xform_name(call.operation))
        result = self._send(call, lambda: send(**params))
        self.made.append(call)
        return result

    def _send(self, call: Call, send: Callable[[], Any]) -> Any:
        """Send once, or, for the call's retry codes, again with growing pauses until the stage's
        wait timeout: botocore retries throttling and server errors, not these. An error among
        the call's done codes means its work is already done."""
        from botocore.exceptions import ClientError

        limit = self.stage.config.waits.timeout_seconds
        started, delay = time.monotonic(), 0.5
        while True:
            try:
                return send()
            except ClientError as exc:
                code = error_code(exc)
                if code in call.done_codes:
                    return None
                if code not in call.retry_codes or time.monotonic() - started + delay > limit:
                    raise
                self.reporter.retrying(call, code, delay)
                pause(delay)
                delay = min(delay * 2, 30.0)

    def wait(self, wait: Wait) -> None:
        """Poll until ready: soon at first (many changes are ready within seconds), then every
        waits.poll_seconds, so an hour-long wait makes no more requests than before."""
        limit = wait.timeout_seconds or self.stage.config.waits.timeout_seconds
        poll = min(FIRST_POLL_SECONDS, self.stage.config.waits.poll_seconds)
        started = time.monotonic()
        with self.reporter.waiting(wait.resource) as progress:
            while True:
                self.stage.forget_reads()
                state = wait.probe(self.stage)
                elapsed = time.monotonic() - started
                progress(state, elapsed)
                if state in wait.ready:
                    return
                if state in wait.failed:
                    raise AwsError(
                        "ResourceFailed",
                        f"{wait.resource} went to state {state}",
                        "Inspect it in the console or with the area's status task, fix, and rerun.",
                    )
                if elapsed >= limit:
                    raise WaitTimeout(wait.resource, state, elapsed)
                pause(min(poll, max(0.0, limit - elapsed)))
                poll = min(poll * 2, self.stage.config.waits.poll_seconds)


@dataclass
class DryRunExecutor(Executor):
    """Shows the same steps and calls nothing."""

    def run(self, steps: Sequence[Step]) -> None:
        for step in steps:
            self.reporter.step_planned(step)


@dataclass
class Outcome:
    stage: Stage
    resources: list[Resource]
    calls: int

    @property
    def changed(self) -> bool:
        """Whether any call would be made (a resource only still creating is no change)."""
        return any(resource.calls for resource in self.resources)

    @property
    def exit_code(self) -> int:
        """plan's exit code: 3 when `up` would change something, else 4 when something needs the
        operator, else 0."""
        return divergence_code(self.resources)


def divergence_code(resources: Sequence[Resource], *, missing_secrets: bool = False) -> int:
    """3 when something is missing or drifted that `up` repairs; else 4 when something needs the
    operator (drift no call repairs, a required secret not set); else 0 (a resource still
    creating is on its way, no divergence)."""
    if any(r.calls or r.state == "missing" for r in resources):
        return EXIT_CHANGES_PENDING
    if missing_secrets or any(r.manual for r in resources):
        return EXIT_ACTION_NEEDED
    return EXIT_OK


def manual_actions(resources: Sequence[Resource]) -> list[str]:
    """Each thing the operator must do by hand, named with its resource."""
    return [f"{r.area} {r.name}: {reason}" for r in resources for reason in r.manual]


def read_areas(stage: Stage, wave: Wave) -> list[Resource]:
    """Every area's planner, side by side: what exists and what would change (reads only)."""
    per_area = map_concurrently(lambda planner: planner(stage), list(wave.values()))
    return [resource for resources in per_area for resource in resources]


def converge_waves(
    stage: Stage,
    waves: Sequence[Wave],
    reporter: Reporter,
    *,
    dry_run: bool,
    title: str | None = None,
    verbs: tuple[str, str] = ("would change", "changing"),
    nothing: str | None = None,
) -> Outcome:
    """Wave by wave: read, show what will change, then run it (or, on a dry run, only show it).
    A wave starts when the one before it is done, because it reads what that made (ARNs,
    endpoints). `title` names what changes in the plan table (default: the wave's areas); `verbs`
    say what happens to it (on a dry run, for real), `nothing` what is said when nothing does."""
    with stage.one_run():
        return _converge_waves(
            stage, waves, reporter, dry_run=dry_run, title=title, verbs=verbs, nothing=nothing
        )


def _converge_waves(
    stage: Stage,
    waves: Sequence[Wave],
    reporter: Reporter,
    *,
    dry_run: bool,
    title: str | None,
    verbs: tuple[str, str],
    nothing: str | None,
) -> Outcome:
    executor_type = DryRunExecutor if dry_run else Executor
    everything: list[Resource] = []
    calls = 0
    ahead = ReadAhead(stage, waves)
    try:
        for index, wave in enumerate(waves):
            resources = ahead.take(index)
            if resources is None:
                resources = read_areas(stage, wave)
            everything.extend(resources)
            changing = [r for r in resources if r.steps]
            if changing:
                verb = verbs[0] if dry_run else verbs[1]
                # Only the areas with something to change: the others of the wave match config.
                what = title or ", ".join(dict.fromkeys(r.area for r in changing))
                reporter.plan(changing, title=f"{stage.name}: {verb} {what}")
                calls += execute_resources(stage, changing, reporter, executor_type)
            ahead.read_after(index)
    finally:
        ahead.close()
    if not any(r.steps for r in everything):
        reporter.plan([], title=f"{stage.name}", **({"nothing": nothing} if nothing else {}))
    return Outcome(stage, everything, calls)


class ReadAhead:
    """The later waves, read while nothing has changed: on a stage that is already as config
    says (the everyday `up`, every `plan`), every wave after the first is read side by side
    instead of one after another, which takes the run from the sum of the waves' read times to
    little more than the slowest one's.

    A wave reads what the waves before it made, so what was read ahead is used only when no
    change was made since (the stage's read generation moves on with every mutating call and
    every wait); otherwise the wave is read again at its turn, and the early reads cost only
    their requests. A planner that failed ahead is also read again, so its error is raised in
    order, as without the read-ahead. With DEPLOY_MAX_WORKERS=1 nothing is read ahead."""

    def __init__(self, stage: Stage, waves: Sequence[Wave]) -> None:
        self.stage = stage
        self.waves = waves
        self.pending: dict[int, tuple[int, list[Future[list[Resource]]]]] = {}
        self.pool: ThreadPoolExecutor | None = None
        self.seen = stage.read_generation

    def read_after(self, index: int) -> None:
        """Wave `index` is done: when it changed nothing, start reading every later wave not
        already being read since the last change. When it changed something, the next wave is
        read at its turn, as are all on a new stage: nothing is read twice there."""
        generation = self.stage.read_generation
        if generation != self.seen:
            self.seen = generation
            return
        later = [
            k for k in range(index + 1, len(self.waves)) if self.pending.get(k, (None,))[0] != generation
        ]
        if not later or max_workers() <= 1:
            return
        if self.pool is None:
            areas = sum(len(self.waves[k]) for k in later)
            self.pool = ThreadPoolExecutor(max_workers=min(areas, max_workers()), thread_name_prefix="ahead")
        for k in later:
            futures = [self.pool.submit(planner, self.stage) for planner in self.waves[k].values()]
            self.pending[k] = (generation, futures)

    def take(self, index: int) -> list[Resource] | None:
        """Wave `index` as read ahead, or None when it must be read now (not read ahead, read
        before a change, or a planner failed)."""
        generation, futures = self.pending.pop(index, (None, []))
        if not futures:
            return None
        try:
            wait_for_all(futures)
        except KeyboardInterrupt:
            request_stop()
            raise
        if generation != self.stage.read_generation or any(f.exception() for f in futures):
            return None
        return [resource for future in futures for resource in future.result()]

    def close(self) -> None:
        """Drop what is still queued; what is in flight ends on its own (reads only)."""
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def execute_resources(
    stage: Stage,
    resources: Sequence[Resource],
    reporter: Reporter,
    executor_type: type[Executor] = Executor,
) -> int:
    """Run each resource's steps in order, independent resources side by side: a resource starts
    as soon as those it depends on are done, not when a whole level is (an RDS instance does not
    wait for a Redshift cluster it does not need). Returns the number of calls made."""
    # Dependencies first: a resource is taken from the pool's queue only after every resource it
    # waits for, so those run (or ran) in other threads and the waiting never deadlocks.
    ordered = [resource for level in dependency_levels(resources) for resource in level]
    finished = {(r.area, r.name): threading.Event() for r in ordered}
    failed: set[tuple[str, str]] = set()

    def run(resource: Resource) -> int:
        key = (resource.area, resource.name)
        try:
            for name in resource.depends_on:
                needed = finished.get((resource.area, name))
                while needed is not None and not needed.wait(0.05):
                    check_stop()
                if (resource.area, name) in failed:
                    raise DependencyFailed(f"{resource.area} {resource.name}: {name} failed")
            executor = executor_type(stage, reporter)
            executor.run(resource.steps)
            return len(executor.made)
        except BaseException:
            failed.add(key)
            raise
        finally:
            finished[key].set()

    return sum(map_concurrently(run, ordered, workers=MAX_CONCURRENT_RESOURCES))


class DependencyFailed(Exception):
    """A resource was not started because one it depends on failed (that failure is reported)."""


def run_converge(
    stage_name: str | None,
    waves: Sequence[Wave],
    *,
    dry_run: bool,
    as_json: bool,
    title: str | None = None,
) -> Outcome:
    """What `up`, `plan` and every `<area>.create` do: open the stage, converge, report."""
    from deploy.report import Reporter
    from deploy.stage import open_stage

    stage = open_stage(stage_name, dry_run=dry_run)
    reporter = Reporter(as_json=as_json)
    outcome = converge_waves(stage, waves, reporter, dry_run=dry_run, title=title)
    manual = manual_actions(outcome.resources)
    reporter.manual(manual)
    reporter.outcome(
        outcome.resources, stage=stage.name, dry_run=dry_run, calls=outcome.calls, extra={"by_hand": manual}
    )
    return outcome


def run_status(stage_name: str | None, wave: Wave, *, as_json: bool) -> list[Resource]:
    """What every `<area>.status` does: read only, then one table."""
    from deploy.report import Reporter
    from deploy.stage import open_stage

    stage = open_stage(stage_name, dry_run=True)
    resources = read_areas(stage, wave)
    Reporter(as_json=as_json).status(resources)
    return resources
