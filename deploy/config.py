"""Stage configuration: config/defaults.yaml merged with config/<stage>.yaml, validated before any call."""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from deploy import names
from deploy.errors import ConfigError

DEFAULT_STAGE = "dev"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Waits(Section):
    poll_seconds: float = Field(gt=0, le=300)
    timeout_seconds: int = Field(gt=0, le=4 * 3600)


class Aws(Section):
    """How the stage's clients talk to AWS: botocore's own retries (standard or adaptive mode) and
    timeouts. Throttled calls, 5xx answers, dropped connections and read timeouts are retried there."""

    retry_mode: Literal["standard", "adaptive"] = "standard"
    max_attempts: int = Field(default=5, ge=1, le=20)
    connect_timeout_seconds: float = Field(default=5, gt=0, le=300)
    read_timeout_seconds: float = Field(default=60, gt=0, le=900)


class Bucket(Section):
    name: names.BucketName
    versioning: bool = False
    cors: bool = False
    expire_errors: bool = False
    folders: list[str] = []


class Buckets(Section):
    statics: Bucket
    media: Bucket
    reports: Bucket
    stream_event_data: Bucket
    streamers: Bucket
    streamer_dropdown: Bucket
    stream_in: Bucket
    timeseries_kinesis: Bucket


# Plain http is for a developer's own machine only; anywhere else it lets a network attacker
# inject pages that then upload with the user's credentials.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1"})
DEFAULT_PORTS = {"http": 80, "https": 443}
ORIGIN_HOST = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*")

# Names and values that are secrets. Config holds names only: a secret lives in Parameter Store
# (`inv secrets.set NAME`) and config names it (secrets.readers, *_secret keys).
SECRET_WORDS = re.compile(
    r"passw(or)?d|passphrase|secret|token|private_?key|api_?key|access_?key|credential",
    re.IGNORECASE,
)
SECRET_VALUES = (
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "holds an AWS access key id"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "holds a private key"),
    (re.compile(r"^[a-z][a-z0-9+.-]*://[^/:@\s]+:[^/@\s]+@"), "holds a password (in its URL)"),
)
SECRET_ADVICE = (
    "a secret never goes in config: store it with `inv secrets.set NAME --stage <stage>` and list "
    "NAME in secrets.readers"
)


def is_secret_name(name: str) -> bool:
    """Whether a key or variable name says it holds a secret (DATABASE_PASSWORD, api_key...)."""
    return bool(SECRET_WORDS.search(name.replace("-", "_")))


def _is_reference(value: str) -> bool:
    """A value that names a secret rather than holding it: an ARN or a Parameter Store path."""
    return value == "" or value.startswith(("arn:", "/", "{"))


def check_plain_settings(variables: dict[str, str], where: str = "") -> None:
    """Refuse a secret among plain settings (environment variables): by its name, or by a value
    that is a key, a private key or a URL with a password."""
    for name, value in variables.items():
        shown = f"{where}{name}"
        for pattern, problem in SECRET_VALUES:
            if pattern.search(value):
                raise ValueError(f"{shown} {problem}: {SECRET_ADVICE}")
        if is_secret_name(name) and not _is_reference(value):
            raise ValueError(f"{shown} looks like a secret: {SECRET_ADVICE}")


def _origin_problem(origin: str) -> str | None:
    """What is wrong with one CORS origin, or None. Browsers send `Origin: scheme://host[:port]`
    (lowercase, no default port) and S3 compares it literally, so any other spelling never matches."""
    if "*" in origin:
        return "must be an https:// origin, not a wildcard"
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError as exc:
        return f"is not an origin: {exc}"
    host = parts.hostname or ""
    if parts.username is not None or parts.password is not None:
        return "must not hold a user name or password"
    if parts.scheme not in DEFAULT_PORTS or not host:
        return "must be an https:// origin such as https://iotile.cloud"
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        return "must be https:// (plain http only for localhost or 127.0.0.1)"
    if parts.path or parts.query or parts.fragment:
        return "must be scheme://host[:port] only, with no path, query or fragment"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not ORIGIN_HOST.fullmatch(host):
            return f"has an invalid host {host!r}"
    else:
        host = f"[{host}]" if address.version == 6 else host
    shown_port = f":{port}" if port is not None and port != DEFAULT_PORTS[parts.scheme] else ""
    canonical = f"{parts.scheme}://{host}{shown_port}"
    if origin != canonical:
        return f"must be written {canonical!r}, as browsers send it"
    return None


class S3(Section):
    kms_key: str | None = None
    abort_multipart_days: int = Field(ge=1, le=365)
    errors_expire_days: int = Field(ge=1, le=3650)
    cors_origins: list[str] = []
    buckets: Buckets

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            problem = _origin_problem(origin)
            if problem:
                raise ValueError(f"CORS origin {origin!r} {problem}")
        return origins


class Subscription(Section):
    protocol: Literal["email", "email-json", "https", "sms", "sqs", "lambda"]
    endpoint: str = Field(min_length=3)


