"""Firehose: the delivery streams that stage worker records in S3 (stream data; time series when
enabled), encrypted, with delivery errors logged to CloudWatch. Staged delivery (the default):
Redshift loads the staged records itself, through the auto-copy jobs of the autocopy area, since
Firehose cannot write into a private cluster with enhanced VPC routing, which is what the redshift
area makes. Direct delivery (firehose.delivery: direct): the stream COPYs into the cluster itself,
over its public endpoint, which the network area opens to Firehose's published range only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.cli import area_tasks
from deploy.errors import AwsError
from deploy.parallel import map_concurrently
from deploy.plan import Call, Deferred, Resource, Step, Wait, converge, differs, tag_drift

if TYPE_CHECKING:
    from deploy.stage import Stage

AREA = "firehose"
# What other areas may call here (the tests hold them to it): where the records are staged.
LOOKUPS = ("staging_bucket", "staging_url")
# Needs first: its role, the staging buckets, and the cluster its records are for (no stream
# stages records before the cluster that loads them exists).
AFTER: tuple[str, ...] = ("iam", "s3", "redshift")
STREAM_KIND = "delivery stream"
LOG_KIND = "log group"
# (firehose config key, staging bucket config key): each stream stages the records of the cluster
# of the same key in redshift config, and exists only while that cluster is enabled.
STREAMS = (("stream_data", "stream_in"), ("timeseries", "timeseries_kinesis"))
LOG_RETENTION_DAYS = 30
S3_LOG_STREAM = "S3Delivery"
REDSHIFT_LOG_STREAM = "RedshiftDelivery"
# Direct delivery: how long Firehose retries a COPY that failed before it gives the batch up
# (its manifest stays under the error prefix).
RETRY_SECONDS = 3600
ENCRYPTION = {"KeyType": "AWS_OWNED_CMK"}
ENCRYPTION_ON = ("ENABLED", "ENABLING")
# The COPY of the auto-copy job reads the staged objects as they are: compressing them would need
# `gzip` in the COPY options.
COMPRESSION = "UNCOMPRESSED"
S3_DESTINATION = "ExtendedS3DestinationDescription"
REDSHIFT_DESTINATION = "RedshiftDestinationDescription"


def staging_folder(stage: Stage) -> str:
    """The stage's folder in a staging bucket: the IAM policies give Firehose and COPY only it."""
    return f"{stage.name}/"


def staging_prefix(stage: Stage) -> str:
    """Where records are staged. Delivery errors go to a sibling folder, so that the auto-copy
    job, which loads every new object under this prefix, never loads an error report."""
    return f"{staging_folder(stage)}data/"


def staging_bucket(stage: Stage, which: str) -> str:
    """The bucket the `which` stream (stream_data, timeseries) stages its records in."""
    bucket_key = dict(STREAMS)[which]
    return str(getattr(stage.config.s3.buckets, bucket_key).name)


def staging_url(stage: Stage, which: str) -> str:
    """`s3://bucket/<stage>/data/`: where the `which` stream's records land, for COPY to read."""
    return f"s3://{staging_bucket(stage, which)}/{staging_prefix(stage)}"


@dataclass(frozen=True)
class StreamSpec:
    """One delivery stream as config wants it."""

    which: str
    name: str
    buffer_seconds: int
    buffer_mb: int
    bucket: str
    bucket_arn: str
    prefix: str
    error_prefix: str
    role_arn: str
    log_group: str
    tags: dict[str, str]
    # Direct delivery only: the COPY Firehose runs, into which cluster, as which user.
    direct: bool = False
    table: str = ""
    copy_options: str = ""
    cluster: str = ""
    username: str = ""
    password_secret: str = ""


@dataclass
class StreamState:
    """One delivery stream as Firehose has it."""

    exists: bool
    status: str = ""
    arn: str = ""
    version_id: str = ""
    destination_id: str = ""
    # The kind of destination (`ExtendedS3`, `Redshift`, ...) and, for S3, its description.
    destination: str = ""
    s3: dict[str, Any] = field(default_factory=dict)
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
    from deploy.aws import partition
    from deploy.policies import log_groups

    config = stage.config
    enabled = enabled_clusters(stage)
    direct = config.firehose.delivery == "direct"
    return [
        StreamSpec(
            which=which,
            name=getattr(config.firehose, which).name,
            buffer_seconds=getattr(config.firehose, which).buffer_seconds,
            buffer_mb=getattr(config.firehose, which).buffer_mb,
            bucket=staging_bucket(stage, which),
            bucket_arn=f"arn:{partition(stage.region)}:s3:::{staging_bucket(stage, which)}",
            prefix=staging_prefix(stage),
            error_prefix=f"{staging_folder(stage)}errors/",
            role_arn=role_arn(stage, config.iam.firehose_role),
            log_group=log_groups(stage)["firehose"],
            tags=stage.tags(getattr(config.firehose, which).name),
            direct=direct,
            table=getattr(config.firehose, which).table,
            copy_options=getattr(config.firehose, which).copy_options,
            cluster=getattr(config.redshift, which).identifier,
            username=getattr(config.redshift, which).master_username,
            password_secret=getattr(config.redshift, which).password_secret,
        )
        for which, _ in STREAMS
        if which in enabled
    ]


