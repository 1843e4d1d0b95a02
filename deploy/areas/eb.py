"""Elastic Beanstalk: the application and its environment, converged from config (never recreated),
the deploy of an application version, and `server/.elasticbeanstalk/config.yml` for the eb CLI."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.cli import deploy_task
from deploy.errors import AwsError, WaitTimeout
from deploy.parallel import call_concurrently, map_concurrently, pause
from deploy.plan import Call, Deferred, Resource, Step, Wait, converge, differences, removal, tag_drift

if TYPE_CHECKING:
    from deploy.report import Reporter
    from deploy.stage import Stage

AREA = "eb"
# Needs first: the instance profile and service role, the VPC and groups, the notification topic,
# the buckets, the certificate, and every store whose endpoint the app reads from its environment.
AFTER: tuple[str, ...] = ("iam", "network", "sns", "s3", "sqs", "acm", "rds", "redis", "redshift", "search")
LOOKUPS = ("environment_cname", "deploy_version")

ENV_NAMESPACE = "aws:elasticbeanstalk:application:environment"
SECRETS_NAMESPACE = "aws:elasticbeanstalk:application:environmentsecrets"
READY = frozenset({"Ready"})
BUSY = frozenset({"Launching", "Updating"})
GONE = frozenset({"Terminated", "missing"})
# Options whose value is a comma-separated list: AWS may answer them in another order or spacing.
LIST_OPTIONS = frozenset({"Subnets", "ELBSubnets", "SecurityGroups", "InstanceTypes", "SSLCertificateArns"})
# Beanstalk adds the environment's own security group to the instances' list: ours must be in it.
SUBSET_OPTIONS = frozenset({"SecurityGroups"})
# Options given by name that Beanstalk may answer as an ARN.
NAMED_OPTIONS = frozenset({"ServiceRole", "IamInstanceProfile"})
SERVER_DIR = Path("server")
EB_CLI_CONFIG = SERVER_DIR / ".elasticbeanstalk" / "config.yml"
# The first pause between polls of a deploy; it doubles up to waits.poll_seconds.
FIRST_POLL_SECONDS = 0.25

Setting = tuple[str, str]


# -- what config asks for -------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where the environment goes: ids from the network area (Deferred before it made them)."""

    vpc: Any
    app_group: Any
    private_subnets: list[Any]
    public_subnets: list[Any]


@dataclass(frozen=True)
class Endpoints:
    """The live addresses the app reads from its environment (None while a store does not exist)."""

    rds: str | None = None
    redis: str | None = None
    redshift: str | None = None
    search: str | None = None
    queues: dict[str, str | None] = field(default_factory=dict)


def _joined(values: list[Any]) -> str | Deferred:
    """A comma-separated list; one Deferred for the whole value while any part is still Deferred."""
    if all(isinstance(v, str) for v in values):
        return ",".join(values)
    from deploy.plan import resolve_deferred

    shown = ",".join(str(v) for v in values)
    return Deferred(shown, lambda stage: ",".join(resolve_deferred(values, stage)))


def _host_port(endpoint: str | None) -> tuple[str, str] | None:
    if not endpoint:
        return None
    host, _, port = endpoint.rpartition(":")
    return (host, port) if host and port.isdigit() else (endpoint, "")


def environment_variables(stage: Stage, endpoints: Endpoints) -> dict[str, str]:
    """Plain settings of the app: the stage, live endpoints, and config's own. Never a secret."""
    config = stage.config
    variables = {"IOTILE_STAGE": stage.name, "IOTILE_SECRETS_PREFIX": config.secrets.prefix}
    stores = {
        "RDS": (endpoints.rds, config.rds.database, config.rds.master_username),
        "REDSHIFT": (
            endpoints.redshift,
            config.redshift.stream_data.database,
            config.redshift.stream_data.master_username,
        ),
    }
    for prefix, (endpoint, database, user) in stores.items():
        found = _host_port(endpoint)
        if found:
            variables |= {
                f"{prefix}_HOSTNAME": found[0],
                f"{prefix}_PORT": found[1],
                f"{prefix}_DB_NAME": database,
                f"{prefix}_USERNAME": user,
            }
    redis = _host_port(endpoints.redis)
    if redis:
        variables |= {"REDIS_HOSTNAME": redis[0], "REDIS_PORT": redis[1]}
    if endpoints.search:
        variables["SEARCH_HOSTNAME"] = endpoints.search
    for key, url in sorted(endpoints.queues.items()):
        if url:
            variables[f"SQS_{key.upper()}_QUEUE_URL"] = url
    return {**variables, **config.eb.environment_variables}