class Topics(Section):
    ses_issues: names.TopicName
    staff_notifications: names.TopicName
    eb_notifications: names.TopicName
    delete_s3: names.TopicName
    upload_sxd: names.TopicName
    dynamodb: names.TopicName
    # ElastiCache cannot publish to a topic encrypted with KMS (the topic turns inactive and events
    # are lost): its events get this topic of their own, unencrypted, open to this account only.
    cache_events: names.TopicName


class Sns(Section):
    kms_key: str = Field(min_length=1)
    topics: Topics
    staff_subscriptions: list[Subscription] = []


class Queues(Section):
    worker: names.QueueName
    report: names.QueueName


class Sqs(Section):
    kms_key: str | None = None
    visibility_timeout: int = Field(ge=0, le=43200)
    retention_seconds: int = Field(ge=60, le=1209600)
    dead_letter_suffix: str = Field(pattern=r"^[A-Za-z0-9_-]{1,4}$")
    dead_letter_retention_seconds: int = Field(ge=60, le=1209600)
    max_receive_count: int = Field(ge=1, le=1000)
    queues: Queues


class Secrets(Section):
    prefix: names.ParameterPrefix
    kms_key: str = Field(min_length=1)
    required: list[names.SecretName] = []
    # Which role reads which secret, by exact name (IAM grants each role these parameters and no
    # other): `app` the Beanstalk instances, `workers` the ECS task role, `worker_task_definition`
    # what the ECS agent injects into the worker container (execution role), then one list per
    # Lambda function. A reader not listed reads nothing.
    readers: dict[
        Literal[
            "app",
            "workers",
            "worker_task_definition",
            "health",
            "process_upload_sxd",
            "s3image",
            "delete_s3_obj",
        ],
        list[names.SecretName],
    ] = {}


# The only ranges an SSH source may be wider than network.ssh_min_prefix: RFC 1918 and IPv6
# unique local addresses. Not ipaddress.is_private, which on some Python versions also counts
# 2001::/23 (Teredo tunnels to public hosts among them) and changes between versions.
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)


class Network(Section):
    # An existing VPC and its private subnets; when null, the network area makes the stage's own VPC
    # (never the default VPC: its subnets are public).
    vpc_id: str | None = Field(default=None, pattern=r"^vpc-[0-9a-f]{8,17}$")
    subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]] = []
    # The stage's own VPC: its Name tag (its parts are named after it), address range and zones.
    vpc_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    cidr: str = "10.20.0.0/16"
    zones: int = Field(default=2, ge=2, le=6)
    # Outbound access of its private subnets: a NAT gateway per zone, one shared by all zones, or
    # none, with VPC endpoints for the AWS APIs the instances call instead.
    nat: Literal["per_zone", "shared", "none"] = "shared"
    endpoints: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,62}$")]] = []
    # Port 80 out of the application group, beside 443 (Amazon Linux 2 yum mirrors are plain http).
    http_egress: bool = False
    app_security_group: names.GroupName
    data_security_group: names.GroupName
    # Declared before ssh_cidrs, whose validator reads it.
    ssh_min_prefix: int = Field(default=16, ge=8, le=32)
    ssh_cidrs: list[str] = []
    db_subnet_group: names.DbIdentifier
    redshift_subnet_group: names.RedshiftIdentifier
    cache_subnet_group: names.CacheIdentifier

    @field_validator("ssh_cidrs")
    @classmethod
    def _private_ssh(cls, cidrs: list[str], info: ValidationInfo) -> list[str]:
        # Absent when ssh_min_prefix itself is invalid: that error is reported first.
        min_prefix = info.data.get("ssh_min_prefix")
        for cidr in cidrs:
            try:
                network = ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"SSH CIDR {cidr!r} is not a network: {exc}") from None
            if network.prefixlen == 0:
                raise ValueError(f"SSH CIDR {cidr!r} would open SSH to the whole internet")
            if min_prefix is None or any(
                network.version == p.version and network.subnet_of(p) for p in PRIVATE_NETWORKS
            ):
                continue
            # An IPv6 site gets a /48 where an IPv4 organisation gets a /16: same rule, 32 bits on.
            limit = min_prefix if network.version == 4 else min_prefix + 32
            if network.prefixlen < limit:
                raise ValueError(
                    f"SSH CIDR {cidr!r} is wider than /{limit} (network.ssh_min_prefix is "
                    f"{min_prefix}) and not inside a private range (10.0.0.0/8, 172.16.0.0/12, "
                    "192.168.0.0/16, fc00::/7): list narrower ranges"
                )
        return cidrs

    @field_validator("cidr")
    @classmethod
    def _vpc_cidr(cls, cidr: str) -> str:
        try:
            network = ipaddress.ip_network(cidr, strict=True)
        except ValueError as exc:
            raise ValueError(f"VPC CIDR {cidr!r} is not a network: {exc}") from None
        # Each zone gets a private and a public subnet of 1/16 of the range: /22 leaves them 64 addresses.
        rfc1918 = [r for r in PRIVATE_NETWORKS if r.version == 4]
        private = network.version == 4 and any(network.subnet_of(r) for r in rfc1918)  # type: ignore[arg-type]
        if not private or not 16 <= network.prefixlen <= 22:
            raise ValueError(
                f"VPC CIDR {cidr!r} must be a range from /16 to /22 inside 10.0.0.0/8, 172.16.0.0/12 "
                "or 192.168.0.0/16"
            )
        return cidr

    @model_validator(mode="after")
    def _existing_vpc(self) -> Network:
        if self.vpc_id and not self.subnet_ids:
            raise ValueError(
                f"network.vpc_id {self.vpc_id} needs network.subnet_ids: its private subnets "
                "(no route to an internet gateway), in two or more zones"
            )
        if self.subnet_ids and not self.vpc_id:
            raise ValueError("network.subnet_ids needs network.vpc_id: the VPC those subnets are in")
        return self


