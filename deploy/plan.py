"""Plans as data: the steps (calls and waits) that would make a resource match config."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from deploy.stage import Stage

REDACTED = "********"


@dataclass(frozen=True)
class Deferred:
    """A parameter only known when the call runs: the id of a security group made earlier in the
    same run, say. `resolve` reads it (read-only calls); a dry run shows the description."""

    description: str
    resolve: Callable[[Stage], Any] = field(compare=False)

    def __str__(self) -> str:
        return f"<{self.description}>"


def resolve_deferred(value: Any, stage: Stage) -> Any:
    if isinstance(value, Deferred):
        return value.resolve(stage)
    if isinstance(value, Mapping):
        return {key: resolve_deferred(item, stage) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [resolve_deferred(item, stage) for item in value]
    return value


def _shown(value: Any) -> Any:
    if isinstance(value, Deferred):
        return str(value)
    if isinstance(value, Mapping):
        return {key: _shown(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_shown(item) for item in value]
    return value


def _redact(params: dict[str, Any], path: list[str]) -> None:
    head, rest = path[0], path[1:]
    if head not in params:
        return
    if rest and isinstance(params[head], dict):
        _redact(params[head], rest)
    elif not rest:
        params[head] = REDACTED


def shown_value(value: Any) -> str:
    """A value as a drift reason shows it: plain text as is, structures as compact JSON."""
    import json

    if value is None or value == "":
        return "not set"
    if isinstance(value, Deferred):
        return str(value)
    if isinstance(value, Mapping | list | tuple | bool):
        return json.dumps(_shown(value), sort_keys=True, separators=(",", ":"), default=str)
    return str(value)


def differs(name: str, actual: Any, wanted: Any) -> str:
    """A drift reason with both values: "VisibilityTimeout is 30, config says 900"."""
    return f"{name} is {shown_value(actual)}, config says {shown_value(wanted)}"


def differences(pairs: Mapping[str, tuple[Any, Any]]) -> str:
    """Several drift reasons in one (name -> (actual, wanted)), in the order given."""
    return "; ".join(differs(name, actual, wanted) for name, (actual, wanted) in pairs.items())


def tag_drift(have: Mapping[str, str] | None, want: Mapping[str, str]) -> str:
    """The reason of a tagging call, naming each tag that differs: "tags differ from config:
    tag Stage is not set, config says dev"."""
    have = have or {}
    wrong = {
        f"tag {key}": (have.get(key), value) for key, value in sorted(want.items()) if have.get(key) != value
    }
    return f"tags differ from config: {differences(wrong)}" if wrong else "tags differ from config"


@dataclass(frozen=True)
class Call:
    """One AWS API call the plan wants to make, and why."""

    service: str
    operation: str
    params: Mapping[str, Any]
    resource: str
    reason: str
    sensitive: tuple[str, ...] = ()
    # AWS error codes that mean "not yet, try again shortly" for this call (and that botocore's
    # retries do not cover): the executor retries them until the stage's wait timeout.
    retry_codes: tuple[str, ...] = ()
    # AWS error codes that mean the call's work is already done (a create that lost a race).
    done_codes: tuple[str, ...] = ()

    def shown_params(self) -> dict[str, Any]:
        """The parameters fit to print: every `sensitive` one (a key, or a dotted path into nested
        parameters such as "RedshiftDestinationConfiguration.Password") replaced by REDACTED."""
        shown = _shown(self.params)
        for path in self.sensitive:
            _redact(shown, path.split("."))
        return shown

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "call",
            "service": self.service,
            "operation": self.operation,
            "resource": self.resource,
            "reason": self.reason,
            "params": self.shown_params(),
        }


@dataclass(frozen=True)
class Wait:
    """Poll until a resource reaches a ready state; `probe` reads its current state (read-only)."""

    resource: str
    reason: str
    probe: Callable[[Stage], str]
    ready: frozenset[str]
    failed: frozenset[str] = frozenset()
    timeout_seconds: float | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "wait",
            "resource": self.resource,
            "reason": self.reason,
            "until": sorted(self.ready),
        }


