"""Human output through rich (tables, wait progress) and machine output as --json."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from deploy.plan import Call, Check, Resource, Step, Wait

NOTHING_FOR_UP = "no changes for `up` to make"
STATE_STYLE = {"present": "green", "missing": "red", "drifted": "yellow", "pending": "cyan"}


class Reporter:
    """One per task run. Tables and JSON go to stdout; progress lines to stderr."""

    def __init__(self, *, as_json: bool = False, out: Console | None = None) -> None:
        self.as_json = as_json
        # No emoji codes: output is names and ARNs, where `:name:` is never meant as a smiley (and
        # the emoji table alone takes 40 ms to load).
        self.out = out or Console(highlight=False, emoji=False, width=_width(sys.stdout))
        self.err = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)
        self._lock = threading.Lock()
        self._waits: dict[str, tuple[str, float]] = {}
        self._live: Live | None = None

    # -- steps ---------------------------------------------------------------------------------
    def step_started(self, call: Call) -> None:
        if not self.as_json:
            self.err.print(f"[cyan]→[/] {call.service} {call.operation} [bold]{call.resource}[/]")

    def deferred(self, check: Check, state: str) -> None:
        """A Check found its resource not ready: the steps after it wait for a later run."""
        if not self.as_json:
            self.err.print(f"  {check.resource}: {state}, {check.reason}: left for a later run")

    def retrying(self, call: Call, code: str, pause: float) -> None:
        if not self.as_json:
            self.err.print(f"  {call.resource}: {call.operation} answered {code}, again in {pause:g}s")

    def step_planned(self, step: Step) -> None:
        """The dry-run executor reports here; the plan table was already printed."""

    # -- waits ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def waiting(self, resource: str) -> Iterator[Callable[[str, float], None]]:
        """Yield progress(state, elapsed). Concurrent waits share one live view on a terminal;
        elsewhere each change of state prints one line."""
        last: list[str] = []

        def progress(state: str, elapsed: float) -> None:
            with self._lock:
                self._waits[resource] = (state, elapsed)
                if self._live is not None:
                    self._live.update(self._wait_table())
                elif not last or last[-1] != state:
                    self.err.print(f"  waiting for {resource}: {state} ({elapsed:.0f}s)")
            last.append(state)

        with self._lock:
            if self._live is None and self.err.is_terminal and not self.as_json:
                self._live = Live(self._wait_table(), console=self.err, refresh_per_second=4)
                self._live.start()
        started = time.monotonic()
        try:
            yield progress
        finally:
            with self._lock:
                state, _ = self._waits.pop(resource, ("done", 0.0))
                elapsed = time.monotonic() - started
                if self._live is not None and not self._waits:
                    self._live.stop()
                    self._live = None
                if not self.as_json:
                    self.err.print(f"  {resource}: {state} after {elapsed:.0f}s")

    def _wait_table(self) -> Table:
        table = Table.grid(padding=(0, 2))
        for resource, (state, elapsed) in sorted(self._waits.items()):
            table.add_row("[cyan]⠿[/]", resource, state, f"{elapsed:.0f}s")
        return table

    # -- reports -------------------------------------------------------------------------------
    def plan(self, resources: Sequence[Resource], *, title: str, nothing: str = NOTHING_FOR_UP) -> None:
        changing = [r for r in resources if r.steps]
        if self.as_json:
            return
        if not changing:
            self.out.print(f"{title}: {nothing}.")
            return
        table = Table(title=title, title_justify="left")
        for column in ("area", "resource", "change", "why"):
            table.add_column(column, overflow="fold")
        for resource in changing:
            for step in resource.steps:
                table.add_row(resource.area, resource.name, _change(step), step.reason)
        self.out.print(table)
        calls = sum(isinstance(s, Call) for r in changing for s in r.steps)
        self.out.print(f"{len(changing)} resource(s) to change, {calls} call(s).")

    def manual(self, actions: Sequence[str]) -> None:
        """Drift `up` cannot repair: listed after the plan, so plan never claims all is well."""
        if self.as_json or not actions:
            return
        self.out.print("[yellow]needs you[/] (`up` cannot do these):")
        for action in actions:
            self.out.print(f"  - {action}", markup=False, highlight=False, soft_wrap=True)

    def by_hand(self, items: Sequence[str]) -> None:
        """The closing list of what the operator must still do by hand; an item's later lines
        (records to paste) are indented under it."""
        if self.as_json or not items:
            return
        self.out.print("[bold]left for you to do:[/]")
        for number, item in enumerate(items, start=1):
            first, *more = item.split("\n")
            self.out.print(f"  {number}. {first}", markup=False, highlight=False, soft_wrap=True)
            for line in more:
                self.out.print(f"     {line}", markup=False, highlight=False, soft_wrap=True)

    def outcome(
        self,
        resources: Sequence[Resource],
        *,
        stage: str,
        dry_run: bool,
        calls: int,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """The closing summary of up / plan / <area>.create: JSON (with `extra` keys), or one line."""
        changing = [r for r in resources if r.steps]
        if self.as_json:
            self.json(
                {
                    "stage": stage,
                    "dry_run": dry_run,
                    "changes": [_plan_entry(r) for r in changing],
                    "calls_made": calls,
                    "resources": len(resources),
                    **(extra or {}),
                }
            )
        elif changing and not dry_run:
            self.out.print(f"[green]done:[/] {calls} call(s) made on {len(changing)} resource(s).")

    def status(
        self,
        resources: Sequence[Resource],
        rows: Sequence[dict[str, Any]] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """The inventory table; `rows` are more rows, `extra` more keys of the JSON document."""
        rows = [r.row() for r in resources] + list(rows)
        if self.as_json:
            self.json({"resources": rows, **(extra or {})})
            return
        table = Table(title="status", title_justify="left")
        # Names, ARNs and endpoints are folded onto more lines, never cut: an operator copies them.
        for column in ("area", "kind", "name", "state", "detail"):
            table.add_column(column, overflow="fold")
        for row in rows:
            style = STATE_STYLE.get(row["state"], "")
            detail = row["detail"] or "; ".join(row.get("drift", []))
            if row["state"] in ("drifted", "pending"):
                detail = "; ".join(row["drift"])
            state = f"[{style}]{row['state']}[/]" if style else row["state"]
            table.add_row(row["area"], row["kind"], row["name"], state, detail)
        self.out.print(table)

    def message(self, text: str) -> None:
        if not self.as_json:
            self.out.print(text)

    def warn(self, text: str) -> None:
        self.err.print(f"[yellow]warning:[/] {text}")

    def json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, indent=2, default=str, sort_keys=True) + "\n")
        sys.stdout.flush()


def _width(stream: Any) -> int | None:
    """Rich wraps tables at 80 columns when not on a terminal; logs and pipes read better wide."""
    if stream.isatty():
        return None
    return int(os.environ.get("COLUMNS") or 160)


def _change(step: Step) -> str:
    if isinstance(step, Wait):
        return f"wait until {'/'.join(sorted(step.ready))}"
    if isinstance(step, Check):
        return f"only if {'/'.join(sorted(step.ready))}"
    return f"{step.service}:{step.operation}"


def _plan_entry(resource: Resource) -> dict[str, Any]:
    return {**resource.row(), "steps": [step.describe() for step in resource.steps]}