class LambdaRoles(Section):
    health: names.IamName
    process_upload_sxd: names.IamName
    s3image: names.IamName
    delete_s3_obj: names.IamName


class Iam(Section):
    dev_group: names.IamName
    production_role: names.IamName
    ecs_instance_role: names.IamName
    eb_ec2_role: names.IamName
    eb_service_role: names.IamName
    ecs_task_role: names.IamName
    ecs_execution_role: names.IamName
    firehose_role: names.IamName
    redshift_role: names.IamName
    lambda_roles: LambdaRoles
    dev_policy: names.IamName
    production_policy: names.IamName
    credentials_policy: names.IamName
    worker_credentials_policy: names.IamName
    beanstalk_instance_policy: names.IamName
    beanstalk_service_policy: names.IamName
    streamer_upload_policy: names.IamName
    search_policy: names.IamName
    # Developers' read access to this stage's data needs an MFA session (production's data).
    dev_requires_mfa: bool = True


class Capacity(Section):
    min: int = Field(ge=1, le=40000)
    max: int = Field(ge=1, le=40000)
    target: int = Field(ge=20, le=90)

    @model_validator(mode="after")
    def _ordered(self) -> Capacity:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class Tables(Section):
    worker_logs: names.TableName
    filter_log: names.TableName


class Dynamodb(Section):
    capacity_mode: Literal["provisioned", "on-demand"]
    kms_key: str | None = None
    point_in_time_recovery: bool = True
    worker_logs_ttl_days: int = Field(ge=1, le=3650)
    ttl_attribute: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
    tables: Tables
    read_capacity: Capacity
    write_capacity: Capacity


class Ses(Section):
    domain: str = Field(pattern=r"^[a-z0-9.-]+\.[a-z]{2,}$")


class Dns(Section):
    hosted_zone: str | None = Field(default=None, pattern=r"^[a-z0-9.-]+\.[a-z]{2,}$")
    # Route 53 lets two zones share a name, so one is made only when asked, never as a fallback.
    create_zone: bool = False
    app_record: str | None = Field(default=None, pattern=r"^[a-z0-9.-]+\.[a-z]{2,}$")
    statics_record: str | None = Field(default=None, pattern=r"^[a-z0-9.-]+\.[a-z]{2,}$")
    media_record: str | None = Field(default=None, pattern=r"^[a-z0-9.-]+\.[a-z]{2,}$")


def covers(certificate_name: str, host: str) -> bool:
    """Whether a certificate name (`example.com`, `*.example.com`) covers `host`: a wildcard covers
    exactly one more label."""
    if certificate_name.startswith("*."):
        label, _, rest = host.partition(".")
        return bool(label) and rest == certificate_name[2:]
    return certificate_name == host


class Acm(Section):
    # The first name is the certificate's DomainName, the rest its alternative names (ACM takes 10).
    domains: list[Annotated[str, Field(pattern=r"^(\*\.)?[a-z0-9.-]+\.[a-z]{2,}$")]] = Field(
        default=[], max_length=10
    )
    wait_minutes: int = Field(default=10, ge=0, le=240)


class Key(Section):
    alias: str = Field(pattern=r"^alias/[A-Za-z0-9/_-]{1,250}$")
    service_principals: list[Annotated[str, Field(pattern=r"^[a-z0-9.-]+\.amazonaws\.com$")]] = []


class Kms(Section):
    notifications: Key


class ParameterGroup(Section):
    name: names.DbIdentifier
    family: str = Field(pattern=r"^postgres\d+$")
    parameters: dict[str, str] = {}


class Rds(Section):
    identifier: names.DbIdentifier
    engine_version: str = Field(pattern=r"^\d+(\.\d+)?$")
    instance_class: str = Field(pattern=r"^db\.[a-z0-9]+\.[a-z0-9]+$")
    storage_type: Literal["gp3", "gp2"] = "gp3"  # io1/io2 would need an IOPS setting
    allocated_storage: int = Field(ge=20, le=65536)
    max_allocated_storage: int = Field(ge=20, le=65536)
    multi_az: bool
    backup_retention_days: int = Field(ge=7, le=35)
    database: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    master_username: str = Field(pattern=r"^[a-z][a-z0-9_]{0,15}$")
    master_password_secret: names.SecretName
    kms_key: str | None = None
    parameter_group: ParameterGroup
    wait_minutes: int = Field(ge=1, le=240)

    @model_validator(mode="after")
    def _storage(self) -> Rds:
        if self.max_allocated_storage < self.allocated_storage:
            raise ValueError("max_allocated_storage is below allocated_storage")
        major = self.engine_version.split(".")[0]
        if self.parameter_group.family != f"postgres{major}":
            raise ValueError(
                f"parameter_group.family {self.parameter_group.family!r} does not match "
                f"engine_version {self.engine_version} (postgres{major})"
            )
        return self


