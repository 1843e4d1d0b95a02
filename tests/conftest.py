"""Shared fixtures: a clean AWS environment, moto in-process, stages and a call counter."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from deploy.config import load_config
from deploy.stage import Stage, is_mutating

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"


@pytest.fixture(scope="session", autouse=True)
def moto_fixes() -> None:
    """moto corrected where it departs from AWS, and as strict as AWS where it is lenient, as the
    emulator serves it (deploy/emulator/fixes.py, deploy/emulator/strict.py)."""
    from deploy.emulator import fixes, strict

    fixes.apply()
    strict.apply()


@pytest.fixture(autouse=True)
def emulator_clock() -> Iterator[object]:
    """The clock of the emulator's time-bound rules, back at wall time after every test."""
    from deploy.emulator.strict import clock

    yield clock
    clock.reset()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_SESSION_TOKEN",
        "DEPLOY_STAGE",
        "IOTILE_STAGE",
        "IOTILE_SECRETS_PREFIX",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("DEPLOY_CONFIG_DIR", str(CONFIG))
    monkeypatch.setenv("DEPLOY_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture
def aws(request: pytest.FixtureRequest) -> Iterator[None]:
    from moto import mock_aws

    # Real accounts have the AWS managed policies (some roles attach them). moto loads all of them
    # only when asked, which costs half a second a test: tests marked aws_managed_policies ask.
    managed = request.node.get_closest_marker("aws_managed_policies") is not None
    with mock_aws(config={"iam": {"load_aws_managed_policies": managed}}):
        yield


class CallLog:
    """Every AWS call a stage makes, seen through botocore's before-call event."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, service: str, operation: str) -> None:
        self.calls.append((service, operation))

    @property
    def mutating(self) -> list[tuple[str, str]]:
        return [call for call in self.calls if is_mutating(call[1])]

    def clear(self) -> None:
        self.calls.clear()


def add_to_config(path: Path, text: str) -> None:
    """Add `text` to a config file as an operator would: appended, or, when it names a section the
    file has already, merged into that section (config refuses a key given twice)."""
    current = path.read_text(encoding="utf-8")
    try:
        added, existing = yaml.safe_load(text), yaml.safe_load(current)
    except yaml.YAMLError:
        added = existing = None
    if isinstance(added, dict) and isinstance(existing, dict) and set(added) & set(existing):
        path.write_text(yaml.safe_dump(_deep_merge(existing, added), sort_keys=False), encoding="utf-8")
        return
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n" + text)


def _deep_merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _deep_merge(merged[key], value) if both else value
    return merged


@pytest.fixture
def config_copy(tmp_path: Path) -> Callable[[str, str], Path]:
    """A copy of config/ with `text` added to one stage file, as an operator would edit it."""

    def copy(stage: str, text: str) -> Path:
        target = tmp_path / "config"
        shutil.copytree(CONFIG, target, dirs_exist_ok=True)
        add_to_config(target / f"{stage}.yaml", text)
        return target

    return copy


@pytest.fixture
def make_stage(aws: None) -> Callable[..., Stage]:
    def make(
        name: str = "dev",
        *,
        read_only: bool = False,
        log: CallLog | None = None,
        config_dir: Path = CONFIG,
    ) -> Stage:
        stage = Stage(name, load_config(name, config_dir), read_only=read_only)
        if log is not None:
            stage.on_call(log)
        return stage

    return make


@pytest.fixture
def call_log() -> CallLog:
    return CallLog()
