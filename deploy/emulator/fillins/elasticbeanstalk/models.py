"""Behaviour of the Elastic Beanstalk fill-in: applications, application versions and environments,
per account and region.

An environment moves Launching -> Ready (CreateEnvironment) or Updating -> Ready (UpdateEnvironment)
and Health Grey -> Green once it has been described TRANSITION_POLLS times since the change, or
TRANSITION_SECONDS of the emulator's clock have passed: fast for tests, and still a real wait for
the code that follows it. `fail_next_update` makes the next update of an environment end as a failed
deployment does on AWS: Health Red, ERROR events, and the environment back on its previous version.
Tests that reach the emulator only over HTTP ask for the same by tagging the environment with
FAIL_NEXT_UPDATE_TAG (the message as its value): the tag is taken as the request, never kept.

What AWS refuses, it refuses too (InvalidParameterValue): a version label that exists, a source
bundle that is not in S3, an environment name taken, an update or version for an environment that
is not Ready, both a solution stack and a platform ARN, a secret that is not an ARN.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from deploy.emulator.fillins.core import FillinBackends

TRANSITION_POLLS = 2
TRANSITION_SECONDS = 1.0
SECRETS_NAMESPACE = "aws:elasticbeanstalk:application:environmentsecrets"
SECRET_SOURCES = (":ssm:", ":secretsmanager:")
# What a new environment has where the request sets nothing (a small part of the real defaults).
PLATFORM_DEFAULTS = {
    ("aws:autoscaling:asg", "MinSize"): "1",
    ("aws:autoscaling:asg", "MaxSize"): "4",
    ("aws:elasticbeanstalk:environment", "EnvironmentType"): "LoadBalanced",
    ("aws:elasticbeanstalk:environment", "LoadBalancerType"): "classic",
    ("aws:ec2:instances", "InstanceTypes"): "t3.micro, t3.small",
    ("aws:elasticbeanstalk:healthreporting:system", "SystemType"): "basic",
    ("aws:elasticbeanstalk:cloudwatch:logs", "StreamLogs"): "false",
    ("aws:elasticbeanstalk:cloudwatch:logs", "RetentionInDays"): "7",
}
SAMPLE_VERSION = "Sample Application"
FAIL_NEXT_UPDATE_TAG = "emulator:fail-next-update"


class BeanstalkError(Exception):
    """An error answer: AWS's code, message and HTTP status."""

    def __init__(self, message: str, code: str = "InvalidParameterValue", status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _clock() -> float:
    from deploy.emulator.strict import clock

    return clock.now()


def _now() -> datetime:
    return datetime.fromtimestamp(_clock(), UTC)


def _partition(region: str) -> str:
    from deploy.aws import partition

    return partition(region)


def _s3_object_exists(account_id: str, region: str, bucket: str, key: str) -> bool:
    from moto.s3.exceptions import MissingBucket
    from moto.s3.models import s3_backends

    try:
        found = s3_backends[account_id][_partition(region)].get_bucket(bucket)
    except MissingBucket:
        return False
    return key in found.keys


def ensure_storage_bucket(account_id: str, region: str) -> str:
    """AWS: CreateStorageLocation makes `elasticbeanstalk-<region>-<account>` when it is missing
    and answers its name either way."""
    from moto.s3.exceptions import MissingBucket
    from moto.s3.models import s3_backends

    name = f"elasticbeanstalk-{region}-{account_id}"
    backend = s3_backends[account_id][_partition(region)]
    try:
        backend.get_bucket(name)
    except MissingBucket:
        backend.create_bucket(name, region)
    return name


@dataclass
class Event:
    date: datetime
    message: str
    severity: str
    application: str
    environment: str = ""
    version: str = ""


@dataclass
class Version:
    application: str
    label: str
    bucket: str
    key: str
    description: str
    arn: str
    created: datetime = field(default_factory=_now)


@dataclass
class Application:
    name: str
    arn: str
    description: str
    tags: dict[str, str]
    created: datetime = field(default_factory=_now)
    versions: dict[str, Version] = field(default_factory=dict)


@dataclass
class Transition:
    """A change on its way: what the environment becomes once it is done."""

    started: float
    done_status: str
    version: str
    previous_version: str
    failure: str = ""
    polls: int = 0


@dataclass
class Environment:
    id: str
    name: str
    application: str
    arn: str
    cname: str
    endpoint: str
    solution_stack: str
    platform_arn: str
    tier: dict[str, str]
    settings: dict[tuple[str, str], str]
    tags: dict[str, str]
    version: str
    status: str = "Launching"
    health: str = "Grey"
    created: datetime = field(default_factory=_now)
    updated: datetime = field(default_factory=_now)
    transition: Transition | None = None
    instances: list[str] = field(default_factory=list)

    @property
    def health_status(self) -> str:
        return {"Green": "Ok", "Red": "Severe", "Yellow": "Warning"}.get(self.health, "Pending")


def _check_secrets(settings: dict[tuple[str, str], str]) -> None:
    for (namespace, name), value in settings.items():
        if namespace == SECRETS_NAMESPACE and not (
            value.startswith("arn:") and any(source in value for source in SECRET_SOURCES)
        ):
            raise BeanstalkError(
                f"Invalid option value for {namespace}:{name}: specify the ARN of a Systems Manager "
                "parameter or a Secrets Manager secret"
            )


class BeanstalkFillin:
    """The applications and environments of one account and region."""

    def __init__(self, account_id: str, region: str) -> None:
        self.account_id, self.region = account_id, region
        self.applications: dict[str, Application] = {}
        self.environments: dict[str, Environment] = {}
        self.events: list[Event] = []
        self.failures: dict[str, str] = {}
        self._ids = itertools.count(1)

    def arn(self, kind: str, path: str) -> str:
        partition = _partition(self.region)
        return f"arn:{partition}:elasticbeanstalk:{self.region}:{self.account_id}:{kind}/{path}"

    def _event(
        self, application: str, message: str, severity: str = "INFO", env: Environment | None = None
    ) -> None:
        self.events.append(
            Event(_now(), message, severity, application, env.name if env else "", env.version if env else "")
        )

    # -- applications and versions ---------------------------------------------------------------

    def create_application(self, name: str, description: str, tags: dict[str, str]) -> Application:
        if not name:
            raise BeanstalkError("ApplicationName is required.")
        if name in self.applications:
            raise BeanstalkError(f"Application {name} already exists.")
        app = Application(name, self.arn("application", name), description, tags)
        self.applications[name] = app
        self._event(name, f"createApplication is starting for {name}.")
        return app

    def application(self, name: str) -> Application:
        if name not in self.applications:
            raise BeanstalkError(f"No Application named '{name}' found.")
        return self.applications[name]

    def create_version(
        self, application: str, label: str, bucket: str, key: str, description: str
    ) -> Version:
        app = self.application(application)
        if not label:
            raise BeanstalkError("VersionLabel is required.")
        if label in app.versions:
            raise BeanstalkError(f"Application Version {label} already exists.")
        if bucket and not _s3_object_exists(self.account_id, self.region, bucket, key):
            raise BeanstalkError(
                f"Unable to download from S3 location (Bucket: {bucket} Key: {key}). Reason: Not Found"
            )
        version = Version(
            application,
            label,
            bucket,
            key,
            description,
            self.arn("applicationversion", f"{application}/{label}"),
        )
        app.versions[label] = version
        self._event(application, f"Created new Application Version ({label})")
        return version

    def describe_versions(self, application: str | None, labels: list[str]) -> list[Version]:
        apps = [self.applications[application]] if application in self.applications else []
        if application is None:
            apps = list(self.applications.values())
        found = [v for app in apps for v in app.versions.values() if not labels or v.label in labels]
        return sorted(found, key=lambda v: v.created, reverse=True)

    # -- environments ----------------------------------------------------------------------------

    def _live(self, name: str) -> Environment | None:
        env = self.environments.get(name)
        return env if env is not None and env.status != "Terminated" else None

    def environment(self, name: str) -> Environment:
        env = self._live(name)
        if env is None:
            raise BeanstalkError(f"No Environment found for EnvironmentName = '{name}'.")
        return self._advance(env, poll=False)

    def create_environment(self, params: dict[str, Any]) -> Environment:
        app = self.application(params["application"])
        name = params["name"]
        if self._live(name) is not None:
            raise BeanstalkError(f"Environment {name} already exists.")
        if params["solution_stack"] and params["platform_arn"]:
            raise BeanstalkError(
                "You cannot specify both SolutionStackName and PlatformArn.", "InvalidParameterCombination"
            )
        version = params["version"] or SAMPLE_VERSION
        if params["version"] and params["version"] not in app.versions:
            raise BeanstalkError(f"No Application Version named '{version}' found.")
        settings = {**PLATFORM_DEFAULTS, **params["settings"]}
        _check_secrets(settings)
        number = next(self._ids)
        env_id = (
            "e-" + hashlib.sha1(f"{self.account_id}{self.region}{name}{number}".encode()).hexdigest()[:10]
        )
        prefix = params["cname_prefix"] or name
        env = Environment(
            id=env_id,
            name=name,
            application=app.name,
            arn=self.arn("environment", f"{app.name}/{name}"),
            cname=f"{prefix}.{self.region}.elasticbeanstalk.com",
            endpoint=f"awseb-{env_id}-lb.{self.region}.elb.amazonaws.com",
            solution_stack=params["solution_stack"] or "",
            platform_arn=params["platform_arn"] or "",
            tier=params["tier"] or {"Name": "WebServer", "Type": "Standard", "Version": "1.0"},
            settings=settings,
            tags=params["tags"],
            version=version,
        )
        env.transition = Transition(_clock(), "Ready", version, "")
        self.environments[name] = env
        self._event(app.name, "createEnvironment is starting.", env=env)
        return env

    def describe_environments(
        self, application: str | None, names: list[str], deleted: bool
    ) -> list[Environment]:
        asked = [
            self._advance(env, poll=True)
            for env in self.environments.values()
            if (application is None or env.application == application) and (not names or env.name in names)
        ]
        return [env for env in asked if deleted or env.status != "Terminated"]

    def update_environment(self, params: dict[str, Any]) -> Environment:
        env = self.environment(params["name"])
        if env.status != "Ready":
            raise BeanstalkError(
                f"Environment named {env.name} is in an invalid state for this operation. Must be Ready."
            )
        label = params["version"]
        if label and label not in self.application(env.application).versions:
            raise BeanstalkError(f"No Application Version named '{label}' found.")
        if params.get("solution_stack") and params.get("platform_arn"):
            raise BeanstalkError(
                "You cannot specify both SolutionStackName and PlatformArn.", "InvalidParameterCombination"
            )
        settings = {**env.settings, **params["settings"]}
        for key in params["remove"]:
            settings.pop(key, None)
        _check_secrets(settings)
        env.settings = settings
        if params.get("solution_stack"):
            env.solution_stack, env.platform_arn = params["solution_stack"], ""
        if params.get("platform_arn"):
            env.solution_stack, env.platform_arn = "", params["platform_arn"]
        env.status, env.updated = "Updating", _now()
        failure = self.failures.pop(env.name, "")
        env.transition = Transition(_clock(), "Ready", label or env.version, env.version, failure)
        if label:
            env.version = label
        self._event(env.application, "Environment update is starting.", env=env)
        if label:
            self._event(env.application, "Deploying new version to instance(s).", env=env)
        return env

    def terminate_environment(self, name: str) -> Environment:
        env = self.environment(name)
        if env.status not in ("Ready", "Launching", "Updating"):
            raise BeanstalkError(
                f"Environment named {env.name} is in an invalid state for this operation. Must be Ready."
            )
        env.status, env.updated = "Terminating", _now()
        env.transition = Transition(_clock(), "Terminated", env.version, env.version)
        self._event(env.application, "terminateEnvironment is starting.", env=env)
        return env

    def _advance(self, env: Environment, *, poll: bool) -> Environment:
        move = env.transition
        if move is None:
            return env
        if poll:
            move.polls += 1
        if move.polls < TRANSITION_POLLS and _clock() - move.started < TRANSITION_SECONDS:
            return env
        env.transition, env.status, env.updated = None, move.done_status, _now()
        if move.done_status == "Terminated":
            env.health = "Grey"
            env.instances = []
            self._event(env.application, "terminateEnvironment completed successfully.", env=env)
        elif move.failure:
            env.version, env.health = move.previous_version, "Red"
            self._event(env.application, move.failure, "ERROR", env)
            self._event(env.application, "Failed to deploy application.", "ERROR", env)
            self._event(env.application, "Environment update completed unsuccessfully.", "ERROR", env)
        else:
            env.health = "Green"
            self._ensure_instances(env)
            if move.previous_version:
                self._event(env.application, "Environment update completed successfully.", env=env)
            else:
                self._event(env.application, f"Successfully launched environment: {env.name}", env=env)
        return env

    def _ensure_instances(self, env: Environment) -> None:
        wanted = int(env.settings.get(("aws:autoscaling:asg", "MinSize"), "1") or 1)
        while len(env.instances) < wanted:
            seed = f"{env.id}/{len(env.instances)}"
            env.instances.append("i-" + hashlib.sha1(seed.encode()).hexdigest()[:17])
        del env.instances[wanted:]

    def describe_events(self, params: dict[str, Any]) -> list[Event]:
        for env in self.environments.values():
            self._advance(env, poll=False)
        start = params.get("start")
        found = [
            e
            for e in self.events
            if params.get("application") in (None, e.application)
            and params.get("environment") in (None, e.environment)
            and params.get("version") in (None, e.version)
            and (start is None or e.date >= start)
            and (params.get("severity") is None or _severity_at_least(e.severity, params["severity"]))
        ]
        found.reverse()
        return found[: params.get("max") or 1000]

    def tags_of(self, arn: str) -> dict[str, str]:
        for app in self.applications.values():
            if app.arn == arn:
                return app.tags
        for env in self.environments.values():
            if env.arn == arn and env.status != "Terminated":
                return env.tags
        raise BeanstalkError(f"Resource not found for ARN '{arn}'.", "ResourceNotFoundException")

    def update_tags(self, arn: str, add: dict[str, str], remove: list[str]) -> None:
        tags = self.tags_of(arn)
        if FAIL_NEXT_UPDATE_TAG in add:
            add = dict(add)
            message = add.pop(FAIL_NEXT_UPDATE_TAG)
            env = next((e for e in self.environments.values() if e.arn == arn), None)
            if env is not None:
                self.fail_next_update(env.name, message)
        tags.update(add)
        for key in remove:
            tags.pop(key, None)

    def fail_next_update(self, environment: str, message: str) -> None:
        self.failures[environment] = message


SEVERITIES = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")


def _severity_at_least(severity: str, floor: str) -> bool:
    return SEVERITIES.index(severity) >= SEVERITIES.index(floor) if floor in SEVERITIES else True


fillin_backends: FillinBackends[BeanstalkFillin] = FillinBackends(BeanstalkFillin)


def fail_next_update(account_id: str, region: str, environment: str, message: str) -> None:
    """Make the next UpdateEnvironment of `environment` fail with `message`, as a failed
    deployment does: ERROR events, Health Red, and the environment back on its previous version."""
    fillin_backends.get(account_id, region).fail_next_update(environment, message)