class RedshiftCluster(Section):
    enabled: bool = True
    identifier: names.RedshiftIdentifier
    node_type: str = Field(pattern=r"^[a-z0-9]+\.[a-z0-9]+$")
    nodes: int = Field(ge=1, le=128)
    database: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    master_username: str = Field(pattern=r"^[a-z][a-z0-9_]{0,126}$")
    password_secret: names.SecretName


class Redshift(Section):
    stream_data: RedshiftCluster
    timeseries: RedshiftCluster
    snapshot_retention_days: int = Field(ge=1, le=35)
    kms_key: str | None = None
    wait_minutes: int = Field(ge=1, le=240)


class Redis(Section):
    replication_group: names.CacheIdentifier
    node_type: str = Field(pattern=r"^cache\.[a-z0-9]+\.[a-z0-9]+$")
    replicas: int = Field(ge=0, le=5)
    engine_version: str = Field(pattern=r"^\d+(\.\d+)?$")
    automatic_failover: bool
    auth_token_secret: names.SecretName
    snapshot_retention_days: int = Field(ge=0, le=35)
    kms_key: str | None = None
    wait_minutes: int = Field(ge=1, le=240)

    @model_validator(mode="after")
    def _failover(self) -> Redis:
        if self.automatic_failover and self.replicas < 1:
            raise ValueError("automatic_failover needs at least 1 replica")
        return self


class Search(Section):
    domain: names.SearchDomain
    engine_version: str = Field(pattern=r"^(OpenSearch|Elasticsearch)_\d+\.\d+$")
    instance_type: str = Field(pattern=r"^[a-z0-9]+\.[a-z0-9]+\.search$")
    instances: int = Field(ge=1, le=80)
    volume_gb: int = Field(ge=10, le=16384)
    kms_key: str | None = None
    wait_minutes: int = Field(ge=1, le=240)

    @model_validator(mode="after")
    def _even(self) -> Search:
        # Two or more nodes spread over two zones: AWS refuses an odd count.
        if self.instances > 1 and self.instances % 2:
            raise ValueError(
                f"instances must be 1 or even, not {self.instances} (zone awareness over 2 zones)"
            )
        return self


class DeliveryStream(Section):
    name: names.StreamName
    table: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,126}$")
    copy_options: str = Field(min_length=1)
    buffer_seconds: int = Field(ge=0, le=900)
    buffer_mb: int = Field(ge=1, le=128)


# The address range Firehose connects to a Redshift cluster from, one /27 per region, as AWS
# publishes it ("VPC access to an Amazon Redshift cluster" in the Firehose developer guide,
# controlling-access.html#using-iam-rs-vpc). A region missing here needs firehose.direct_cidrs.
FIREHOSE_CIDRS = {
    "us-east-1": "52.70.63.192/27",
    "us-east-2": "13.58.135.96/27",
    "us-west-1": "13.57.135.192/27",
    "us-west-2": "52.89.255.224/27",
    "us-gov-east-1": "18.253.138.96/27",
    "us-gov-west-1": "52.61.204.160/27",
    "ca-central-1": "35.183.92.128/27",
    "ap-east-1": "18.162.221.32/27",
    "ap-south-1": "13.232.67.32/27",
    "ap-northeast-1": "13.113.196.224/27",
    "ap-northeast-2": "13.209.1.64/27",
    "ap-southeast-1": "13.228.64.192/27",
    "ap-southeast-2": "13.210.67.224/27",
    "cn-north-1": "52.81.151.32/27",
    "cn-northwest-1": "161.189.23.64/27",
    "eu-central-1": "35.158.127.160/27",
    "eu-west-1": "52.19.239.192/27",
    "eu-west-2": "18.130.1.96/27",
    "eu-west-3": "35.180.1.96/27",
    "eu-north-1": "13.53.63.224/27",
    "eu-south-1": "15.161.135.128/27",
    "me-south-1": "15.185.91.0/27",
    "sa-east-1": "18.228.1.128/27",
    "af-south-1": "13.244.121.224/27",
}
# The widest range direct_cidrs may list: AWS publishes a /27 per region.
FIREHOSE_MIN_PREFIX = 24


