"""Firehose: the delivery streams that stage worker records in S3 and COPY them into Redshift
(stream data; time series when enabled), encrypted, with delivery errors logged to CloudWatch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.cli import area_tasks
from deploy.errors import AwsError
from deploy.parallel import map_concurrently
from deploy.plan import Call, Deferred, Resource, Step, Wait, converge

if TYPE_CHECKING:
    from deploy.stage import Stage

AREA = "firehose"
# Needs first: its role, the staging buckets, the Redshift cluster it delivers into.
AFTER: tuple[str, ...] = ("iam", "s3", "redshift")
STREAM_KIND = "delivery stream"
LOG_KIND = "log group"
# (firehose config key, staging bucket config key): each stream delivers into the cluster of
# the same key in redshift config.
STREAMS = (("stream_data", "stream_in"), ("timeseries", "timeseries_kinesis"))
LOG_RETENTION_DAYS = 30
S3_LOG_STREAM = "S3Delivery"
REDSHIFT_LOG_STREAM = "RedshiftDelivery"
RETRY_SECONDS = 3600
ENCRYPTION = {"KeyType": "AWS_OWNED_CMK"}
ENCRYPTION_ON = ("ENABLED", "ENABLING")
# Redshift COPY reads the staged objects as they are: compressing them would need `gzip` in the
# COPY options.
COMPRESSION = "UNCOMPRESSED"


@dataclass(frozen=True)
class StreamSpec:
    """One delivery stream as config wants it."""

    which: str
    name: str
    table: str
    copy_options: str
    buffer_seconds: int
    buffer_mb: int
    bucket: str
    prefix: str
    role_arn: str
    cluster: str
    username: str
    password_secret: str
    log_group: str
    tags: dict[str, str]

    @property
    def error_prefix(self) -> str:
        return f"{self.prefix}errors/"


@dataclass
class StreamState:
    """One delivery stream as Firehose has it."""

    exists: bool
    status: str = ""
    arn: str = ""
    version_id: str = ""
    destination_id: str = ""
    redshift: dict[str, Any] = field(default_factory=dict)
    encryption: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def encrypted(self) -> bool:
        status = self.encryption.get("Status")
        if status is None:
            # AWS always reports Status; an emulator that keeps only the KeyType it was given
            # still means the stream was created encrypted.
            return bool(self.encryption.get("KeyType"))
        return status in ENCRYPTION_ON


@dataclass(frozen=True)
class LogGroupSpec:
    name: str
    streams: tuple[str, ...]
    retention_days: int
    tags: dict[str, str]


@dataclass(frozen=True)
class LogGroupState:
    exists: bool
    retention_days: int | None = None
    streams: frozenset[str] = frozenset()


def stream_specs(stage: Stage) -> list[StreamSpec]:
    from deploy.areas.iam import role_arn
    from deploy.areas.redshift import enabled_clusters
    from deploy.policies import log_groups

    config = stage.config
    enabled = enabled_clusters(stage)
    specs = []
    for which, bucket_key in STREAMS:
        if which not in enabled:
            continue
        stream = getattr(config.firehose, which)
        cluster = getattr(config.redshift, which)
        specs.append(
            StreamSpec(
                which=which,
                name=stream.name,
                table=stream.table,
                copy_options=stream.copy_options,
                buffer_seconds=stream.buffer_seconds,
                buffer_mb=stream.buffer_mb,
                bucket=getattr(config.s3.buckets, bucket_key).name,
                # The IAM policies give Firehose and COPY this stage's folder only.
                prefix=f"{stage.name}/",
                role_arn=role_arn(stage, config.iam.firehose_role),
                cluster=cluster.identifier,
                username=cluster.master_username,
                password_secret=cluster.password_secret,
                log_group=log_groups(stage)["firehose"],
                tags=stage.tags(stream.name),
            )
        )
    return specs


def log_group_spec(stage: Stage) -> LogGroupSpec:
    from deploy.policies import log_groups

    # Named per stage in code, not in config: tag it as the stage's own.
    name = log_groups(stage)["firehose"]
    return LogGroupSpec(name, (S3_LOG_STREAM, REDSHIFT_LOG_STREAM), LOG_RETENTION_DAYS, stage.tags())


# -- reading -----------------------------------------------------------------------------------


def _absent(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return code == "ResourceNotFoundException"


def _describe(stage: Stage, name: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        return stage.client("firehose").describe_delivery_stream(DeliveryStreamName=name)[
            "DeliveryStreamDescription"
        ]
    except ClientError as exc:
        if _absent(exc):
            return None
        raise


def read_stream(stage: Stage, name: str) -> StreamState:
    found = _describe(stage, name)
    if found is None:
        return StreamState(exists=False)
    destinations = found.get("Destinations", [])
    destination = destinations[0] if destinations else {}
    tags = stage.client("firehose").list_tags_for_delivery_stream(DeliveryStreamName=name).get("Tags", [])
    return StreamState(
        exists=True,
        status=found.get("DeliveryStreamStatus", ""),
        arn=found.get("DeliveryStreamARN", ""),
        version_id=found.get("VersionId", ""),
        destination_id=destination.get("DestinationId", ""),
        redshift=destination.get("RedshiftDestinationDescription", {}),
        encryption=found.get("DeliveryStreamEncryptionConfiguration") or {},
        tags={tag["Key"]: tag.get("Value", "") for tag in tags},
    )


def stream_status(name: str) -> Callable[[Stage], str]:
    def probe(stage: Stage) -> str:
        found = _describe(stage, name)
        return found.get("DeliveryStreamStatus", "") if found else "missing"

    return probe


def read_log_group(stage: Stage, name: str) -> LogGroupState:
    from botocore.exceptions import ClientError

    logs = stage.client("logs")
    groups = logs.describe_log_groups(logGroupNamePrefix=name).get("logGroups", [])
    found = next((group for group in groups if group["logGroupName"] == name), None)
    if found is None:
        return LogGroupState(exists=False)
    try:
        pages = logs.get_paginator("describe_log_streams").paginate(logGroupName=name)
        streams = frozenset(s["logStreamName"] for page in pages for s in page.get("logStreams", []))
    except ClientError as exc:
        if not _absent(exc):
            raise
        streams = frozenset()
    return LogGroupState(True, found.get("retentionInDays"), streams)


def _cluster_url(stage: Stage, spec: StreamSpec) -> str | None:
    from deploy.areas.redshift import jdbc_url

    return jdbc_url(stage, spec.which)


def _url_once_available(spec: StreamSpec) -> Deferred:
    def resolve(stage: Stage) -> str:
        url = _cluster_url(stage, spec)
        if url is None:
            raise AwsError(
                "ClusterNotFound",
                f"Redshift cluster {spec.cluster} has no endpoint, so {spec.name} cannot deliver to it",
                "Run `inv redshift.create --stage <stage>` (it waits until the cluster is available), "
                "then rerun.",
            )
        return url

    return Deferred(f"JDBC URL of Redshift cluster {spec.cluster}", resolve)


def _password(spec: StreamSpec) -> Deferred:
    def resolve(stage: Stage) -> str:
        from deploy.secrets import read_secret

        return read_secret(stage, spec.password_secret)[1]

    return Deferred(f"{spec.password_secret} from Parameter Store", resolve)


# -- planning ----------------------------------------------------------------------------------


def _logging(spec: StreamSpec, stream: str) -> dict[str, Any]:
    return {"Enabled": True, "LogGroupName": spec.log_group, "LogStreamName": stream}


def s3_configuration(spec: StreamSpec) -> dict[str, Any]:
    return {
        "RoleARN": spec.role_arn,
        "BucketARN": f"arn:aws:s3:::{spec.bucket}",
        "Prefix": spec.prefix,
        "ErrorOutputPrefix": spec.error_prefix,
        "BufferingHints": {"SizeInMBs": spec.buffer_mb, "IntervalInSeconds": spec.buffer_seconds},
        "CompressionFormat": COMPRESSION,
        "CloudWatchLoggingOptions": _logging(spec, S3_LOG_STREAM),
    }


def redshift_settings(spec: StreamSpec) -> dict[str, Any]:
    """The destination settings compared and updated in place (everything but URL and login)."""
    return {
        "RoleARN": spec.role_arn,
        "CopyCommand": {"DataTableName": spec.table, "CopyOptions": spec.copy_options},
        "CloudWatchLoggingOptions": _logging(spec, REDSHIFT_LOG_STREAM),
        "RetryOptions": {"DurationInSeconds": RETRY_SECONDS},
    }


def _create_steps(stage: Stage, spec: StreamSpec, url: str | Deferred) -> list[Step]:
    destination = {
        **redshift_settings(spec),
        "ClusterJDBCURL": url,
        "Username": spec.username,
        "Password": _password(spec),
        "S3Configuration": s3_configuration(spec),
    }
    params = {
        "DeliveryStreamName": spec.name,
        "DeliveryStreamType": "DirectPut",
        "DeliveryStreamEncryptionConfigurationInput": dict(ENCRYPTION),
        "RedshiftDestinationConfiguration": destination,
        "Tags": stage.tag_list(spec.tags),
    }
    # The password is a Deferred read at call time: plans show only where it comes from.
    call = Call(
        "firehose",
        "CreateDeliveryStream",
        params,
        spec.name,
        "delivery stream does not exist",
        sensitive=("RedshiftDestinationConfiguration.Password",),
    )
    return [call, _wait(stage, spec, "new delivery stream is being created")]


def _wait(stage: Stage, spec: StreamSpec, reason: str) -> Wait:
    return Wait(
        spec.name,
        reason,
        stream_status(spec.name),
        ready=frozenset({"ACTIVE"}),
        failed=frozenset({"CREATING_FAILED", "DELETING", "DELETING_FAILED"}),
        timeout_seconds=stage.config.waits.timeout_seconds,
    )


def _logging_of(described: dict[str, Any]) -> dict[str, Any]:
    options = described.get("CloudWatchLoggingOptions") or {}
    return {k: options.get(k) for k in ("Enabled", "LogGroupName", "LogStreamName")}


def destination_drift(spec: StreamSpec, actual: dict[str, Any], url: str | None) -> list[str]:
    """What differs between config and a RedshiftDestinationDescription, in words."""
    want_s3, have_s3 = s3_configuration(spec), actual.get("S3DestinationDescription") or {}
    copy = actual.get("CopyCommand") or {}
    checks = [
        ("role", spec.role_arn, actual.get("RoleARN")),
        ("table", spec.table, copy.get("DataTableName")),
        ("copy options", spec.copy_options.strip(), (copy.get("CopyOptions") or "").strip()),
        ("retry duration", RETRY_SECONDS, (actual.get("RetryOptions") or {}).get("DurationInSeconds")),
        ("Redshift error logging", _logging(spec, REDSHIFT_LOG_STREAM), _logging_of(actual)),
        ("staging role", want_s3["RoleARN"], have_s3.get("RoleARN")),
        ("staging bucket", want_s3["BucketARN"], have_s3.get("BucketARN")),
        ("prefix", spec.prefix, have_s3.get("Prefix")),
        ("error prefix", spec.error_prefix, have_s3.get("ErrorOutputPrefix")),
        ("buffering", want_s3["BufferingHints"], have_s3.get("BufferingHints")),
        ("compression", COMPRESSION, have_s3.get("CompressionFormat")),
        ("S3 error logging", want_s3["CloudWatchLoggingOptions"], _logging_of(have_s3)),
    ]
    if url is not None:
        checks.append(("cluster URL", url, actual.get("ClusterJDBCURL")))
        checks.append(("user", spec.username, actual.get("Username")))
    return [what for what, want, have in checks if want != have]


def _update_call(spec: StreamSpec, state: StreamState, url: str | Deferred, drift: list[str]) -> Call:
    s3_update = s3_configuration(spec)
    update: dict[str, Any] = {**redshift_settings(spec), "S3Update": s3_update}
    if not state.redshift:
        # Not a Redshift destination yet: switching needs the whole connection.
        update.update(ClusterJDBCURL=url, Username=spec.username, Password=_password(spec))
    elif "cluster URL" in drift or "user" in drift:
        update.update(ClusterJDBCURL=url, Username=spec.username)
    params = {
        "DeliveryStreamName": spec.name,
        "CurrentDeliveryStreamVersionId": state.version_id,
        "DestinationId": state.destination_id,
        "RedshiftDestinationUpdate": update,
    }
    reason = f"{', '.join(drift)} differ from config"
    return Call(
        "firehose",
        "UpdateDestination",
        params,
        spec.name,
        reason,
        sensitive=("RedshiftDestinationUpdate.Password",),
    )


def _drift_steps(stage: Stage, spec: StreamSpec, state: StreamState, url: str | None) -> list[Step]:
    steps: list[Step] = []
    drift = (
        destination_drift(spec, state.redshift, url) if state.redshift else ["destination is not Redshift"]
    )
    if drift:
        steps.append(_update_call(spec, state, url or _url_once_available(spec), drift))
    if not state.encrypted:
        params = {
            "DeliveryStreamName": spec.name,
            "DeliveryStreamEncryptionConfigurationInput": dict(ENCRYPTION),
        }
        reason = "server-side encryption is off"
        steps.append(Call("firehose", "StartDeliveryStreamEncryption", params, spec.name, reason))
    drifted = {k: v for k, v in spec.tags.items() if state.tags.get(k) != v}
    if drifted:
        params = {"DeliveryStreamName": spec.name, "Tags": stage.tag_list(drifted)}
        steps.append(Call("firehose", "TagDeliveryStream", params, spec.name, "tags differ from config"))
    return steps


def plan_stream(stage: Stage, spec: StreamSpec, state: StreamState, url: str | None) -> Resource:
    detail = f"{spec.cluster}: {spec.table} via s3://{spec.bucket}/{spec.prefix}"
    if not state.exists:
        steps = _create_steps(stage, spec, url or _url_once_available(spec))
    elif state.status == "CREATING":
        steps = [_wait(stage, spec, "delivery stream is being created")]
    elif state.status != "ACTIVE":
        steps = []
        detail = f"{state.status}: not changed while in this state"
    else:
        steps = _drift_steps(stage, spec, state, url)
    return converge(
        AREA, STREAM_KIND, spec.name, steps, exists=state.exists, detail=detail, depends_on=[spec.log_group]
    )


def plan_log_group(stage: Stage, spec: LogGroupSpec, state: LogGroupState) -> Resource:
    steps: list[Call] = []
    name = spec.name
    if not state.exists:
        params = {"logGroupName": name, "tags": spec.tags}
        steps.append(Call("logs", "CreateLogGroup", params, name, "log group does not exist"))
    if state.retention_days != spec.retention_days:
        params = {"logGroupName": name, "retentionInDays": spec.retention_days}
        reason = f"delivery errors kept {state.retention_days or 'forever'}, not {spec.retention_days} days"
        steps.append(Call("logs", "PutRetentionPolicy", params, name, reason))
    for stream in spec.streams:
        if stream not in state.streams:
            params = {"logGroupName": name, "logStreamName": stream}
            steps.append(Call("logs", "CreateLogStream", params, name, f"log stream {stream} does not exist"))
    kept = f"{state.retention_days} days" if state.retention_days else "forever"
    detail = f"delivery errors kept {kept}" if state.exists else ""
    return converge(AREA, LOG_KIND, name, steps, exists=state.exists, detail=detail)


def plan(stage: Stage) -> list[Resource]:
    group = log_group_spec(stage)
    specs = stream_specs(stage)
    reads: list[Callable[[], Any]] = [
        partial(read_log_group, stage, group.name),
        *(partial(read_stream, stage, spec.name) for spec in specs),
        *(partial(_cluster_url, stage, spec) for spec in specs),
    ]
    group_state, *found = map_concurrently(lambda read: read(), reads)
    states, urls = found[: len(specs)], found[len(specs) :]
    return [
        plan_log_group(stage, group, group_state),
        *(plan_stream(stage, spec, state, url) for spec, state, url in zip(specs, states, urls, strict=True)),
    ]


# -- tasks -------------------------------------------------------------------------------------


create, status = area_tasks(AREA, "the delivery streams into Redshift and their error log group", plan)
collection = Collection(AREA, create, status)
