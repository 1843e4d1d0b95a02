"""The thin layer between Invoke and the library: shared options, error handling and exit codes."""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from invoke import Exit, task

from deploy.errors import ArgumentError, DeployError, from_botocore
from deploy.parallel import EXIT_INTERRUPTED, request_stop, wind_down

STAGE_HELP = (
    "stage to act on: config/<stage>.yaml (default: $DEPLOY_STAGE; without it a reading task "
    "reads dev and says so, a changing one refuses to guess)"
)
DRY_RUN_HELP = "print the plan and make no change"
JSON_HELP = "print JSON instead of tables"
SECRET_TASKS = "secrets."
VALUE_SOURCE = (
    "A secret's value comes from the hidden prompt or stdin, never an argument: "
    "inv secrets.set NAME --stage STAGE (or pipe it in)"
)
COMMON_HELP = {"stage": STAGE_HELP, "dry_run": DRY_RUN_HELP, "json": JSON_HELP}


def fail(error: DeployError) -> None:
    sys.stderr.write("".join(f"error: {line}\n" for line in error.lines()))
    sys.stderr.flush()
    raise Exit(code=error.exit_code)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Expected failures become one line on stderr and an exit code, never a traceback."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DeployError as exc:
            fail(exc)
        except KeyboardInterrupt:
            request_stop()
            sys.stderr.write("interrupted: rerun the same task to resume\n")
            sys.stderr.flush()
            wind_down()
            raise Exit(code=EXIT_INTERRUPTED) from None
        except Exception as exc:
            if type(exc).__module__.startswith(("botocore", "boto3")):
                fail(from_botocore(exc))
            raise

    return run


def named_stage(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The stage nobody named: with neither --stage nor DEPLOY_STAGE, a task that changes anything
    (it takes --dry-run, and is not on one) refuses to guess; a reading task reads the default stage
    and says so first. A task without --stage is left alone."""
    signature = inspect.signature(fn)
    if "stage" not in signature.parameters:
        return fn
    changes = "dry_run" in signature.parameters

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        if bound.arguments.get("stage") or os.environ.get("DEPLOY_STAGE"):
            return fn(*args, **kwargs)
        from deploy.config import DEFAULT_STAGE

        if changes and not bound.arguments.get("dry_run"):
            raise ArgumentError(
                "--stage",
                "this task changes AWS resources and will not guess the stage: name it with "
                "--stage NAME or DEPLOY_STAGE=NAME (--dry-run previews the default stage, "
                f"{DEFAULT_STAGE})",
            )
        sys.stderr.write(f"note: no --stage and no DEPLOY_STAGE: reading stage {DEFAULT_STAGE}\n")
        sys.stderr.flush()
        bound.arguments["stage"] = DEFAULT_STAGE
        return fn(*bound.args, **bound.kwargs)

    return run


def deploy_task(*, help: dict[str, str] | None = None, **kwargs: Any) -> Callable[..., Any]:
    """`@task` with the shared option help, the stage rule and the error handling above."""

    def decorate(fn: Callable[..., Any]) -> Any:
        params = inspect.signature(fn).parameters
        shared = {name: text for name, text in COMMON_HELP.items() if name in params}
        return task(guarded(named_stage(fn)), help={**shared, **(help or {})}, **kwargs)

    return decorate


def exit_2_on_bad_arguments() -> None:
    """Make Invoke's argument errors (unknown task or flag, missing positional) exit 2 as the CLI
    contract says; Invoke itself exits 1 for them. It parses task arguments after loading
    tasks.py, so wrapping the running program's parse step here is early enough."""
    from invoke import ParseError
    from invoke.main import program

    original = program.parse_tasks
    if getattr(original, "exits_2", False):
        return

    def parse_tasks() -> None:
        try:
            original()
        except ParseError as exc:
            raise Exit(f"error: {unechoed(exc)}", code=2) from None

    parse_tasks.exits_2 = True  # type: ignore[attr-defined]
    program.parse_tasks = parse_tasks  # type: ignore[method-assign]


def unechoed(error: Exception) -> str:
    """Invoke's parse error, except that an unexpected argument of a secrets task is never shown:
    it is most likely the secret's value, typed where the name or a flag was expected."""
    context = getattr(error, "context", None)
    task_name = getattr(context, "name", None) or ""
    if task_name.startswith(SECRET_TASKS) and str(error).startswith("No idea what"):
        return f"{task_name}: unexpected argument (not shown: it may be a secret value). {VALUE_SOURCE}"
    return str(error)


def area_tasks(area: str, what: str, planner: Callable[[Any], list[Any]]) -> tuple[Any, Any]:
    """The `create` and `status` tasks every area has, for `what` (e.g. "the six topics"), over
    the area's planner."""

    def create(c, stage=None, dry_run=False, json=False):
        from deploy.execute import run_converge

        run_converge(stage, [{area: planner}], dry_run=dry_run, as_json=json)

    def status(c, stage=None, json=False):
        from deploy.execute import run_status

        run_status(stage, {area: planner}, as_json=json)

    create.__doc__ = f"Create or converge {what}. Example: inv {area}.create --stage dev --dry-run"
    status.__doc__ = f"Show {what}: present, missing, drifted or pending. Example: inv {area}.status --json"
    return deploy_task()(create), deploy_task()(status)