class Firehose(Section):
    # staged (the default): Firehose writes into the staging buckets and the autocopy area's COPY
    # JOBs load them from inside the VPC; the clusters stay private. direct: Firehose connects to
    # the cluster itself, which then must be publicly accessible (in the public subnets) with
    # Redshift's port open to Firehose's published range for the region, never to the world.
    delivery: Literal["staged", "direct"] = "staged"
    # direct only: Firehose's range when the region is not in FIREHOSE_CIDRS (else leave empty).
    direct_cidrs: list[str] = []
    stream_data: DeliveryStream
    timeseries: DeliveryStream

    def streams(self) -> list[tuple[str, DeliveryStream]]:
        """The delivery streams by key (the other fields are settings)."""
        return [(key, value) for key, value in self if isinstance(value, DeliveryStream)]

    @field_validator("direct_cidrs")
    @classmethod
    def _firehose_ranges(cls, cidrs: list[str]) -> list[str]:
        for cidr in cidrs:
            try:
                network = ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"CIDR {cidr!r} is not a network: {exc}") from None
            if network.prefixlen == 0:
                raise ValueError(f"CIDR {cidr!r}: Redshift's port 5439 must never be open to the world")
            if network.version != 4 or network.prefixlen < FIREHOSE_MIN_PREFIX:
                raise ValueError(
                    f"CIDR {cidr!r} is wider than /{FIREHOSE_MIN_PREFIX} or not IPv4: list Firehose's "
                    "published range for the region (a /27)"
                )
            if not network.is_global:
                raise ValueError(
                    f"CIDR {cidr!r} is not a public range: Firehose connects from its own public "
                    "addresses (its published range for the region)"
                )
        return cidrs

    @model_validator(mode="after")
    def _direct_only(self) -> Firehose:
        if self.direct_cidrs and self.delivery != "direct":
            raise ValueError("direct_cidrs is for delivery: direct only (staged delivery opens no port)")
        return self


class EbTrigger(Section):
    """The Auto Scaling trigger of the environment (aws:autoscaling:trigger)."""

    measure: Literal["CPUUtilization", "NetworkIn", "NetworkOut", "Latency", "RequestCount"] = (
        "CPUUtilization"
    )
    statistic: Literal["Average", "Minimum", "Maximum", "Sum"] = "Average"
    unit: Literal["Percent", "Bytes", "Seconds", "Count"] = "Percent"
    upper: int = Field(default=70, ge=0)
    lower: int = Field(default=30, ge=0)
    period_minutes: int = Field(default=5, ge=1, le=60)
    breach_minutes: int = Field(default=5, ge=1, le=600)


# The retention periods CloudWatch Logs accepts (aws:elasticbeanstalk:cloudwatch:logs RetentionInDays).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)


class Eb(Section):
    application: names.EbApplication
    environment: names.EbEnvironment
    instance_type: str = Field(pattern=r"^[a-z0-9]+\.[a-z0-9]+$")
    min_instances: int = Field(ge=1, le=100)
    max_instances: int = Field(ge=1, le=100)
    health_url: str = Field(pattern=r"^/")
    # The platform: a solution stack name, or a platform ARN instead (then solution_stack is ignored).
    solution_stack: str = Field(default="64bit Amazon Linux 2023 v4.6.0 running Python 3.12", min_length=1)
    platform_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:elasticbeanstalk:")
    cname_prefix: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{2,61}[a-z0-9]$")
    key_name: str | None = Field(default=None, min_length=1, max_length=255)
    # An ACM certificate: the load balancer gets an HTTPS listener on 443 with it.
    certificate_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/"
    )
    ssl_policy: str = Field(
        default="ELBSecurityPolicy-TLS13-1-2-2021-06", pattern=r"^ELBSecurityPolicy-[A-Za-z0-9-]+$"
    )
    trigger: EbTrigger = EbTrigger()
    stream_logs: bool = True
    log_retention_days: int = 30
    # Plain settings for the app; secrets never go here (they are secrets.readers.app, by ARN).
    environment_variables: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")], str] = {}
    deploy_timeout_minutes: int = Field(default=20, ge=1, le=180)

    @model_validator(mode="after")
    def _sizes(self) -> Eb:
        if self.min_instances > self.max_instances:
            raise ValueError(
                f"min_instances ({self.min_instances}) is above max_instances ({self.max_instances})"
            )
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ValueError(f"log_retention_days must be one of {', '.join(map(str, LOG_RETENTION_DAYS))}")
        if self.trigger.lower >= self.trigger.upper:
            raise ValueError("trigger.lower must be below trigger.upper")
        return self


class Ecs(Section):
    repository: names.EcrRepository
    # ECR keeps this many images (the newest); older ones expire by a lifecycle rule.
    keep_images: int = Field(default=20, ge=1, le=1000)
    cluster: names.EcsName
    task_definition: names.EcsName
    service: names.EcsName
    workers: int = Field(ge=0, le=100)
    # The worker container: CPU units (1024 = one vCPU) and hard memory limit in MiB.
    cpu: int = Field(default=256, ge=128, le=10240)
    memory: int = Field(default=512, ge=128, le=122880)
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653] = (
        30
    )
    # Seconds a worker long-polls the queue (SQS allows 0 to 20).
    wait_seconds: int = Field(default=20, ge=0, le=20)
    instance_type: str = Field(pattern=r"^[a-z0-9]+\.[a-z0-9]+$")
    volume_gb: int = Field(default=30, ge=30, le=16384)
    min_instances: int = Field(ge=0, le=100)
    max_instances: int = Field(ge=1, le=100)
    # Managed scaling keeps the instances this full (percent) of what the tasks reserve.
    target_capacity: int = Field(default=100, ge=1, le=100)
    # Plain settings for the worker container, beside the ones the tool sets (queue, table, topic);
    # secrets never go here (they are secrets.readers.worker_task_definition, by ARN).
    environment: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")], str] = {}
    shutdown_timeout_seconds: int = Field(default=600, ge=1, le=3600)
    deploy_timeout_minutes: int = Field(default=15, ge=1, le=180)

    @model_validator(mode="after")
    def _sizes(self) -> Ecs:
        if self.min_instances > self.max_instances:
            raise ValueError("min_instances must not be above max_instances")
        return self