def log_group_spec(stage: Stage) -> LogGroupSpec:
    from deploy.policies import log_groups

    # Named per stage in code, not in config: tag it as the stage's own.
    name = log_groups(stage)["firehose"]
    streams = (
        (S3_LOG_STREAM, REDSHIFT_LOG_STREAM)
        if stage.config.firehose.delivery == "direct"
        else (S3_LOG_STREAM,)
    )
    return LogGroupSpec(name, streams, LOG_RETENTION_DAYS, stage.tags())


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


def _destination_kind(destination: dict[str, Any]) -> str:
    """`ExtendedS3`, `Redshift`, ...: an S3 destination also carries the plain S3 description."""
    kinds = [key.removesuffix("DestinationDescription") for key in destination if key.endswith("Description")]
    if "ExtendedS3" in kinds:
        return "ExtendedS3"
    others = [kind for kind in kinds if kind != "S3"]
    return others[0] if others else ("S3" if kinds else "")


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
        destination=_destination_kind(destination),
        s3=destination.get(S3_DESTINATION, {}),
        redshift=destination.get(REDSHIFT_DESTINATION, {}),
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


# -- planning ----------------------------------------------------------------------------------


def _logging(spec: StreamSpec, stream: str) -> dict[str, Any]:
    return {"Enabled": True, "LogGroupName": spec.log_group, "LogStreamName": stream}


def s3_configuration(spec: StreamSpec) -> dict[str, Any]:
    """The S3 destination, as created and as every UpdateDestination sets it."""
    return {
        "RoleARN": spec.role_arn,
        "BucketARN": spec.bucket_arn,
        "Prefix": spec.prefix,
        "ErrorOutputPrefix": spec.error_prefix,
        "BufferingHints": {"SizeInMBs": spec.buffer_mb, "IntervalInSeconds": spec.buffer_seconds},
        "CompressionFormat": COMPRESSION,
        "CloudWatchLoggingOptions": _logging(spec, S3_LOG_STREAM),
    }


# -- direct delivery ---------------------------------------------------------------------------


def _url_once_available(spec: StreamSpec) -> Deferred:
    def resolve(stage: Stage) -> str:
        from deploy.areas.redshift import jdbc_url

        url = jdbc_url(stage, spec.which)
        if url is None:
            raise AwsError(
                "ClusterNotFound",
                f"Redshift cluster {spec.cluster} has no endpoint, so {spec.name} cannot deliver to it",
                f"Run `inv redshift.create --stage {stage.name}` (it waits until the cluster is available), "
                "then rerun.",
            )
        return url

    return Deferred(f"JDBC URL of Redshift cluster {spec.cluster}", resolve)


def _password(spec: StreamSpec) -> Deferred:
    """The master password, read from Parameter Store when the call runs: never in a plan, a
    report or a log line (the calls mark it sensitive)."""

    def resolve(stage: Stage) -> str:
        from deploy.secrets import read_secret

        return read_secret(stage, spec.password_secret)[1]

    return Deferred(f"{spec.password_secret} from Parameter Store", resolve)


def redshift_settings(spec: StreamSpec) -> dict[str, Any]:
    """The Redshift destination's settings compared and updated in place (not URL nor login)."""
    return {
        "RoleARN": spec.role_arn,
        "CopyCommand": {"DataTableName": spec.table, "CopyOptions": spec.copy_options},
        "CloudWatchLoggingOptions": _logging(spec, REDSHIFT_LOG_STREAM),
        "RetryOptions": {"DurationInSeconds": RETRY_SECONDS},
    }


def _staging(spec: StreamSpec) -> dict[str, Any]:
    """The intermediate S3 of a Redshift destination: the staging folder, as in staged delivery."""
    return s3_configuration(spec)


def redshift_drift(spec: StreamSpec, actual: dict[str, Any]) -> list[str]:
    """What differs between config and a RedshiftDestinationDescription, in words."""
    want = redshift_settings(spec)
    copy = actual.get("CopyCommand") or {}
    checks = [
        ("role", want["RoleARN"], actual.get("RoleARN")),
        ("table", spec.table, copy.get("DataTableName")),
        ("copy options", spec.copy_options.strip(), (copy.get("CopyOptions") or "").strip()),
        ("retry duration", RETRY_SECONDS, (actual.get("RetryOptions") or {}).get("DurationInSeconds")),
        ("Redshift error logging", want["CloudWatchLoggingOptions"], _logging_of(actual)),
        ("user", spec.username, actual.get("Username")),
    ]
    drift = [differs(what, have, wanted) for what, wanted, have in checks if wanted != have]
    return drift + destination_drift(spec, actual.get("S3DestinationDescription") or {})


