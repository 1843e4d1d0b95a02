"""server/: the reference WSGI app answers its health endpoint, the seven .ebextensions files are
valid, stage-independent Beanstalk configuration, and nothing under server/ holds a secret, an ARN,
an account id or a stage's name."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest
import yaml

from deploy.config import load_config
from deploy.ship.bundle import build_bundle
from tests.conftest import CONFIG, ROOT

SERVER = ROOT / "server"
EBEXTENSIONS = SERVER / ".ebextensions"
SEVEN = (
    "00_httpd_django.config",
    "01_pandas.config",
    "02_main.config",
    "03_ec2.config",
    "04-loadbalancer.config",
    "05_notifications.config",
    "06_logs.config",
)
# The keys of a configuration file (Beanstalk developer guide, "Advanced environment customization
# with configuration files" and "Customizing software on Linux servers").
TOP_LEVEL_KEYS = {
    "option_settings",
    "packages",
    "groups",
    "users",
    "sources",
    "files",
    "commands",
    "services",
    "container_commands",
    "Resources",
    "Outputs",
}
# The options these files may set, per namespace, as the Beanstalk developer guide lists them
# ("General options for all environments" and "Python platform options").
KNOWN_OPTIONS = {
    "aws:elasticbeanstalk:environment:proxy": {"ProxyServer"},
    "aws:elasticbeanstalk:container:python": {"WSGIPath", "NumProcesses", "NumThreads"},
    "aws:autoscaling:launchconfiguration": {
        "DisableIMDSv1",
        "MonitoringInterval",
        "RootVolumeType",
        "RootVolumeSize",
        "RootVolumeIOPS",
        "RootVolumeThroughput",
    },
    "aws:elasticbeanstalk:command": {"DeploymentPolicy", "Timeout", "BatchSizeType", "BatchSize"},
    "aws:autoscaling:updatepolicy:rollingupdate": {
        "MaxBatchSize",
        "MinInstancesInService",
        "RollingUpdateEnabled",
        "RollingUpdateType",
        "PauseTime",
        "Timeout",
    },
    "aws:elasticbeanstalk:environment:process:default": {
        "DeregistrationDelay",
        "HealthCheckInterval",
        "HealthCheckTimeout",
        "HealthyThresholdCount",
        "MatcherHTTPCode",
        "Port",
        "Protocol",
        "StickinessEnabled",
        "StickinessLBCookieDuration",
        "StickinessType",
        "UnhealthyThresholdCount",
    },
    "aws:elasticbeanstalk:healthreporting:system": {"SystemType", "EnhancedHealthAuthEnabled"},
    "aws:elasticbeanstalk:hostmanager": {"LogPublicationControl"},
}
# What differs per stage goes through the API (`eb.create`), never into these files.
PER_STAGE_NAMESPACES = {
    "aws:elasticbeanstalk:application:environment",
    "aws:elasticbeanstalk:application:environmentsecrets",
    "aws:elasticbeanstalk:sns:topics",
    "aws:elasticbeanstalk:cloudwatch:logs",
    "aws:autoscaling:asg",
    "aws:autoscaling:trigger",
    "aws:ec2:vpc",
}
FORBIDDEN = {
    "an ARN": re.compile(r"arn:", re.IGNORECASE),
    "an account id": re.compile(r"(?<!\d)\d{12}(?!\d)"),
    "an access key": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "a private key": re.compile(r"-----BEGIN"),
    # A literal after the name: quoted, or alone up to the end of the line (a call such as
    # get_secret("SECRET_KEY") is how the app reads one, and is fine).
    "a secret value": re.compile(
        r"[A-Z_]*(SECRET|PASSWORD|PASSWD|TOKEN|DSN|API_KEY)[A-Z_]*\s*[:=]\s*"
        r"(['\"][^'\"]{4,}['\"]|[^\s'\"(){}]{4,}\s*$)",
        re.MULTILINE,
    ),
    "a secret setting": re.compile(
        r"\b(password|secret|token)\s*[:=]\s*(['\"][^'\"]{4,}['\"]|[^\s'\"(){}]{4,}\s*$)",
        re.IGNORECASE | re.MULTILINE,
    ),
    "a stage name": re.compile(r"(?<![\w-])(dev|prod|production|staging)(?![\w-])", re.IGNORECASE),
}


def configs() -> Iterator[tuple[str, dict[str, Any]]]:
    for name in SEVEN:
        yield name, yaml.safe_load((EBEXTENSIONS / name).read_text())


# Made on a machine, never committed: `create` writes the EB CLI's stage config, collectstatic the statics.
GENERATED = {"__pycache__", ".elasticbeanstalk", "staticfiles"}


def server_files() -> list[Path]:
    return sorted(p for p in SERVER.rglob("*") if p.is_file() and not GENERATED & set(p.parts))


# -- .ebextensions ----------------------------------------------------------------------------


def test_the_seven_files_and_only_documentation_beside_them() -> None:
    found = sorted(p.name for p in EBEXTENSIONS.iterdir())
    # Beanstalk reads only files ending in .config from .ebextensions, so the README is inert.
    assert [n for n in found if n.endswith(".config")] == list(SEVEN)
    assert [n for n in found if not n.endswith(".config")] == ["README.md"]


@pytest.mark.parametrize("name", SEVEN)
def test_each_file_is_a_yaml_mapping_of_configuration_keys(name: str) -> None:
    document = yaml.safe_load((EBEXTENSIONS / name).read_text())

    assert isinstance(document, dict) and document
    assert set(document) <= TOP_LEVEL_KEYS, name


def test_option_settings_use_real_namespaces_and_options() -> None:
    for name, document in configs():
        for namespace, options in document.get("option_settings", {}).items():
            assert namespace in KNOWN_OPTIONS, f"{name}: unknown namespace {namespace}"
            assert set(options) <= KNOWN_OPTIONS[namespace], f"{name}: {namespace}: {set(options)}"
            assert all(isinstance(v, str | int | bool) for v in options.values()), name


def test_nothing_per_stage_is_set_in_the_files() -> None:
    for name, document in configs():
        namespaces = set(document.get("option_settings", {}))
        assert not namespaces & PER_STAGE_NAMESPACES, name
        launch = document.get("option_settings", {}).get("aws:autoscaling:launchconfiguration", {})
        assert not set(launch) & {"InstanceType", "IamInstanceProfile", "EC2KeyName", "SecurityGroups"}


def test_wsgi_path_names_the_reference_app() -> None:
    main = dict(configs())["02_main.config"]

    assert main["option_settings"]["aws:elasticbeanstalk:container:python"] == {
        "WSGIPath": "application:application"
    }


def test_container_commands_run_on_the_leader_and_skip_an_app_without_manage_py() -> None:
    commands = dict(configs())["02_main.config"]["container_commands"]

    assert sorted(commands) == ["01_migrate", "02_collectstatic"]
    for command in commands.values():
        assert command["leader_only"] is True
        assert command["command"].startswith("if [ -f manage.py ]; then ")
    assert "manage.py migrate --noinput" in commands["01_migrate"]["command"]
    assert "manage.py collectstatic --noinput" in commands["02_collectstatic"]["command"]


def test_the_packages_file_installs_os_packages_only() -> None:
    packages = dict(configs())["01_pandas.config"]["packages"]

    assert set(packages) == {"yum"}
    assert all(versions == [] for versions in packages["yum"].values())


# -- no secret, ARN, account id or stage name anywhere under server/ ----------------------------


def stage_scoped_names() -> set[str]:
    """Every name a stage renders from a `{stage}` template (iotile-cloud-dev, /iotile-cloud/prod)."""
    found: set[str] = set()
    for path in sorted(CONFIG.glob("*.yaml")):
        if path.stem == "defaults":
            continue
        config = load_config(path.stem, CONFIG)
        found.update(
            value
            for value in strings(config.model_dump())
            if path.stem in value and not config.is_shared(value)
        )
    return found


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


def test_the_scan_finds_what_it_looks_for() -> None:
    assert FORBIDDEN["an ARN"].search("arn:aws:ssm:us-east-1:123456789012:parameter/x")
    assert FORBIDDEN["an account id"].search("bucket elasticbeanstalk-us-east-1-123456789012")
    assert FORBIDDEN["a secret value"].search("SECRET_KEY: abcdef123")
    assert FORBIDDEN["a secret value"].search('DB_PASSWORD="hunter22"')
    assert FORBIDDEN["a secret setting"].search("password: hunter22")
    assert not FORBIDDEN["a secret value"].search('SECRET_KEY = get_secret("SECRET_KEY")')
    assert not FORBIDDEN["a stage name"].search("libpq-dev")
    assert FORBIDDEN["a stage name"].search("IOTILE_STAGE=prod")
    assert "iotile-cloud-dev" in stage_scoped_names()


@pytest.mark.parametrize("path", server_files(), ids=lambda p: str(p.relative_to(SERVER)))
def test_no_secret_arn_account_or_stage_in_server_files(path: Path) -> None:
    text = path.read_text(encoding="utf-8")

    for what, pattern in FORBIDDEN.items():
        match = pattern.search(text)
        assert match is None, f"{path.relative_to(ROOT)} holds {what}: {match.group(0)!r}"
    for name in stage_scoped_names():
        assert name not in text, f"{path.relative_to(ROOT)} names {name}"


# -- the bundle of the real server/ -----------------------------------------------------------


def test_the_bundle_ships_the_app_and_its_configuration_not_the_local_files() -> None:
    files = set(build_bundle().files)

    assert {"application.py", "requirements.txt", *(f".ebextensions/{n}" for n in SEVEN)} <= files
    assert not {"README.md", ".ebextensions/README.md", ".ebignore"} & files
    assert not [f for f in files if f.split("/")[0] in GENERATED or f.endswith(".pyc")]


# -- the reference app ------------------------------------------------------------------------


@pytest.fixture
def app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reference_application", SERVER / "application.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get(app: ModuleType, path: str) -> tuple[str, dict[str, str], Any]:
    environ: dict[str, Any] = {"PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": ""}
    setup_testing_defaults(environ)
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer.update(status=status, headers=dict(headers))
        return lambda data: None

    # wsgiref's validator fails the test on anything PEP 3333 forbids.
    result = validator(app.application)(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        result.close()
    return answer["status"], answer["headers"], json.loads(body)


def test_health_endpoint_reports_stage_and_version(app: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTILE_STAGE", "local")
    monkeypatch.setenv("IOTILE_VERSION", "abc123")

    status, headers, document = get(app, "/api/v1/server/")

    assert status == "200 OK"
    assert headers["Content-Type"] == "application/json"
    assert document == {"status": "ok", "stage": "local", "version": "abc123"}
    assert get(app, "/api/v1/server")[0] == "200 OK"


def test_anything_else_is_not_found(app: ModuleType) -> None:
    status, _, document = get(app, "/admin/")

    assert status == "404 Not Found"
    assert document["status"] == "not found"