class Functions(Section):
    health: names.FunctionName
    process_upload_sxd: names.FunctionName
    s3image: names.FunctionName
    delete_s3_obj: names.FunctionName


class FunctionFolders(Section):
    """The folder under lambdas.source holding each function (its function.yaml and code)."""

    health: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    process_upload_sxd: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    s3image: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    delete_s3_obj: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")


class DeploymentBuckets(Section):
    health: names.BucketName
    process_upload_sxd: names.BucketName
    s3image: names.BucketName
    delete_s3_obj: names.BucketName


class ImageSizes(Section):
    """Longest edge in pixels of each rendition s3image writes."""

    tiny: int = Field(ge=8, le=10000)
    small: int = Field(ge=8, le=10000)
    medium: int = Field(ge=8, le=10000)


# The values CloudWatch Logs accepts for a retention policy.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192)
ENV_VAR = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class Lambdas(Section):
    health_schedules: list[names.RuleName]
    functions: Functions
    source: str = Field(default="serverless", min_length=1)  # relative to the working directory
    folders: FunctionFolders
    deployment_buckets: DeploymentBuckets
    log_retention_days: int
    # Per folder: VAR -> value, over the function.yaml's own (placeholders {stage} {region} {account}).
    environment: dict[str, dict[str, str]] = {}
    image_sizes: ImageSizes
    # The buckets deleteS3Obj may delete from (ALLOWED_BUCKETS).
    allowed_buckets: list[names.BucketName]

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, days: int) -> int:
        if days not in LOG_RETENTION_DAYS:
            raise ValueError(f"{days} is not a CloudWatch Logs retention: one of {LOG_RETENTION_DAYS}")
        return days

    @field_validator("environment")
    @classmethod
    def _environment(cls, environment: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for folder, variables in environment.items():
            for name in variables:
                if not ENV_VAR.match(name) or name.startswith("AWS_"):
                    raise ValueError(f"{folder}.{name}: not a variable name Lambda accepts")
            check_plain_settings(variables, f"{folder}.")
        return environment


class CdnAliases(Section):
    statics: str | None = Field(default=None, pattern=r"^[a-z0-9.-]+\.[a-z]{2,}$")
    media: str | None = Field(default=None, pattern=r"^[a-z0-9.-]+\.[a-z]{2,}$")


class CdnStatics(Section):
    source: str = Field(min_length=1)
    # A folder of the shared statics bucket: one to four segments, e.g. "{stage}/static".
    prefix: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}(/[a-z0-9][a-z0-9_-]{0,62}){0,3}$")
    cache_control: str = Field(min_length=1)
    cache_control_hashed: str = Field(min_length=1)
    invalidate_all_above: int = Field(ge=1, le=3000)
    upload_workers: int = Field(ge=1, le=64)


class Cdn(Section):
    enabled: bool = True
    price_class: Literal["PriceClass_100", "PriceClass_200", "PriceClass_All"]
    # CloudFront takes certificates from us-east-1 only, whatever the stage's region.
    certificate_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:acm:us-east-1:\d{12}:certificate/[0-9a-f-]{36}$"
    )
    aliases: CdnAliases = CdnAliases()
    wait_minutes: int = Field(ge=1, le=240)
    # `down` removes the distributions too (disable, wait, delete); off by default: a new one gets a
    # new domain name, which the app's STATIC_URL and any alias must then follow.
    remove_on_down: bool = False
    statics: CdnStatics


class Emulator(Section):
    enabled: bool = False