def secret_settings(stage: Stage) -> dict[Setting, str]:
    """The app's secrets by Parameter Store ARN: Beanstalk resolves them on the instances."""
    from deploy.policies import secret_arns

    secrets = {arn.rsplit("/", 1)[-1]: arn for arn in secret_arns(stage, "app")}
    return {(SECRETS_NAMESPACE, name): arn for name, arn in sorted(secrets.items())}


def option_settings(
    stage: Stage, placement: Placement, endpoints: Endpoints, topic_arn: str, certificate: str | None = None
) -> dict[Setting, str | Deferred]:
    """Every option the tool manages, by (namespace, option). .ebextensions hold the rest.
    `certificate`: the ACM certificate of the HTTPS listener (eb.certificate_arn wins over it)."""
    eb, iam = stage.config.eb, stage.config.iam
    certificate = eb.certificate_arn or certificate
    trigger = eb.trigger
    settings: dict[Setting, str | Deferred] = {
        ("aws:elasticbeanstalk:environment", "EnvironmentType"): "LoadBalanced",
        ("aws:elasticbeanstalk:environment", "LoadBalancerType"): "application",
        ("aws:elasticbeanstalk:environment", "ServiceRole"): iam.eb_service_role,
        ("aws:ec2:instances", "InstanceTypes"): eb.instance_type,
        ("aws:autoscaling:launchconfiguration", "IamInstanceProfile"): iam.production_role,
        ("aws:autoscaling:launchconfiguration", "SecurityGroups"): placement.app_group,
        ("aws:autoscaling:launchconfiguration", "DisableIMDSv1"): "true",
        ("aws:autoscaling:asg", "MinSize"): str(eb.min_instances),
        ("aws:autoscaling:asg", "MaxSize"): str(eb.max_instances),
        ("aws:autoscaling:trigger", "MeasureName"): trigger.measure,
        ("aws:autoscaling:trigger", "Statistic"): trigger.statistic,
        ("aws:autoscaling:trigger", "Unit"): trigger.unit,
        ("aws:autoscaling:trigger", "UpperThreshold"): str(trigger.upper),
        ("aws:autoscaling:trigger", "LowerThreshold"): str(trigger.lower),
        ("aws:autoscaling:trigger", "Period"): str(trigger.period_minutes),
        ("aws:autoscaling:trigger", "BreachDuration"): str(trigger.breach_minutes),
        ("aws:ec2:vpc", "VPCId"): placement.vpc,
        ("aws:ec2:vpc", "Subnets"): _joined(placement.private_subnets),
        ("aws:ec2:vpc", "AssociatePublicIpAddress"): "false",
        ("aws:elasticbeanstalk:environment:process:default", "HealthCheckPath"): eb.health_url,
        ("aws:elasticbeanstalk:healthreporting:system", "SystemType"): "enhanced",
        ("aws:elasticbeanstalk:sns:topics", "Notification Topic ARN"): topic_arn,
        ("aws:elasticbeanstalk:cloudwatch:logs", "StreamLogs"): str(eb.stream_logs).lower(),
        ("aws:elasticbeanstalk:cloudwatch:logs", "RetentionInDays"): str(eb.log_retention_days),
        ("aws:elasticbeanstalk:cloudwatch:logs", "DeleteOnTerminate"): "false",
    }
    if placement.public_subnets:
        settings[("aws:ec2:vpc", "ELBSubnets")] = _joined(placement.public_subnets)
        settings[("aws:ec2:vpc", "ELBScheme")] = "public"
    if eb.key_name:
        settings[("aws:autoscaling:launchconfiguration", "EC2KeyName")] = eb.key_name
    if certificate:
        listener = "aws:elbv2:listener:443"
        settings |= {
            (listener, "Protocol"): "HTTPS",
            (listener, "SSLCertificateArns"): certificate,
            (listener, "SSLPolicy"): eb.ssl_policy,
        }
    for name, value in environment_variables(stage, endpoints).items():
        settings[(ENV_NAMESPACE, name)] = value
    return {**settings, **secret_settings(stage)}