@dataclass(frozen=True)
class Check:
    """Go on with the resource's later steps only if `probe` (read-only) finds a ready state now;
    otherwise leave them for a later run, which is no failure. For what AWS finishes on its own
    schedule: an SES identity is verified minutes to hours after its DNS record exists."""

    resource: str
    reason: str
    probe: Callable[[Stage], str]
    ready: frozenset[str]

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "check",
            "resource": self.resource,
            "reason": self.reason,
            "until": sorted(self.ready),
        }


Step = Call | Wait | Check
# pending: it exists and matches config, but is still on its way (creating, modifying): only waits.
State = Literal["present", "missing", "drifted", "pending"]


@dataclass(frozen=True)
class Resource:
    """What one managed resource looks like now, and the steps that would make it match config."""

    area: str
    kind: str
    name: str
    state: State
    steps: tuple[Step, ...] = ()
    drift: tuple[str, ...] = ()
    detail: str = ""
    # Names of resources (same area) whose steps must finish before this one's start.
    depends_on: tuple[str, ...] = ()

    @property
    def calls(self) -> list[Call]:
        return [step for step in self.steps if isinstance(step, Call)]

    @property
    def manual(self) -> list[str]:
        """Drift no step of this resource repairs (an unencrypted instance, a NAT gateway no longer
        used): what the operator must do by hand, since `up` cannot."""
        if self.state != "drifted":
            return []
        repaired = {step.reason for step in self.steps}
        return [reason for reason in self.drift if reason not in repaired]

    def row(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "kind": self.kind,
            "name": self.name,
            "state": self.state,
            "drift": list(self.drift),
            "detail": self.detail,
        }


def converge(
    area: str,
    kind: str,
    name: str,
    steps: Sequence[Step],
    *,
    exists: bool,
    detail: str = "",
    depends_on: Sequence[str] = (),
) -> Resource:
    """Build the Resource for an existing or missing thing from the steps its planner found."""
    after = tuple(depends_on)
    if not exists:
        return Resource(area, kind, name, "missing", tuple(steps), ("does not exist",), detail, after)
    drift = tuple(dict.fromkeys(s.reason for s in steps if isinstance(s, Call)))
    if not steps:
        state: State = "present"
    elif drift:
        state = "drifted"
    else:
        state = "pending"
        drift = tuple(s.reason for s in steps)
    return Resource(area, kind, name, state, tuple(steps), drift, detail, after)


def removal(
    area: str,
    kind: str,
    name: str,
    steps: Sequence[Step],
    *,
    detail: str = "",
    depends_on: Sequence[str] = (),
) -> Resource:
    """What `down` does to one resource that exists: the steps that remove it (or detach it), from
    an area's `teardown(stage)` planner. A resource with nothing left to remove has no steps."""
    reasons = tuple(dict.fromkeys(s.reason for s in steps if isinstance(s, Call)))
    return Resource(area, kind, name, "present", tuple(steps), reasons, detail, tuple(depends_on))


def dependency_levels(resources: Sequence[Resource]) -> list[list[Resource]]:
    """Group resources so each group depends only on earlier groups (dependencies on resources
    not in the list are already satisfied). Order inside a group follows the input."""
    pending = list(resources)
    done: set[tuple[str, str]] = set()
    waiting_for = {(r.area, r.name) for r in pending}
    levels: list[list[Resource]] = []
    while pending:
        ready = [
            r
            for r in pending
            if all((r.area, d) in done or (r.area, d) not in waiting_for for d in r.depends_on)
        ]
        if not ready:
            cycle = ", ".join(f"{r.area}:{r.name}" for r in pending)
            raise ValueError(f"dependency cycle among {cycle}")
        levels.append(ready)
        done.update((r.area, r.name) for r in ready)
        pending = [r for r in pending if (r.area, r.name) not in done]
    return levels