class StageConfig(Section):
    project: str = Field(pattern=r"^[a-z][a-z0-9-]{1,30}$")
    region: str
    profile: str | None = None
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(:\d+)?/?$")
    domain: str = Field(pattern=r"^[a-z0-9.-]+\.[a-z]{2,}$")
    tags: dict[str, str]
    emulator: Emulator = Emulator()
    aws: Aws = Aws()
    waits: Waits
    s3: S3
    sns: Sns
    sqs: Sqs
    secrets: Secrets
    network: Network
    iam: Iam
    dynamodb: Dynamodb
    ses: Ses
    dns: Dns = Dns()
    acm: Acm = Acm()
    kms: Kms
    rds: Rds
    redshift: Redshift
    redis: Redis
    search: Search
    firehose: Firehose
    eb: Eb
    ecs: Ecs
    lambdas: Lambdas
    cdn: Cdn
    # Names rendered from a template holding `{stage}`: every other name is shared by all stages.
    _stage_scoped: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="after")
    def _eb_secrets_by_reference(self) -> StageConfig:
        # A secret in eb.environment_variables would be a value in the environment's settings.
        clash = sorted(set(self.eb.environment_variables) & set(self.secrets.readers.get("app", [])))
        if clash:
            raise ValueError(
                f"eb.environment_variables: {', '.join(clash)} is a secret (secrets.readers.app): "
                "Beanstalk gets it by Parameter Store ARN, never as a value"
            )
        return self

    @model_validator(mode="after")
    def _worker_secrets_by_reference(self) -> StageConfig:
        readers = self.secrets.readers
        secret = set(readers.get("worker_task_definition", [])) | set(readers.get("workers", []))
        clash = sorted(set(self.ecs.environment) & secret)
        if clash:
            raise ValueError(
                f"ecs.environment: {', '.join(clash)} is a secret (secrets.readers): the worker gets it "
                "from Parameter Store, never as a value"
            )
        return self

    @model_validator(mode="after")
    def _no_secret_among_plain_settings(self) -> StageConfig:
        # After the two checks above, which name a secret config already knows more precisely.
        for key, variables in (
            ("eb.environment_variables", self.eb.environment_variables),
            ("ecs.environment", self.ecs.environment),
        ):
            try:
                check_plain_settings(variables)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return self

    @model_validator(mode="after")
    def _cdn_aliases_have_a_certificate(self) -> StageConfig:
        # CloudFront serves an alias only with a certificate that covers it: cdn.certificate_arn,
        # else the acm area's certificate for acm.domains.
        if self.cdn.certificate_arn:
            return self
        for which, alias in (("statics", self.cdn.aliases.statics), ("media", self.cdn.aliases.media)):
            if alias and not any(covers(name, alias) for name in self.acm.domains):
                raise ValueError(
                    f"cdn.aliases.{which}: {alias} is not covered by acm.domains and cdn.certificate_arn "
                    "is not set (CloudFront serves an alias only with a certificate for it)"
                )
        return self

    @model_validator(mode="after")
    def _direct_delivery(self) -> StageConfig:
        if self.firehose.delivery != "direct":
            return self
        if self.network.vpc_id:
            raise ValueError(
                "firehose.delivery: direct puts the Redshift clusters in public subnets, which a "
                "configured VPC (network.vpc_id, private subnets only) does not give: use staged"
            )
        if self.region not in FIREHOSE_CIDRS and not self.firehose.direct_cidrs:
            raise ValueError(
                f"firehose.direct_cidrs: the published Firehose range for {self.region} is not known "
                "to this tool: list it (see the Firehose developer guide, VPC access to Redshift)"
            )
        return self

    def firehose_cidrs(self) -> list[str]:
        """The ranges Redshift's port admits from outside the VPC: Firehose's published range for
        the region in direct delivery, none when staged."""
        if self.firehose.delivery != "direct":
            return []
        return list(self.firehose.direct_cidrs) or [FIREHOSE_CIDRS[self.region]]

    def is_shared(self, name: str) -> bool:
        """True for a resource every stage uses (a bucket, a topic without `{stage}` in its name)."""
        return name not in self._stage_scoped

    @field_validator("region")
    @classmethod
    def _region(cls, region: str) -> str:
        known = known_regions()
        if region not in known:
            import difflib

            import botocore

            close = difflib.get_close_matches(region, sorted(known), n=3, cutoff=0.6)
            hint = f"; did you mean {_either(close)}?" if close else ""
            raise ValueError(
                f"{region!r} is not one of the {len(known)} AWS regions botocore {botocore.__version__} "
                f"knows{hint} (a region newer than botocore needs a newer botocore)"
            )
        return region

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: dict[str, str]) -> dict[str, str]:
        for key, value in tags.items():
            if not 1 <= len(key) <= 128 or len(value) > 256 or key.startswith("aws:"):
                raise ValueError(f"tag {key!r} is not a valid AWS tag")
        return tags


def _either(words: list[str]) -> str:
    """`a`, `a or b`, `a, b or c`."""
    return " or ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


@functools.cache
def known_regions() -> frozenset[str]:
    """Every region in botocore's partitions data (offline), without the `aws-global` pseudo-regions."""
    from deploy.aws.models import shared_loader

    partitions = shared_loader().load_data("partitions")["partitions"]
    return frozenset(
        region for p in partitions for region in p.get("regions", {}) if not region.endswith("-global")
    )


def config_dir() -> Path:
    return Path(os.environ.get("DEPLOY_CONFIG_DIR") or Path.cwd() / "config")


def default_stage() -> str:
    return os.environ.get("DEPLOY_STAGE") or DEFAULT_STAGE


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# YAML tags of the scalars YAML reads as numbers: written where text belongs, they need quotes.
NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})
KeyPath = tuple[Any, ...]


@dataclass(frozen=True)
class YamlFile:
    """One config file: its data, and the text of each scalar YAML read as a number, by key path."""

    data: dict[str, Any]
    numbers: dict[KeyPath, str]


