"""Secrets: SecureString parameters under /iotile-cloud/{stage}/NAME, and get_secret() for Django.

A value only ever travels between Parameter Store and a hidden prompt, stdin, a .env file being
imported, or the process that asked for it: never an argument, a log line or a rendered file."""

from __future__ import annotations

import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.cli import deploy_task
from deploy.errors import ArgumentError, BadInput, SecretNotFound

if TYPE_CHECKING:
    from deploy.plan import Call, Deferred
    from deploy.stage import Stage

AREA = "secrets"
MASK = "********"
ENV_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*)$")


@dataclass(frozen=True)
class SecretInfo:
    name: str
    parameter: str
    version: int
    modified: str
    type: str


def check_name(name: str) -> str:
    from deploy.names import check_secret_name

    try:
        return check_secret_name(name)
    except ValueError as exc:
        raise ArgumentError("NAME", str(exc)) from None


def parameter_name(stage: Stage, name: str) -> str:
    return f"{stage.config.secrets.prefix}/{check_name(name)}"


def _current_value(stage: Stage, parameter: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        result = stage.client("ssm").get_parameter(Name=parameter, WithDecryption=True)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
            return None
        raise
    return result["Parameter"]["Value"]


def put_secret(stage: Stage, name: str, value: str, *, dry_run: bool = False) -> str:
    """Store a value; returns 'created', 'updated' or 'unchanged'. Writes nothing when unchanged."""
    if not value:
        raise ArgumentError(name, "empty value: nothing stored")
    parameter = parameter_name(stage, name)
    current = _current_value(stage, parameter)
    if current == value:
        return "unchanged"
    outcome = "created" if current is None else "updated"
    if dry_run:
        return outcome
    params: dict[str, Any] = {
        "Name": parameter,
        "Value": value,
        "Type": "SecureString",
        "KeyId": stage.config.secrets.kms_key,
    }
    ssm = stage.client("ssm")
    if current is None:
        ssm.put_parameter(**params, Tags=stage.tag_list(stage.tags()))
    else:
        ssm.put_parameter(**params, Overwrite=True)
    return outcome


def generate_password(length: int) -> str:
    """Letters and digits only (every data store accepts them), with at least one of each kind."""
    import secrets as random
    import string

    alphabet = string.ascii_letters + string.digits
    while True:
        value = "".join(random.choice(alphabet) for _ in range(length))
        if (
            any(c.islower() for c in value)
            and any(c.isupper() for c in value)
            and any(c.isdigit() for c in value)
        ):
            return value


def secret_exists(stage: Stage, name: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        stage.client("ssm").get_parameter(Name=parameter_name(stage, name), WithDecryption=False)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
            return False
        raise
    return True


def generated_secret(
    stage: Stage, name: str, resource: str, *, length: int = 40
) -> tuple[list[Call], Deferred]:
    """For a resource about to be created with a password: the step that stores a new random value
    under NAME when there is none yet (a rerun reuses the one stored), and a Deferred that reads it
    when the create call runs. Mark the parameter that takes it sensitive in that call. The value
    is never printed: the step's Value is redacted in every plan and report."""
    from deploy.plan import Call, Deferred

    parameter = parameter_name(stage, name)
    steps = []
    if not secret_exists(stage, name):
        params = {
            "Name": parameter,
            "Value": generate_password(length),
            "Type": "SecureString",
            "KeyId": stage.config.secrets.kms_key,
            "Tags": stage.tag_list(stage.tags()),
        }
        reason = f"generate {name} into Parameter Store"
        steps.append(Call("ssm", "PutParameter", params, resource, reason, sensitive=("Value",)))
    value = Deferred(f"{name} from Parameter Store", lambda st: _current_value(st, parameter))
    return steps, value


def read_secret(stage: Stage, name: str) -> tuple[SecretInfo, str]:
    from botocore.exceptions import ClientError

    parameter = parameter_name(stage, name)
    try:
        found = stage.client("ssm").get_parameter(Name=parameter, WithDecryption=True)["Parameter"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
            raise SecretNotFound(
                f"secret {name} is not set for stage {stage.name} (no parameter {parameter}): "
                f"set it with `inv secrets.set {name} --stage {stage.name}`"
            ) from None
        raise
    return _info(stage, found), found["Value"]


def _info(stage: Stage, parameter: dict[str, Any]) -> SecretInfo:
    prefix = stage.config.secrets.prefix + "/"
    return SecretInfo(
        name=parameter["Name"].removeprefix(prefix),
        parameter=parameter["Name"],
        version=int(parameter.get("Version", 0)),
        modified=str(parameter.get("LastModifiedDate", "")),
        type=parameter.get("Type", ""),
    )


def list_secrets(stage: Stage) -> list[SecretInfo]:
    """Names and versions only: values are not even decrypted."""
    ssm = stage.client("ssm")
    pages = ssm.get_paginator("get_parameters_by_path").paginate(
        Path=stage.config.secrets.prefix, Recursive=True, WithDecryption=False
    )
    found = [_info(stage, p) for page in pages for p in page.get("Parameters", [])]
    return sorted(found, key=lambda info: info.name)


def delete_secret(stage: Stage, name: str) -> None:
    read_secret(stage, name)  # a clear "not set" error instead of a bare ParameterNotFound
    stage.client("ssm").delete_parameter(Name=parameter_name(stage, name))


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; `#` comments, blank lines, `export ` and matching quotes allowed."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror}") from None
    values: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = ENV_LINE.match(stripped)
        if not match:
            raise BadInput(f"{path}:{number}: expected KEY=VALUE")
        key, value = match.group(1), match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        try:
            check_name(key)
        except ArgumentError as exc:
            raise BadInput(f"{path}:{number}: {exc}") from None
        if not value:
            raise BadInput(f"{path}:{number}: {key} has an empty value")
        values[key] = value
    return values


def required_secret_rows(stage: Stage) -> list[dict[str, Any]]:
    """Status rows for the secrets the stage needs (names from config, values never read)."""
    present = {info.name for info in list_secrets(stage)}
    return [
        {
            "area": AREA,
            "kind": "secret",
            "name": name,
            "state": "present" if name in present else "missing",
            "drift": [],
            "detail": parameter_name(stage, name)
            if name in present
            else f"inv secrets.set {name} --stage {stage.name}",
        }
        for name in stage.config.secrets.required
    ]


# -- for the Django settings -------------------------------------------------------------------

_cache: dict[tuple[str, str], str] = {}
_cache_lock = threading.Lock()


def get_secret(name: str) -> str:
    """A secret for the running app. In development (IOTILE_STAGE unset) it is the environment
    variable NAME; on a deployed stage it is /iotile-cloud/<IOTILE_STAGE>/NAME from Parameter
    Store (prefix overridable by IOTILE_SECRETS_PREFIX), read once per process."""
    stage = os.environ.get("IOTILE_STAGE")
    if not stage:
        value = os.environ.get(name)
        if value is None:
            raise SecretNotFound(
                f"secret {name}: environment variable {name} is not set "
                "(development reads secrets from the environment; set IOTILE_STAGE to read "
                "Parameter Store)"
            )
        return value
    prefix = os.environ.get("IOTILE_SECRETS_PREFIX") or f"/iotile-cloud/{stage}"
    parameter = f"{prefix}/{name}"
    with _cache_lock:
        if (stage, parameter) not in _cache:
            _cache[(stage, parameter)] = _fetch_parameter(parameter, name)
        return _cache[(stage, parameter)]


def _fetch_parameter(parameter: str, name: str) -> str:
    import boto3
    from botocore.exceptions import ClientError

    try:
        found = boto3.client("ssm").get_parameter(Name=parameter, WithDecryption=True)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
            raise SecretNotFound(f"secret {name}: SSM parameter {parameter} not found") from None
        raise
    return found["Parameter"]["Value"]


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


# -- tasks -------------------------------------------------------------------------------------


def read_value_from_user(name: str) -> str:
    """A hidden prompt on a terminal; otherwise the whole of stdin (one trailing newline dropped)."""
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"value for {name} (hidden): ")
    data = sys.stdin.read() if sys.stdin is not None else ""
    return data[:-1] if data.endswith("\n") else data


def _confirm(stage: Stage, what: str, yes: bool) -> None:
    if yes:
        return
    if sys.stdin is None or not sys.stdin.isatty():
        raise ArgumentError("--yes", f"{what}: confirm with --yes when not on a terminal")
    typed = input(f"{what} on stage {stage.name}. Type the stage name to confirm: ").strip()
    if typed != stage.name:
        raise ArgumentError("confirmation", f"typed {typed!r}, expected {stage.name!r}: nothing done")


def _open(stage_name: str | None, dry_run: bool = False) -> Stage:
    from deploy.stage import open_stage

    return open_stage(stage_name, dry_run=dry_run)


@deploy_task(help={"name": "secret name, e.g. DJANGO_SECRET_KEY (value is read from a prompt or stdin)"})
def set_(c, name, stage=None, dry_run=False):
    """Store a secret; the value comes from a hidden prompt or stdin. Example: inv secrets.set DB_PASSWORD"""
    check_name(name)
    target = _open(stage, dry_run)
    value = read_value_from_user(name)
    outcome = put_secret(target, name, value, dry_run=dry_run)
    verb = "would be" if dry_run else "is"
    print(f"{parameter_name(target, name)} {verb} {outcome}")


@deploy_task(help={"name": "secret name", "reveal": "print the value itself"})
def get(c, name, stage=None, reveal=False, json=False):
    """Show one secret, masked unless --reveal. Example: inv secrets.get DB_PASSWORD --stage dev"""
    check_name(name)
    info, value = read_secret(_open(stage, dry_run=True), name)
    shown = value if reveal else MASK
    if json:
        import json as jsonlib

        print(jsonlib.dumps({**info.__dict__, "value": shown}, indent=2))
    else:
        print(f"{info.name} = {shown}  ({info.type}, version {info.version}, {info.parameter})")


@deploy_task(name="list")
def list_(c, stage=None, json=False):
    """List the stage's secrets by name, never their values. Example: inv secrets.list --stage prod"""
    found = list_secrets(_open(stage, dry_run=True))
    if json:
        import json as jsonlib

        print(jsonlib.dumps([info.__dict__ for info in found], indent=2))
        return
    for info in found:
        print(f"{info.name:40} version {info.version:<4} {info.modified}")
    if not found:
        print("no secrets set")


@deploy_task(name="import", help={"file": "a .env file of KEY=VALUE lines"})
def import_(c, file, stage=None, dry_run=False):
    """Store every KEY=VALUE of a .env file as a secret. Example: inv secrets.import prod.env --stage prod"""
    values = parse_env_file(Path(file))
    target = _open(stage, dry_run)
    for name, value in values.items():
        outcome = put_secret(target, name, value, dry_run=dry_run)
        print(f"{parameter_name(target, name)}: {'would be ' if dry_run else ''}{outcome}")


@deploy_task(help={"name": "secret name", "yes": "do not ask for confirmation"})
def delete(c, name, stage=None, yes=False, dry_run=False):
    """Delete a secret after confirmation. Example: inv secrets.delete OLD_TOKEN --stage dev"""
    check_name(name)
    target = _open(stage, dry_run)
    if dry_run:
        read_secret(target, name)
        print(f"would delete {parameter_name(target, name)}")
        return
    _confirm(target, f"delete secret {name}", yes)
    delete_secret(target, name)
    print(f"deleted {parameter_name(target, name)}")


collection = Collection(AREA)
collection.add_task(set_, name="set")
collection.add_task(get)
collection.add_task(list_, name="list")
collection.add_task(import_, name="import")
collection.add_task(delete)