def as_option_list(settings: Mapping[Setting, Any]) -> list[dict[str, Any]]:
    return [
        {"Namespace": namespace, "OptionName": name, "Value": value}
        for (namespace, name), value in sorted(settings.items())
    ]


# -- what Beanstalk has ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvironmentState:
    exists: bool
    status: str = "missing"
    health: str = ""
    version: str = ""
    cname: str = ""
    arn: str = ""
    # SolutionStackName and PlatformArn, as DescribeEnvironments answers them.
    platform: dict[str, str] = field(default_factory=dict)
    settings: dict[Setting, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def _describe_environment(stage: Stage) -> dict[str, Any] | None:
    eb = stage.config.eb
    found = stage.client("elasticbeanstalk").describe_environments(
        ApplicationName=eb.application, EnvironmentNames=[eb.environment], IncludeDeleted=False
    )["Environments"]
    live = [env for env in found if env.get("Status") != "Terminated"]
    return live[0] if live else None


def _tags(stage: Stage, arn: str) -> dict[str, str]:
    found = stage.client("elasticbeanstalk").list_tags_for_resource(ResourceArn=arn)
    return {tag["Key"]: tag["Value"] for tag in found.get("ResourceTags", [])}


def read_environment(stage: Stage) -> EnvironmentState:
    env = _describe_environment(stage)
    if env is None:
        return EnvironmentState(False)
    state = EnvironmentState(
        True,
        status=env["Status"],
        health=env.get("Health", ""),
        version=env.get("VersionLabel", ""),
        cname=env.get("CNAME", ""),
        arn=env.get("EnvironmentArn", ""),
        platform={k: env[k] for k in ("SolutionStackName", "PlatformArn") if env.get(k)},
    )
    if state.status not in READY:
        return state
    # A ready environment's settings and tags, side by side.
    settings, tags = call_concurrently(partial(_settings, stage), partial(_tags, stage, state.arn))
    return replace(state, settings=settings, tags=tags)


def _settings(stage: Stage) -> dict[Setting, str]:
    eb = stage.config.eb
    described = stage.client("elasticbeanstalk").describe_configuration_settings(
        ApplicationName=eb.application, EnvironmentName=eb.environment
    )["ConfigurationSettings"]
    options = described[0].get("OptionSettings", []) if described else []
    return {(o["Namespace"], o["OptionName"]): o.get("Value", "") for o in options}


def read_application(stage: Stage) -> dict[str, str] | None:
    """The application's tags, or None when there is no application."""
    name = stage.config.eb.application
    found = stage.client("elasticbeanstalk").describe_applications(ApplicationNames=[name])["Applications"]
    return _tags(stage, found[0]["ApplicationArn"]) if found else None


def environment_status(stage: Stage) -> str:
    """The environment's status, "missing" when there is none: what a Wait polls."""
    env = _describe_environment(stage)
    return str(env["Status"]) if env else "missing"


def environment_cname(stage: Stage) -> str | None:
    """The CNAME of the stage's environment (what DNS aliases point at), None when there is none."""
    env = _describe_environment(stage)
    return env.get("CNAME") if env else None


def read_placement(stage: Stage) -> Placement:
    from deploy.areas import network

    vpc = network.vpc_id(stage)
    name = stage.config.network.app_security_group
    group = network.security_group_id(stage, name, vpc=vpc) or network.group_id_when_created(name)
    private = sorted(network.subnet_zones(stage, vpc), key=str)
    return Placement(vpc, group, private, network.public_subnet_ids(stage))


def read_endpoints(stage: Stage) -> Endpoints:
    from deploy.areas import rds, redis, redshift, search, sqs

    queues = dict(stage.config.sqs.queues)
    reads: dict[str, Callable[[], Any]] = {
        "rds": partial(rds.endpoint, stage),
        "redis": partial(redis.endpoint, stage),
        "redshift": partial(redshift.endpoint, stage),
        "search": partial(search.endpoint, stage),
        **{f"queue:{key}": partial(sqs.queue_url, stage, name) for key, name in queues.items()},
    }
    values = dict(zip(reads, map_concurrently(lambda read: read(), list(reads.values())), strict=True))
    return Endpoints(
        rds=values["rds"],
        redis=values["redis"],
        redshift=values["redshift"],
        search=values["search"],
        queues={key: values[f"queue:{key}"] for key in queues},
    )


def read_certificate_arn(stage: Stage) -> str | None:
    """eb.certificate_arn, else the stage's issued certificate from the acm area (None before)."""
    if stage.config.eb.certificate_arn:
        return stage.config.eb.certificate_arn
    from deploy.areas import acm

    return acm.certificate_arn(stage)


def read_topic_arn(stage: Stage) -> str:
    from deploy.areas import sns

    return sns.topic_arn(stage, stage.config.sns.topics.eb_notifications)


# -- planning ---------------------------------------------------------------------------------------


def _normal(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if name in LIST_OPTIONS:
        return sorted(part.strip() for part in value.split(",") if part.strip())
    if name in NAMED_OPTIONS and value.startswith("arn:"):
        return value.rsplit("/", 1)[-1]
    return value.strip().lower() if value.strip().lower() in ("true", "false") else value


def _matches(name: str, want: Any, have: str | None) -> bool:
    if isinstance(want, Deferred) or have is None:
        return False
    if name in SUBSET_OPTIONS:
        return set(_normal(name, want)) <= set(_normal(name, have))
    return _normal(name, want) == _normal(name, have)


def settings_drift(wanted: Mapping[Setting, Any], have: Mapping[Setting, str]) -> dict[Setting, Any]:
    """The managed options whose live value differs from config (a Deferred one always does)."""
    return {key: value for key, value in wanted.items() if not _matches(key[1], value, have.get(key))}


def wait_until_ready(stage: Stage, reason: str) -> Wait:
    seconds = stage.config.eb.deploy_timeout_minutes * 60
    return Wait(stage.config.eb.environment, reason, environment_status, READY, GONE, seconds)


def plan_application(stage: Stage, tags: dict[str, str] | None) -> Resource:
    name = stage.config.eb.application
    wanted = stage.tags(name)
    steps: list[Call] = []
    if tags is None:
        params = {
            "ApplicationName": name,
            "Description": f"IOTile Cloud ({stage.config.project})",
            "Tags": stage.tag_list(wanted),
        }
        steps.append(
            Call("elasticbeanstalk", "CreateApplication", params, name, "application does not exist")
        )
    elif any(tags.get(k) != v for k, v in wanted.items()):
        arn = stage.arn("elasticbeanstalk", f"application/{name}")
        params = {"ResourceArn": arn, "TagsToAdd": stage.tag_list(wanted)}
        steps.append(Call("elasticbeanstalk", "UpdateTagsForResource", params, name, tag_drift(tags, wanted)))
    return converge(AREA, "Beanstalk application", name, steps, exists=tags is not None)


def _platform(stage: Stage) -> dict[str, str]:
    eb = stage.config.eb
    return {"PlatformArn": eb.platform_arn} if eb.platform_arn else {"SolutionStackName": eb.solution_stack}


def _create_environment(stage: Stage, wanted: Mapping[Setting, Any]) -> list[Step]:
    eb = stage.config.eb
    params = {
        "ApplicationName": eb.application,
        "EnvironmentName": eb.environment,
        "CNAMEPrefix": eb.cname_prefix or eb.environment,
        "Tier": {"Name": "WebServer", "Type": "Standard"},
        **_platform(stage),
        "OptionSettings": as_option_list(wanted),
        "Tags": stage.tag_list(stage.tags(eb.environment)),
    }
    call = Call("elasticbeanstalk", "CreateEnvironment", params, eb.environment, "environment does not exist")
    return [call, wait_until_ready(stage, "new environment")]


def _detail(state: EnvironmentState) -> str:
    return f"{state.status}, {state.health or 'no health'}, version {state.version or '-'}, {state.cname}"


def plan_environment(stage: Stage, state: EnvironmentState, wanted: Mapping[Setting, Any]) -> Resource:
    eb = stage.config.eb
    kind, name, after = "Beanstalk environment", eb.environment, (eb.application,)
    if not state.exists:
        return converge(AREA, kind, name, _create_environment(stage, wanted), exists=False, depends_on=after)
    if state.status in BUSY:
        wait = wait_until_ready(stage, f"{state.status}: wait until Ready")
        return converge(AREA, kind, name, [wait], exists=True, detail=_detail(state), depends_on=after)
    if state.status not in READY:
        drift = (f"status {state.status}: nothing can change until it is Ready; rerun later",)
        return Resource(AREA, kind, name, "drifted", (), drift, _detail(state), after)
    steps: list[Step] = []
    drifted = settings_drift(wanted, state.settings)
    platform = {k: v for k, v in _platform(stage).items() if state.platform.get(k) != v}
    if drifted or platform:
        reasons = [f"platform is {state.platform.get(k) or '-'}" for k in platform]
        if drifted:
            shown = {
                f"{ns.rsplit(':', 1)[-1]}:{option}": (state.settings.get((ns, option)), drifted[(ns, option)])
                for ns, option in sorted(drifted)
            }
            reasons.append(differences(shown))
        params: dict[str, Any] = {"EnvironmentName": name, **platform}
        if drifted:
            params["OptionSettings"] = as_option_list(drifted)
        steps += [
            Call("elasticbeanstalk", "UpdateEnvironment", params, name, "; ".join(reasons)),
            wait_until_ready(stage, "applying the change"),
        ]
    tags = stage.tags(name)
    if any(state.tags.get(k) != v for k, v in tags.items()):
        params = {"ResourceArn": state.arn, "TagsToAdd": stage.tag_list(tags)}
        steps.append(
            Call("elasticbeanstalk", "UpdateTagsForResource", params, name, tag_drift(state.tags, tags))
        )
    return converge(AREA, kind, name, steps, exists=True, detail=_detail(state), depends_on=after)


def plan(stage: Stage) -> list[Resource]:
    reads: list[Callable[[], Any]] = [
        partial(read_application, stage),
        partial(read_environment, stage),
        partial(read_placement, stage),
        partial(read_endpoints, stage),
        partial(read_topic_arn, stage),
        partial(read_certificate_arn, stage),
    ]
    app_tags, state, placement, endpoints, topic, certificate = map_concurrently(lambda read: read(), reads)
    wanted = option_settings(stage, placement, endpoints, topic, certificate)
    return [plan_application(stage, app_tags), plan_environment(stage, state, wanted)]


# -- the eb CLI's config ----------------------------------------------------------------------------


def eb_cli_config(stage: Stage) -> str:
    """`server/.elasticbeanstalk/config.yml` for this stage, so `eb logs`, `eb ssh` and `eb health`
    act on its environment."""
    import yaml

    eb = stage.config.eb
    document = {
        "branch-defaults": {"default": {"environment": eb.environment}},
        "global": {
            "application_name": eb.application,
            "default_platform": eb.platform_arn or eb.solution_stack,
            "default_region": stage.region,
            "sc": "git",
            "workspace_type": "Application",
        },
    }
    if stage.config.profile:
        document["global"]["profile"] = stage.config.profile
    if eb.key_name:
        document["global"]["default_ec2_keyname"] = eb.key_name
    return yaml.safe_dump(document, sort_keys=True)


def write_eb_cli_config(stage: Stage, root: Path | None = None) -> Path:
    path = (root or Path.cwd()) / EB_CLI_CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(eb_cli_config(stage), encoding="utf-8")
    return path


# -- deploying a version ------------------------------------------------------------------------------


def _version_exists(stage: Stage, label: str) -> bool:
    found = stage.client("elasticbeanstalk").describe_application_versions(
        ApplicationName=stage.config.eb.application, VersionLabels=[label]
    )["ApplicationVersions"]
    return bool(found)


def _events(stage: Stage, since: datetime | None) -> list[dict[str, Any]]:
    eb = stage.config.eb
    params: dict[str, Any] = {"ApplicationName": eb.application, "EnvironmentName": eb.environment}
    if since is not None:
        params["StartTime"] = since
    return stage.client("elasticbeanstalk").describe_events(**params)["Events"]


def _event_line(event: dict[str, Any]) -> str:
    when = event["EventDate"].astimezone(UTC).strftime("%H:%M:%S")
    return f"{when} {event.get('Severity', 'INFO'):5} {event.get('Message', '')}"


@dataclass
class EventFollower:
    """Prints each new event of the environment once, oldest first, and keeps the failing ones."""

    stage: Stage
    reporter: Reporter
    since: datetime | None = None
    seen: set[tuple[Any, str]] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    def start(self) -> None:
        """Start after the newest event there is now: only what the deploy causes is shown."""
        existing = _events(self.stage, None)
        self.since = existing[0]["EventDate"] if existing else None
        self.seen = {(e["EventDate"], e.get("Message", "")) for e in existing}

    def poll(self) -> None:
        from rich.markup import escape

        for event in reversed(_events(self.stage, self.since)):
            key = (event["EventDate"], event.get("Message", ""))
            if key in self.seen:
                continue
            self.seen.add(key)
            line = _event_line(event)
            if event.get("Severity") in ("ERROR", "FATAL"):
                self.errors.append(line)
            if not self.reporter.as_json:
                self.reporter.err.print(escape(f"  {line}"))


def _deployed(stage: Stage, label: str, env: dict[str, Any], errors: list[str]) -> bool:
    """True once the environment is Ready and Green on `label`; raises when it failed."""
    status, health, running = env["Status"], env.get("Health", ""), env.get("VersionLabel", "")
    if status not in READY:
        return False
    if running == label and health == "Green":
        return True
    if running != label or health == "Red":
        shown = "; ".join(errors) or "no error events"
        where = f"on version {label}" if running == label else f"on version {running or '-'}, not {label}"
        raise AwsError(
            "DeploymentFailed",
            f"{stage.config.eb.environment} is {health} {where}: {shown}",
            f"Read the events above and `inv eb.status --stage {stage.name}`; fix and deploy again.",
        )
    return False


def _follow(stage: Stage, label: str, follower: EventFollower, timeout: float) -> None:
    started, delay = time.monotonic(), FIRST_POLL_SECONDS
    limit = stage.config.waits.poll_seconds
    while True:
        env = _describe_environment(stage)
        # Events after the environment: those that ended the change are read before judging it.
        follower.poll()
        if env is None:
            raise AwsError(
                "EnvironmentGone",
                f"{stage.config.eb.environment} no longer exists",
                f"Run inv eb.create --stage {stage.name}.",
            )
        if _deployed(stage, label, env, follower.errors):
            return
        elapsed = time.monotonic() - started
        if elapsed >= timeout:
            raise WaitTimeout(f"{stage.config.eb.environment} to run {label}", env["Status"], elapsed)
        pause(min(delay, max(0.0, timeout - elapsed)))
        delay = min(delay * 2, limit)


def deploy_version(
    stage: Stage, label: str, bucket: str, key: str, reporter: Reporter, timeout: float | None = None
) -> bool:
    """Put the environment on version `label` (source bundle s3://bucket/key): the version is made
    only when the label does not exist, the environment updated only when it does not run it, then
    its events followed until it is Ready and Green. Returns whether anything changed; raises
    AwsError with the failing events when the deploy fails, WaitTimeout after `timeout` seconds
    (default eb.deploy_timeout_minutes)."""
    eb = stage.config.eb
    limit = timeout if timeout is not None else eb.deploy_timeout_minutes * 60
    client = stage.client("elasticbeanstalk")
    env = _describe_environment(stage)
    if env is None:
        raise AwsError(
            "EnvironmentNotFound",
            f"environment {eb.environment} does not exist",
            f"Run `inv eb.create --stage {stage.name}` (or `inv create`) first.",
        )
    exists = _version_exists(stage, label)
    if env.get("VersionLabel") == label and env["Status"] in READY and env.get("Health") == "Green":
        reporter.message(f"{eb.environment} already runs {label}: nothing to deploy")
        return False
    if stage.read_only:
        what = "update" if exists else f"create version {label} from s3://{bucket}/{key}, then update"
        reporter.message(f"would {what} {eb.environment} to {label}")
        return True
    if not exists:
        client.create_application_version(
            ApplicationName=eb.application,
            VersionLabel=label,
            Description=f"{stage.name} deploy of {label}"[:200],
            SourceBundle={"S3Bucket": bucket, "S3Key": key},
            Tags=stage.tag_list(stage.tags(eb.application)),
        )
        reporter.message(f"created version {label}")
    follower = EventFollower(stage, reporter)
    follower.start()
    if env["Status"] not in READY:
        _wait_ready(stage, follower, limit)
    if (_describe_environment(stage) or {}).get("VersionLabel") != label:
        client.update_environment(EnvironmentName=eb.environment, VersionLabel=label)
        reporter.message(f"updating {eb.environment} to {label}")
    _follow(stage, label, follower, limit)
    reporter.message(f"{eb.environment} runs {label}, Ready and Green")
    return True


def _wait_ready(stage: Stage, follower: EventFollower, timeout: float) -> None:
    """An environment busy with an earlier change takes no update: wait for it first."""
    started = time.monotonic()
    while environment_status(stage) not in READY:
        follower.poll()
        elapsed = time.monotonic() - started
        if elapsed >= timeout:
            raise WaitTimeout(stage.config.eb.environment, environment_status(stage), elapsed)
        pause(min(stage.config.waits.poll_seconds, FIRST_POLL_SECONDS * 4))


# -- status and terminate ---------------------------------------------------------------------------


def environment_report(stage: Stage, events: int = 10) -> dict[str, Any]:
    """Health, live version, instances and recent events of the stage's environment."""
    eb = stage.config.eb
    env = _describe_environment(stage)
    if env is None:
        return {"environment": eb.environment, "status": "missing"}
    client = stage.client("elasticbeanstalk")
    resources = client.describe_environment_resources(EnvironmentName=eb.environment)["EnvironmentResources"]
    report: dict[str, Any] = {
        "environment": eb.environment,
        "status": env["Status"],
        "health": env.get("Health"),
        "health_status": env.get("HealthStatus"),
        "version": env.get("VersionLabel"),
        "cname": env.get("CNAME"),
        "instances": [instance["Id"] for instance in resources.get("Instances", [])],
        "events": [_event_line(event) for event in _events(stage, None)[:events]],
    }
    if env.get("Status") in READY:
        health = client.describe_environment_health(EnvironmentName=eb.environment, AttributeNames=["All"])
        report["causes"] = health.get("Causes", [])
    return report


def _print_report(reporter: Reporter, report: dict[str, Any]) -> None:
    from rich.markup import escape

    reporter.message(
        escape(
            f"{report['environment']}: {report['status']}, health {report.get('health') or '-'}, "
            f"version {report.get('version') or '-'}, {report.get('cname') or ''}"
        )
    )
    for cause in report.get("causes", []):
        reporter.message(escape(f"  cause: {cause}"))
    if "instances" in report:
        reporter.message(f"instances: {', '.join(report['instances']) or 'none'}")
    for line in report.get("events", []):
        reporter.message(escape(f"  {line}"))


def terminate_environment(stage: Stage, reporter: Reporter) -> bool:
    """Terminate the stage's environment (its instances and load balancer). No data store is
    touched: RDS and the rest live outside Beanstalk. Returns whether there was one to terminate."""
    eb = stage.config.eb
    env = _describe_environment(stage)
    if env is None:
        reporter.message(f"{eb.environment} does not exist: nothing to terminate")
        return False
    if stage.read_only:
        reporter.message(f"would terminate {eb.environment}")
        return True
    stage.client("elasticbeanstalk").terminate_environment(EnvironmentName=eb.environment)
    reporter.message(f"terminating {eb.environment}")
    return True


def teardown(stage: Stage) -> list[Resource]:
    """What `down` does here: terminate the environment (instances and load balancer) and wait
    until it is Terminated. The application, its versions and every data store stay, so `up`
    brings the environment back on the same version."""
    eb = stage.config.eb
    env = _describe_environment(stage)
    if env is None:
        return []
    steps: list[Step] = []
    if env.get("Status") != "Terminating":
        steps.append(
            Call(
                "elasticbeanstalk",
                "TerminateEnvironment",
                {"EnvironmentName": eb.environment},
                eb.environment,
                "compute goes on down",
            )
        )
    reason = "Beanstalk removes the instances and load balancer"
    seconds = eb.deploy_timeout_minutes * 60
    steps.append(Wait(eb.environment, reason, environment_status, GONE, timeout_seconds=seconds))
    return [removal(AREA, "environment", eb.environment, steps, detail=str(env.get("Status")))]


@deploy_task()
def create(c, stage=None, dry_run=False, json=False):
    """Create or converge the Beanstalk application and environment. Example: inv eb.create --stage dev"""
    from deploy.execute import run_converge

    outcome = run_converge(stage, [{AREA: plan}], dry_run=dry_run, as_json=json)
    if not dry_run:
        converged(outcome.stage)


def converged(stage: Stage) -> None:
    """After a converge that made changes for real (eb.create, up, create): the eb CLI's config,
    so `eb logs`, `eb ssh` and `eb health` work for this stage."""
    write_eb_cli_config(stage)


@deploy_task()
def status(c, stage=None, json=False):
    """Show the application and environment: health, live version, instances, recent events.
    Example: inv eb.status --stage dev --json"""
    from deploy.report import Reporter
    from deploy.stage import open_stage

    opened = open_stage(stage, dry_run=True)
    reporter = Reporter(as_json=json)
    resources = plan(opened)
    report = environment_report(opened)
    reporter.status(resources, extra={"environment": report})
    _print_report(reporter, report)


@deploy_task(
    help={
        "yes": "do not ask for the stage name to be typed back",
        "prod": "required on the prod stage, with the confirmation",
    }
)
def terminate(c, stage=None, yes=False, prod=False, dry_run=False):
    """Terminate the stage's Beanstalk environment (never a data store), after the stage name is typed
    back (or --yes; on prod also --prod). Example: inv eb.terminate --stage dev --yes"""
    from deploy.report import Reporter
    from deploy.secrets import confirm_destruction
    from deploy.stage import open_stage

    opened = open_stage(stage, dry_run=dry_run)
    what = f"terminate {opened.config.eb.environment}"
    confirm_destruction(opened, what, yes=yes, prod=prod, dry_run=dry_run)
    terminate_environment(opened, Reporter())


collection = Collection(AREA, create, status, terminate)