def _read_yaml(path: Path, *, stage: str | None = None) -> YamlFile:
    """Read one config file. `stage`: the stage whose file this is (a missing one lists the others)."""
    shown = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        message = "file not found"
        if stage is not None:
            others = stage_names(path.parent)
            message += f": no stage {stage!r} here; the stages are {', '.join(others) or 'none'}"
        raise ConfigError(shown, "", message) from None
    except OSError as exc:
        raise ConfigError(shown, "", f"cannot read: {exc.strerror}") from None
    # libyaml's parser when PyYAML has it (same nodes and marks, several times faster).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        numbers: dict[KeyPath, str] = {}
        if node is not None:
            _check_keys(node, (), shown, numbers, set())
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "YAML"
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(shown, where, str(problem)) from None
    finally:
        loader.dispose()
    if data is None:
        return YamlFile({}, {})
    if not isinstance(data, dict):
        raise ConfigError(shown, "", "top level must be a mapping of keys")
    return YamlFile(data, numbers)


def _check_keys(
    node: yaml.Node, at: KeyPath, shown: str, numbers: dict[KeyPath, str], seen: set[int]
) -> None:
    """Refuse a key given twice in one mapping (YAML would keep the last silently), and note the
    text of every number, walking the node tree before it becomes data."""
    if id(node) in seen:  # an alias of a node already walked
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node.value)
            line = key_node.start_mark.line + 1
            if key in lines and key != "<<":
                where = ".".join(str(part) for part in (*at, key))
                raise ConfigError(
                    shown, where, f"duplicate key: on line {lines[key]} and again on line {line}; keep one"
                )
            lines[key] = line
            _check_keys(value_node, (*at, key), shown, numbers, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_keys(item, (*at, index), shown, numbers, seen)
    elif node.tag in NUMBER_TAGS:
        numbers[at] = node.value


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _render(value: Any, stage: str, domain: str) -> Any:
    """Fill `{stage}` and `{domain}` into every string."""
    if isinstance(value, str):
        return value.replace("{stage}", stage).replace("{domain}", domain)
    if isinstance(value, dict):
        return {key: _render(item, stage, domain) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, stage, domain) for item in value]
    return value


def _templated(value: Any, stage: str, domain: str) -> set[str]:
    """Every rendered string whose template held `{stage}`: the stage-scoped names."""
    if isinstance(value, str):
        return {_render(value, stage, domain)} if "{stage}" in value else set()
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return set().union(*(_templated(item, stage, domain) for item in items))


def _has_path(data: Any, loc: tuple[Any, ...]) -> bool:
    for part in loc:
        if (isinstance(data, dict) and part in data) or (
            isinstance(data, list) and isinstance(part, int) and part < len(data)
        ):
            data = data[part]
        else:
            return False
    return True


def _first_error(
    exc: ValidationError, stage: YamlFile, stage_file: Path, defaults: YamlFile, defaults_file: Path
) -> ConfigError:
    error = exc.errors()[0]
    # A bad key of a mapping is reported at the key itself, not at pydantic's `[key]` marker.
    loc = tuple(part for part in error["loc"] if part != "[key]")
    key = ".".join(str(part) for part in loc)
    in_stage = _has_path(stage.data, loc)
    source, numbers = (stage_file, stage.numbers) if in_stage else (defaults_file, defaults.numbers)
    return ConfigError(_display(source), key, _message(error, numbers.get(loc)))


def _message(error: Any, number_text: str | None) -> str:
    """pydantic's message in the words of a config file (no class names: a section is a mapping)."""
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        key = str(error["loc"][-1]) if error["loc"] else ""
        return f"unknown key; {SECRET_ADVICE}" if is_secret_name(key) else "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind in ("model_type", "dict_type"):
        if value is None:
            return "is empty: give its settings below it, or remove the line to keep the defaults"
        return f"must be a section of `key: value` lines, not {_yaml_kind(value)}"
    if kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        text = number_text or str(value)
        read = f"; YAML reads {text} unquoted as the number {value!r}" if text != str(value) else ""
        return f'must be text, not a number: write it in quotes, "{text}"{read}'
    return str(error["msg"]).removeprefix("Value error, ")


def _yaml_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "a list"
    return f"the text {value!r}" if isinstance(value, str) else type(value).__name__


def load_config(stage: str, directory: Path | None = None) -> StageConfig:
    """Load and validate one stage's config; raise ConfigError naming the file and key."""
    directory = directory or config_dir()
    try:
        names.check_stage_name(stage)
    except ValueError as exc:
        raise ConfigError("--stage", "", str(exc)) from None
    defaults_file = directory / "defaults.yaml"
    stage_file = directory / f"{stage}.yaml"
    defaults = _read_yaml(defaults_file)
    stage_yaml = _read_yaml(stage_file, stage=stage)
    raw = _merge(defaults.data, stage_yaml.data)
    try:
        domain = raw.get("domain") if isinstance(raw.get("domain"), str) else ""
        config = StageConfig.model_validate(_render(raw, stage, domain))
    except ValidationError as exc:
        raise _first_error(exc, stage_yaml, stage_file, defaults, defaults_file) from None
    config._stage_scoped = frozenset(_templated(raw, stage, domain))
    return config


def stage_names(directory: Path | None = None) -> list[str]:
    """Every stage that has a file in the config folder."""
    directory = directory or config_dir()
    return sorted(p.stem for p in directory.glob("*.yaml") if p.stem != "defaults")