def _redshift_update(spec: StreamSpec, state: StreamState, reason: str) -> Call:
    update: dict[str, Any] = {
        **redshift_settings(spec),
        # The login each time: switching from S3 needs it, and a user changed needs its password.
        "ClusterJDBCURL": _url_once_available(spec),
        "Username": spec.username,
        "Password": _password(spec),
        "S3Update": _staging(spec),
    }
    params = {
        "DeliveryStreamName": spec.name,
        "CurrentDeliveryStreamVersionId": state.version_id,
        "DestinationId": state.destination_id,
        "RedshiftDestinationUpdate": update,
    }
    return Call(
        "firehose",
        "UpdateDestination",
        params,
        spec.name,
        reason,
        sensitive=("RedshiftDestinationUpdate.Password",),
    )


def _destination_steps(spec: StreamSpec, state: StreamState) -> list[Step]:
    """The destination made to match the delivery mode and config."""
    if spec.direct:
        if state.destination != "Redshift":
            return [
                _redshift_update(
                    spec, state, f"destination is {state.destination or 'missing'}, not Redshift"
                )
            ]
        drift = redshift_drift(spec, state.redshift)
        return [_redshift_update(spec, state, "; ".join(drift))] if drift else []
    if state.destination != "ExtendedS3":
        # A stream from before auto-copy (or direct delivery) delivers into Redshift itself: it
        # becomes S3 only.
        kind = state.destination or "missing"
        return [_update_call(spec, state, f"destination is {kind}, not S3")]
    drift = destination_drift(spec, state.s3)
    return [_update_call(spec, state, "; ".join(drift))] if drift else []


# -- planning the stream -----------------------------------------------------------------------


def _create_steps(stage: Stage, spec: StreamSpec) -> list[Step]:
    params: dict[str, Any] = {
        "DeliveryStreamName": spec.name,
        "DeliveryStreamType": "DirectPut",
        "DeliveryStreamEncryptionConfigurationInput": dict(ENCRYPTION),
        "Tags": stage.tag_list(spec.tags),
    }
    sensitive: tuple[str, ...] = ()
    if spec.direct:
        params["RedshiftDestinationConfiguration"] = {
            **redshift_settings(spec),
            "ClusterJDBCURL": _url_once_available(spec),
            "Username": spec.username,
            "Password": _password(spec),
            "S3Configuration": _staging(spec),
        }
        sensitive = ("RedshiftDestinationConfiguration.Password",)
    else:
        params["ExtendedS3DestinationConfiguration"] = s3_configuration(spec)
    call = Call(
        "firehose",
        "CreateDeliveryStream",
        params,
        spec.name,
        "delivery stream does not exist",
        sensitive=sensitive,
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


def destination_drift(spec: StreamSpec, actual: dict[str, Any]) -> list[str]:
    """What differs between config and an ExtendedS3DestinationDescription, in words."""
    want = s3_configuration(spec)
    checks = [
        ("role", want["RoleARN"], actual.get("RoleARN")),
        ("staging bucket", want["BucketARN"], actual.get("BucketARN")),
        ("prefix", spec.prefix, actual.get("Prefix")),
        ("error prefix", spec.error_prefix, actual.get("ErrorOutputPrefix")),
        ("buffering", want["BufferingHints"], actual.get("BufferingHints")),
        ("compression", COMPRESSION, actual.get("CompressionFormat")),
        ("error logging", want["CloudWatchLoggingOptions"], _logging_of(actual)),
    ]
    return [differs(what, have, wanted) for what, wanted, have in checks if wanted != have]


def _update_call(spec: StreamSpec, state: StreamState, reason: str) -> Call:
    params = {
        "DeliveryStreamName": spec.name,
        "CurrentDeliveryStreamVersionId": state.version_id,
        "DestinationId": state.destination_id,
        # The whole destination each time: switching from another kind replaces it entirely, and
        # within S3 the settings that match are written back unchanged.
        "ExtendedS3DestinationUpdate": s3_configuration(spec),
    }
    return Call("firehose", "UpdateDestination", params, spec.name, reason)


def _drift_steps(stage: Stage, spec: StreamSpec, state: StreamState) -> list[Step]:
    steps: list[Step] = _destination_steps(spec, state)
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
        steps.append(
            Call("firehose", "TagDeliveryStream", params, spec.name, tag_drift(state.tags, spec.tags))
        )
    return steps


def plan_stream(stage: Stage, spec: StreamSpec, state: StreamState) -> Resource:
    detail = f"s3://{spec.bucket}/{spec.prefix}"
    if not state.exists:
        steps = _create_steps(stage, spec)
    elif state.status == "CREATING":
        steps = [_wait(stage, spec, "delivery stream is being created")]
    elif state.status != "ACTIVE":
        steps = []
        detail = f"{state.status}: not changed while in this state"
    else:
        steps = _drift_steps(stage, spec, state)
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
    ]
    group_state, *states = map_concurrently(lambda read: read(), reads)
    return [
        plan_log_group(stage, group, group_state),
        *(plan_stream(stage, spec, state) for spec, state in zip(specs, states, strict=True)),
    ]


# -- tasks -------------------------------------------------------------------------------------


create, status = area_tasks(AREA, "the delivery streams into the staging buckets and their error log", plan)
collection = Collection(AREA, create, status)
