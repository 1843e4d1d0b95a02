"""RDS: the PostgreSQL instance and its parameter group, kept outside Beanstalk so it outlives any
environment; and `rds.encrypt`, the snapshot-copy-restore migration of an unencrypted instance.

This tool never deletes an instance or a snapshot: deletion protection is on, and deleting by hand
takes a final snapshot (AWS's default; the instance carries a tag saying so)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.cli import area_tasks, deploy_task
from deploy.errors import ArgumentError, AwsError, BadInput
from deploy.parallel import call_concurrently, map_concurrently
from deploy.plan import Call, Deferred, Resource, Step, Wait, converge, differences, tag_drift

if TYPE_CHECKING:
    from deploy.report import Reporter
    from deploy.stage import Stage

AREA = "rds"
# Needs first: the data security group and subnet group, the key.
AFTER: tuple[str, ...] = ("network", "kms")
LOOKUPS = ("endpoint",)
# 10 to 40 minutes on AWS: started and awaited together with the other slow areas.
SLOW = True
ENGINE = "postgres"
AWS_MANAGED_KEY = "alias/aws/rds"
PARAMETER_GROUP_DESCRIPTION = "IOTile Cloud PostgreSQL settings, managed by iotile-deploy"
FINAL_SNAPSHOT_TAG = {"FinalSnapshot": "required"}
PASSWORD_LENGTH = 40
# ModifyDBParameterGroup takes at most 20 parameters a call.
PARAMETERS_PER_CALL = 20

# After a storage change AWS optimises storage for hours, the instance in full use meanwhile.
READY = frozenset({"available", "storage-optimization"})
SNAPSHOT_READY = frozenset({"available"})
# States an instance does not leave by itself: waiting for "available" would only time out.
FAILED = frozenset(
    {
        "failed",
        "deleting",
        "inaccessible-encryption-credentials",
        "incompatible-network",
        "incompatible-option-group",
        "incompatible-parameters",
        "incompatible-restore",
        "insufficient-capacity",
        "restore-error",
        "storage-full",
    }
)
STOPPED = frozenset({"stopped", "stopping"})
SNAPSHOT_FAILED = frozenset({"failed", "deleted"})

# ModifyDBInstance settings that cause no outage or close a hole: applied at once. The others
# (class, storage, Multi-AZ, engine) wait for the maintenance window, like a careful operator would.
IMMEDIATE = (
    "PubliclyAccessible",
    "DeletionProtection",
    "BackupRetentionPeriod",
    "VpcSecurityGroupIds",
    "CopyTagsToSnapshot",
    "AutoMinorVersionUpgrade",
    "MaxAllocatedStorage",
    "DBParameterGroupName",
)


@dataclass(frozen=True)
class ParameterGroupSpec:
    name: str
    family: str
    parameters: dict[str, str]
    tags: dict[str, str]

    @property
    def resource(self) -> str:
        return f"parameter-group/{self.name}"


@dataclass(frozen=True)
class InstanceSpec:
    """The instance as config wants it."""

    identifier: str
    engine_version: str
    instance_class: str
    storage_type: str
    allocated_storage: int
    max_allocated_storage: int
    multi_az: bool
    backup_retention: int
    database: str
    master_username: str
    password_secret: str
    kms_key: str | None
    parameter_group: str
    subnet_group: str
    security_group: str
    tags: dict[str, str]
    wait_seconds: int


@dataclass(frozen=True)
class ParameterGroupState:
    exists: bool
    family: str = ""
    arn: str = ""
    values: dict[str, str] = field(default_factory=dict)
    apply_types: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InstanceState:
    """One DescribeDBInstances entry (empty when there is no instance), with what a plan asks of it."""

    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        return bool(self.raw)

    @property
    def status(self) -> str:
        return str(self.raw.get("DBInstanceStatus", "missing"))

    @property
    def arn(self) -> str:
        return str(self.raw.get("DBInstanceArn", ""))

    @property
    def encrypted(self) -> bool:
        return bool(self.raw.get("StorageEncrypted"))

    @property
    def pending(self) -> Mapping[str, Any]:
        return self.raw.get("PendingModifiedValues") or {}

    def effective(self, key: str) -> Any:
        """The value once modifications waiting for the maintenance window are applied."""
        return self.pending.get(key, self.raw.get(key))

    @property
    def security_group_ids(self) -> set[str]:
        return {g["VpcSecurityGroupId"] for g in self.raw.get("VpcSecurityGroups", [])}

    @property
    def subnet_group(self) -> str:
        return str((self.raw.get("DBSubnetGroup") or {}).get("DBSubnetGroupName", ""))

    @property
    def parameter_group(self) -> str:
        groups = self.raw.get("DBParameterGroups") or [{}]
        return str(groups[0].get("DBParameterGroupName", ""))

    @property
    def parameters_await_reboot(self) -> bool:
        groups = self.raw.get("DBParameterGroups") or [{}]
        return groups[0].get("ParameterApplyStatus") == "pending-reboot"

    @property
    def tags(self) -> dict[str, str]:
        return {tag["Key"]: tag["Value"] for tag in self.raw.get("TagList", [])}

    @property
    def endpoint(self) -> str | None:
        found = self.raw.get("Endpoint") or {}
        if not found.get("Address"):
            return None
        return f"{found['Address']}:{found.get('Port', 5432)}"


def parameter_group_spec(stage: Stage) -> ParameterGroupSpec:
    group = stage.config.rds.parameter_group
    return ParameterGroupSpec(group.name, group.family, dict(group.parameters), stage.tags(group.name))


def instance_spec(stage: Stage) -> InstanceSpec:
    rds = stage.config.rds
    return InstanceSpec(
        identifier=rds.identifier,
        engine_version=rds.engine_version,
        instance_class=rds.instance_class,
        storage_type=rds.storage_type,
        allocated_storage=rds.allocated_storage,
        max_allocated_storage=rds.max_allocated_storage,
        multi_az=rds.multi_az,
        backup_retention=rds.backup_retention_days,
        database=rds.database,
        master_username=rds.master_username,
        password_secret=rds.master_password_secret,
        kms_key=rds.kms_key,
        parameter_group=rds.parameter_group.name,
        subnet_group=stage.config.network.db_subnet_group,
        security_group=stage.config.network.data_security_group,
        tags={**stage.tags(rds.identifier), **FINAL_SNAPSHOT_TAG},
        wait_seconds=rds.wait_minutes * 60,
    )


# -- reading -----------------------------------------------------------------------------------


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def read_instance(stage: Stage, identifier: str) -> InstanceState:
    from botocore.exceptions import ClientError

    try:
        found = stage.client("rds").describe_db_instances(DBInstanceIdentifier=identifier)
    except ClientError as exc:
        if _code(exc) in ("DBInstanceNotFound", "DBInstanceNotFoundFault"):
            return InstanceState()
        raise
    instances = found.get("DBInstances", [])
    return InstanceState(instances[0] if instances else {})


def read_parameter_group(stage: Stage, name: str) -> ParameterGroupState:
    from botocore.exceptions import ClientError

    rds = stage.client("rds")
    try:
        groups = rds.describe_db_parameter_groups(DBParameterGroupName=name)["DBParameterGroups"]
    except ClientError as exc:
        if _code(exc) in ("DBParameterGroupNotFound", "DBParameterGroupNotFoundFault"):
            return ParameterGroupState(False)
        raise
    if not groups:  # moto answers an empty list where AWS raises DBParameterGroupNotFound
        return ParameterGroupState(False)
    group = groups[0]
    arn = group.get("DBParameterGroupArn", "")
    # The group's parameters and its tags, side by side.
    parameters, tags = call_concurrently(
        partial(read_parameters, stage, name),
        lambda: rds.list_tags_for_resource(ResourceName=arn).get("TagList", []) if arn else [],
    )
    return ParameterGroupState(
        True,
        family=group.get("DBParameterGroupFamily", ""),
        arn=arn,
        values={p["ParameterName"]: p["ParameterValue"] for p in parameters if "ParameterValue" in p},
        apply_types={p["ParameterName"]: p["ApplyType"] for p in parameters if "ApplyType" in p},
        tags={tag["Key"]: tag["Value"] for tag in tags},
    )


def read_parameters(stage: Stage, group: str) -> list[dict[str, Any]]:
    pages = stage.client("rds").get_paginator("describe_db_parameters").paginate(DBParameterGroupName=group)
    return [p for page in pages for p in page.get("Parameters", [])]


def read_snapshot_status(stage: Stage, identifier: str) -> str:
    from botocore.exceptions import ClientError

    try:
        found = stage.client("rds").describe_db_snapshots(DBSnapshotIdentifier=identifier)
    except ClientError as exc:
        if _code(exc) in ("DBSnapshotNotFound", "DBSnapshotNotFoundFault"):
            return "missing"
        raise
    snapshots = found.get("DBSnapshots", [])
    return str(snapshots[0].get("Status", "unknown")) if snapshots else "missing"


def endpoint(stage: Stage) -> str | None:
    """The instance's "address:port", or None while it does not exist or has no endpoint yet."""
    return read_instance(stage, stage.config.rds.identifier).endpoint


def data_group_id(stage: Stage, name: str) -> str | Deferred:
    """The data security group's id, or a Deferred one when the network area has yet to make it."""
    from deploy.areas import network

    return network.security_group_id(stage, name) or network.group_id_when_created(name)


# -- planning ----------------------------------------------------------------------------------


def _instance_wait(identifier: str, reason: str, seconds: int) -> Wait:
    def probe(stage: Stage) -> str:
        return read_instance(stage, identifier).status

    return Wait(identifier, reason, probe, READY, FAILED, timeout_seconds=seconds)


def _snapshot_wait(resource: str, snapshot: str, seconds: int) -> Wait:
    def probe(stage: Stage) -> str:
        return read_snapshot_status(stage, snapshot)

    # Named for the snapshot: the wait line says what is awaited, not the instance to come.
    reason = f"snapshot {snapshot} to be available (for {resource})"
    return Wait(
        f"snapshot {snapshot}", reason, probe, SNAPSHOT_READY, SNAPSHOT_FAILED, timeout_seconds=seconds
    )


def _with_notes(resource: Resource, notes: list[str]) -> Resource:
    """Drift no call can repair (it takes a migration or a person): shown by plan and status, and
    `up` makes no attempt at it."""
    if not notes or resource.state == "missing":
        return resource
    return dataclasses.replace(resource, state="drifted", drift=(*resource.drift, *notes))


def _parameter_calls(spec: ParameterGroupSpec, state: ParameterGroupState, names: list[str]) -> list[Call]:
    def method(name: str) -> str:
        # "immediate" is only valid for dynamic parameters; "pending-reboot" is valid for all.
        return "immediate" if state.apply_types.get(name) == "dynamic" else "pending-reboot"

    calls = []
    for start in range(0, len(names), PARAMETERS_PER_CALL):
        chunk = names[start : start + PARAMETERS_PER_CALL]
        if state.exists:
            reason = differences({n: (state.values.get(n), spec.parameters[n]) for n in chunk})
        else:
            reason = f"parameters to set: {', '.join(chunk)}"
        parameters = [
            {"ParameterName": n, "ParameterValue": spec.parameters[n], "ApplyMethod": method(n)}
            for n in chunk
        ]
        params = {"DBParameterGroupName": spec.name, "Parameters": parameters}
        calls.append(Call(AREA, "ModifyDBParameterGroup", params, spec.resource, reason))
    return calls


def plan_parameter_group(stage: Stage, spec: ParameterGroupSpec, state: ParameterGroupState) -> Resource:
    steps: list[Call] = []
    notes: list[str] = []
    if not state.exists:
        params = {
            "DBParameterGroupName": spec.name,
            "DBParameterGroupFamily": spec.family,
            "Description": PARAMETER_GROUP_DESCRIPTION,
            "Tags": stage.tag_list(spec.tags),
        }
        steps.append(
            Call(AREA, "CreateDBParameterGroup", params, spec.resource, "parameter group does not exist")
        )
    elif state.family and state.family != spec.family:
        notes.append(
            f"family is {state.family}, config wants {spec.family}: a group's family never changes, "
            "so give the new one another name (rds.parameter_group.name)"
        )
    differing = sorted(name for name, value in spec.parameters.items() if state.values.get(name) != value)
    steps.extend(_parameter_calls(spec, state, differing))
    if state.exists and any(state.tags.get(k) != v for k, v in spec.tags.items()):
        params = {"ResourceName": state.arn, "Tags": stage.tag_list(spec.tags)}
        steps.append(Call(AREA, "AddTagsToResource", params, spec.resource, tag_drift(state.tags, spec.tags)))
    resource = converge(
        AREA, "parameter group", spec.resource, steps, exists=state.exists, detail=spec.family
    )
    return _with_notes(resource, notes)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in str(text).split(".") if part.isdigit())


def _create_instance(stage: Stage, spec: InstanceSpec, group: str | Deferred) -> list[Step]:
    from deploy.secrets import generated_secret

    secret_steps, password = generated_secret(
        stage, spec.password_secret, spec.identifier, length=PASSWORD_LENGTH
    )
    params: dict[str, Any] = {
        "DBInstanceIdentifier": spec.identifier,
        "Engine": ENGINE,
        "EngineVersion": spec.engine_version,
        "DBInstanceClass": spec.instance_class,
        "StorageType": spec.storage_type,
        "AllocatedStorage": spec.allocated_storage,
        "MultiAZ": spec.multi_az,
        "StorageEncrypted": True,
        "DeletionProtection": True,
        "BackupRetentionPeriod": spec.backup_retention,
        "PubliclyAccessible": False,
        "VpcSecurityGroupIds": [group],
        "DBSubnetGroupName": spec.subnet_group,
        "DBParameterGroupName": spec.parameter_group,
        "DBName": spec.database,
        "MasterUsername": spec.master_username,
        "MasterUserPassword": password,
        "CopyTagsToSnapshot": True,
        "AutoMinorVersionUpgrade": True,
        "Tags": stage.tag_list(spec.tags),
    }
    # Storage autoscaling is on only with a ceiling above the allocation (AWS rejects an equal one).
    if spec.max_allocated_storage > spec.allocated_storage:
        params["MaxAllocatedStorage"] = spec.max_allocated_storage
    if spec.kms_key:
        params["KmsKeyId"] = spec.kms_key
    create = Call(
        AREA,
        "CreateDBInstance",
        params,
        spec.identifier,
        "instance does not exist",
        sensitive=("MasterUserPassword",),
    )
    wait = _instance_wait(spec.identifier, "instance to be available", spec.wait_seconds)
    return [*secret_steps, create, wait]


def _differences(
    spec: InstanceSpec, state: InstanceState, group: str | Deferred
) -> tuple[dict[str, Any], list[str]]:
    """The ModifyDBInstance parameters that would make the instance match config, and the drift
    that only a person can act on."""
    changes: dict[str, Any] = {}
    notes: list[str] = []
    wanted: dict[str, Any] = {
        "PubliclyAccessible": False,
        "DeletionProtection": True,
        "BackupRetentionPeriod": spec.backup_retention,
        "CopyTagsToSnapshot": True,
        "AutoMinorVersionUpgrade": True,
        "DBInstanceClass": spec.instance_class,
        "MultiAZ": spec.multi_az,
        "StorageType": spec.storage_type,
    }
    changes.update({k: v for k, v in wanted.items() if state.effective(k) != v})
    if isinstance(group, Deferred) or state.security_group_ids != {group}:
        changes["VpcSecurityGroupIds"] = [group]
    if state.parameter_group != spec.parameter_group:
        changes["DBParameterGroupName"] = spec.parameter_group
    allocated = int(state.effective("AllocatedStorage") or 0)
    if allocated < spec.allocated_storage:
        changes["AllocatedStorage"] = allocated = spec.allocated_storage
    ceiling = int(state.raw.get("MaxAllocatedStorage") or allocated)
    if ceiling != spec.max_allocated_storage:
        if spec.max_allocated_storage >= allocated:
            changes["MaxAllocatedStorage"] = spec.max_allocated_storage
        else:
            notes.append(
                f"storage grew to {allocated} GiB, above rds.max_allocated_storage "
                f"{spec.max_allocated_storage}: raise it in config"
            )
    have, want = _version(state.effective("EngineVersion") or "0"), _version(spec.engine_version)
    if have[: len(want)] < want:
        changes["EngineVersion"] = spec.engine_version
        if have[:1] != want[:1]:
            changes["AllowMajorVersionUpgrade"] = True
            # A major upgrade needs the new family's parameter group in the same call.
            changes["DBParameterGroupName"] = spec.parameter_group
    return changes, notes


def _unfixable(stage: Stage, spec: InstanceSpec, state: InstanceState) -> list[str]:
    notes = []
    if not state.encrypted:
        notes.append(f"not encrypted: run `inv rds.encrypt --stage {stage.name}`")
    elif spec.kms_key and not _same_key(stage, spec.kms_key, str(state.raw.get("KmsKeyId", ""))):
        notes.append(
            f"encrypted with {state.raw.get('KmsKeyId')}, not {spec.kms_key}: only a restore can change it"
        )
    if state.subnet_group and state.subnet_group != spec.subnet_group:
        notes.append(f"in DB subnet group {state.subnet_group}, not {spec.subnet_group}: move it by hand")
    if state.raw.get("Engine", ENGINE) != ENGINE:
        notes.append(f"engine is {state.raw.get('Engine')}, not {ENGINE}")
    return notes


def _same_key(stage: Stage, wanted: str, actual: str) -> bool:
    if not actual or wanted == actual:
        return wanted == actual
    arn = stage.client("kms").describe_key(KeyId=wanted)["KeyMetadata"]["Arn"]
    return arn == actual


def _live_value(state: InstanceState, key: str) -> Any:
    """What the instance has now for a ModifyDBInstance parameter, as config would write it."""
    if key == "VpcSecurityGroupIds":
        return sorted(state.security_group_ids)
    if key == "DBParameterGroupName":
        return state.parameter_group
    return state.effective(key)


def _modify_call(
    state: InstanceState, identifier: str, changes: Mapping[str, Any], *, immediately: bool
) -> Call:
    shown = differences(
        {k: (_live_value(state, k), v) for k, v in changes.items() if k != "AllowMajorVersionUpgrade"}
    )
    when = "" if immediately else " (applied in the next maintenance window)"
    params = {"DBInstanceIdentifier": identifier, **changes, "ApplyImmediately": immediately}
    return Call(AREA, "ModifyDBInstance", params, identifier, f"{shown}{when}")


def _detail(spec: InstanceSpec, state: InstanceState) -> str:
    parts = [state.endpoint or state.status]
    waiting = sorted(k for k in state.pending if k != "MasterUserPassword")
    if waiting:
        parts.append(f"at the next maintenance window: {', '.join(waiting)}")
    if state.parameters_await_reboot:
        parts.append("parameter changes wait for a reboot")
    allocated = int(state.raw.get("AllocatedStorage") or 0)
    if allocated > spec.allocated_storage:
        parts.append(
            f"storage grew to {allocated} GiB (config {spec.allocated_storage}; storage never shrinks)"
        )
    return "; ".join(parts)


def plan_instance(stage: Stage, spec: InstanceSpec, state: InstanceState, group: str | Deferred) -> Resource:
    depends = [f"parameter-group/{spec.parameter_group}"]
    if not state.exists:
        steps = _create_instance(stage, spec, group)
        return converge(AREA, "DB instance", spec.identifier, steps, exists=False, depends_on=depends)
    notes = _unfixable(stage, spec, state)
    steps: list[Step] = []
    if state.status in STOPPED:
        notes.append(f"instance is {state.status}: start it (aws rds start-db-instance) and rerun")
    elif state.status in FAILED:
        notes.append(f"instance is {state.status}: see its events in the console")
    elif state.status not in READY:
        steps.append(_instance_wait(spec.identifier, f"instance is {state.status}", spec.wait_seconds))
    else:
        changes, more = _differences(spec, state, group)
        notes.extend(more)
        # A major upgrade takes the parameter group with it, in the maintenance window.
        major = "AllowMajorVersionUpgrade" in changes
        immediate = {
            k: v for k, v in changes.items() if k in IMMEDIATE and not (major and k == "DBParameterGroupName")
        }
        later = {k: v for k, v in changes.items() if k not in immediate}
        if immediate:
            steps.append(_modify_call(state, spec.identifier, immediate, immediately=True))
        if later:
            steps.append(_modify_call(state, spec.identifier, later, immediately=False))
        if any(state.tags.get(k) != v for k, v in spec.tags.items()):
            params = {"ResourceName": state.arn, "Tags": stage.tag_list(spec.tags)}
            steps.append(
                Call(AREA, "AddTagsToResource", params, spec.identifier, tag_drift(state.tags, spec.tags))
            )
        if immediate:
            steps.append(_instance_wait(spec.identifier, "modifications to finish", spec.wait_seconds))
    resource = converge(
        AREA,
        "DB instance",
        spec.identifier,
        steps,
        exists=True,
        detail=_detail(spec, state),
        depends_on=depends,
    )
    return _with_notes(resource, notes)


def plan(stage: Stage) -> list[Resource]:
    group_spec, spec = parameter_group_spec(stage), instance_spec(stage)
    reads: list[Callable[[], Any]] = [
        lambda: read_parameter_group(stage, group_spec.name),
        lambda: read_instance(stage, spec.identifier),
        lambda: data_group_id(stage, spec.security_group),
    ]
    group_state, state, group = map_concurrently(lambda read: read(), reads)
    return [plan_parameter_group(stage, group_spec, group_state), plan_instance(stage, spec, state, group)]


# -- encrypting an instance made unencrypted ---------------------------------------------------


def _identifier(value: str, argument: str) -> str:
    from pydantic import TypeAdapter, ValidationError

    from deploy import names

    try:
        return TypeAdapter(names.DbIdentifier).validate_python(value).lower()
    except ValidationError as exc:
        raise ArgumentError(argument, str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None


def migration_names(stage: Stage, source: str | None = None, target: str | None = None) -> tuple[str, str]:
    """The instance to encrypt (default: rds.identifier) and the encrypted copy's identifier
    (default: `<source>-encrypted`), checked before any AWS call."""
    source = _identifier(source or stage.config.rds.identifier, "--source")
    target = _identifier(target or f"{source}-encrypted", "--target-identifier")
    if target == source:
        raise ArgumentError("--target-identifier", "must differ from the instance being encrypted")
    return source, target


def snapshot_names(source: str, target: str) -> tuple[str, str]:
    """The migration's two snapshots, named for it so a rerun finds them: the source as it was, and
    its encrypted copy."""
    return f"{target}-from-{source}", f"{target}-encrypted-copy"


def migration_tag(source: str, target: str) -> dict[str, str]:
    return {"Migration": f"encrypt {source} as {target}"}


@dataclass(frozen=True)
class Migration:
    """How far an encrypt migration got, read by name: the source, the target, both snapshots."""

    source: str
    target: str
    found: InstanceState
    restored: InstanceState
    before: str
    before_status: str
    encrypted: str
    encrypted_status: str


def read_migration(stage: Stage, source: str, target: str) -> Migration:
    before, encrypted = snapshot_names(source, target)
    reads: list[Callable[[], Any]] = [
        lambda: read_instance(stage, source),
        lambda: read_instance(stage, target),
        lambda: read_snapshot_status(stage, before),
        lambda: read_snapshot_status(stage, encrypted),
    ]
    found, restored, before_status, encrypted_status = map_concurrently(lambda read: read(), reads)
    return Migration(source, target, found, restored, before, before_status, encrypted, encrypted_status)


def _check_migration(stage: Stage, migration: Migration) -> None:
    """Refuse what no step can continue: a target that is not this migration's, a source that is
    missing or encrypted (before the restore), or not available when a snapshot is still to take."""
    source, target, found, restored = migration.source, migration.target, migration.found, migration.restored
    if restored.exists:
        if restored.tags.get("Migration") != migration_tag(source, target)["Migration"]:
            raise BadInput(
                f"instance {target} already exists ({restored.status}) and is no encrypted copy of "
                f"{source} made by rds.encrypt: name another with --target-identifier"
            )
        return
    if not found.exists:
        raise BadInput(
            f"instance {source} does not exist in {stage.region} (stage {stage.name}): nothing to encrypt"
        )
    if found.encrypted:
        raise BadInput(f"instance {source} is already encrypted: nothing to do")
    snapshot_to_take = migration.before_status == "missing" and migration.encrypted_status == "missing"
    if snapshot_to_take and found.status not in READY:
        raise AwsError(
            "InvalidDBInstanceState",
            f"instance {source} is {found.status}",
            "Snapshots are taken of an available instance: wait until it is, and rerun.",
        )


def _restore_params(
    stage: Stage, found: InstanceState, source: str, target: str, snapshot: str
) -> dict[str, Any]:
    """The source's own settings (class, network, parameter group, Multi-AZ, storage), with the
    safety settings config requires whatever the source had."""
    raw = found.raw
    # Keys under aws: are AWS's own and cannot be set.
    kept = {k: v for k, v in found.tags.items() if not k.startswith("aws:")}
    tags = {**kept, **stage.tags(stage.config.rds.identifier), **FINAL_SNAPSHOT_TAG}
    params: dict[str, Any] = {
        "DBInstanceIdentifier": target,
        "DBSnapshotIdentifier": snapshot,
        "DBInstanceClass": raw["DBInstanceClass"],
        "MultiAZ": bool(raw.get("MultiAZ")),
        "PubliclyAccessible": False,
        "DeletionProtection": True,
        "CopyTagsToSnapshot": True,
        "AutoMinorVersionUpgrade": bool(raw.get("AutoMinorVersionUpgrade", True)),
        "BackupRetentionPeriod": stage.config.rds.backup_retention_days,
        # The tag a rerun recognises its own restore by.
        "Tags": stage.tag_list({**tags, **migration_tag(source, target)}),
    }
    optional = {
        "DBSubnetGroupName": found.subnet_group,
        "VpcSecurityGroupIds": sorted(found.security_group_ids),
        "DBParameterGroupName": found.parameter_group,
        "StorageType": raw.get("StorageType"),
        "Port": (raw.get("Endpoint") or {}).get("Port"),
    }
    params.update({k: v for k, v in optional.items() if v})
    if raw.get("StorageType") in ("io1", "io2") and raw.get("Iops"):
        params["Iops"] = raw["Iops"]
    return params


def _snapshot_steps(stage: Stage, migration: Migration, seconds: int) -> list[Step]:
    """Take the snapshot and copy it encrypted, from where an earlier run stopped."""
    rds = stage.config.rds
    source, target = migration.source, migration.target
    key = rds.kms_key or AWS_MANAGED_KEY
    tags = stage.tag_list({**stage.tags(rds.identifier), **migration_tag(source, target)})
    steps: list[Step] = []
    if migration.encrypted_status == "missing":
        if migration.before_status == "missing":
            params = {"DBSnapshotIdentifier": migration.before, "DBInstanceIdentifier": source, "Tags": tags}
            reason = f"snapshot {source} (writes after it starts are not copied)"
            steps.append(Call(AREA, "CreateDBSnapshot", params, target, reason))
        if migration.before_status not in SNAPSHOT_READY:
            steps.append(_snapshot_wait(target, migration.before, seconds))
        params = {
            "SourceDBSnapshotIdentifier": migration.before,
            "TargetDBSnapshotIdentifier": migration.encrypted,
            "KmsKeyId": key,
            "Tags": tags,
        }
        steps.append(Call(AREA, "CopyDBSnapshot", params, target, f"copy the snapshot encrypted with {key}"))
    if migration.encrypted_status not in SNAPSHOT_READY:
        steps.append(_snapshot_wait(target, migration.encrypted, seconds))
    return steps


def plan_encrypt(stage: Stage, source_identifier: str | None, target_identifier: str | None) -> list[Step]:
    """Snapshot the unencrypted instance, copy the snapshot encrypted with KMS, restore the copy as
    a new instance with the same settings, and wait for it; each step only if an earlier run did
    not get past it (snapshots and target are found by name). Nothing is deleted: the source and
    both snapshots stay. Refuses (bad input) when the source is missing or encrypted, or the target
    is another instance."""
    source, target = migration_names(stage, source_identifier, target_identifier)
    migration = read_migration(stage, source, target)
    _check_migration(stage, migration)
    seconds = stage.config.rds.wait_minutes * 60
    restored = migration.restored
    if restored.exists:
        steps: list[Step] = []
        if restored.status not in READY:
            steps.append(_instance_wait(target, f"restored instance is {restored.status}", seconds))
        ceiling = migration.found.raw.get("MaxAllocatedStorage")
        if ceiling and restored.raw.get("MaxAllocatedStorage") != ceiling:
            steps.extend(_autoscaling_steps(target, ceiling, seconds))
        return steps
    steps = _snapshot_steps(stage, migration, seconds)
    params = _restore_params(stage, migration.found, source, target, migration.encrypted)
    reason = f"restore the encrypted snapshot as {target}, with the settings of {source}"
    steps.append(Call(AREA, "RestoreDBInstanceFromDBSnapshot", params, target, reason))
    steps.append(_instance_wait(target, "restored instance to be available", seconds))
    ceiling = migration.found.raw.get("MaxAllocatedStorage")
    if ceiling:  # a restore cannot set storage autoscaling: it takes a modification after
        steps.extend(_autoscaling_steps(target, ceiling, seconds))
    return steps


def _autoscaling_steps(target: str, ceiling: int, seconds: int) -> list[Step]:
    params = {"DBInstanceIdentifier": target, "MaxAllocatedStorage": ceiling, "ApplyImmediately": True}
    return [
        Call(AREA, "ModifyDBInstance", params, target, f"storage autoscaling up to {ceiling} GiB"),
        _instance_wait(target, "modification to finish", seconds),
    ]


def aws_cli_options(stage: Stage) -> str:
    """The options an `aws` command needs to reach what this stage reaches: its region, and its
    profile and endpoint when set (without them the command would act on another account)."""
    options = [f"--region {stage.region}"]
    if stage.config.profile and not stage.uses_emulator:
        options.append(f"--profile {stage.config.profile}")
    if stage.custom_endpoint:
        options.append(f"--endpoint-url {stage.custom_endpoint}")
    return " ".join(options)


def _config_file(stage: Stage) -> str:
    from pathlib import Path

    from deploy.config import config_dir

    path = config_dir() / f"{stage.name}.yaml"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _password_line(stage: Stage, found: InstanceState, source: str) -> str:
    """What is true of the copy's master password: always the source's; it is the stored one only
    when this tool made the source and still holds its password."""
    from deploy.secrets import parameter_name, secret_exists

    name = stage.config.rds.master_password_secret
    if found.tags.get("ManagedBy") == "iotile-deploy" and secret_exists(stage, name):
        return f"The master password is {source}'s, the one in {parameter_name(stage, name)}."
    return (
        f"The master password is {source}'s, which this tool did not generate or does not hold: "
        f"store it with `inv secrets.set {name} --stage {stage.name}` so `up` and the app can use it."
    )


def operator_steps(stage: Stage, source: str, target: str, address: str | None) -> list[str]:
    """What is left to the operator once the encrypted copy is available."""
    where = address or f"its endpoint (see `inv rds.status --stage {stage.name}`)"
    found = read_instance(stage, source)
    aws = aws_cli_options(stage)
    before, encrypted = snapshot_names(source, target)
    password = _password_line(stage, found, source)
    steps = [
        f"Point the stack at {target}, {where}: set `rds: {{identifier: {target}}}` in "
        f"{_config_file(stage)} and run `inv up --stage {stage.name}`; Beanstalk takes the database "
        "endpoint from it (RDS_HOSTNAME). Anything else that reaches the database (workers, jobs, "
        f"people) is not managed here: point it at the new endpoint by hand. {password}",
        f"Verify the app reads and writes through the new endpoint; `inv rds.status --stage {stage.name}` "
        "shows the instance present and encrypted.",
        f"Retire {source} by hand, keeping a final snapshot: `aws rds modify-db-instance "
        f"--db-instance-identifier {source} --no-deletion-protection --apply-immediately {aws}`, then "
        f"`aws rds delete-db-instance --db-instance-identifier {source} "
        f"--final-db-snapshot-identifier {source}-final {aws}`.",
        f"The snapshots {before} and {encrypted} stay; delete them by hand when no longer needed.",
    ]
    return steps


def confirm_writes_stopped(source: str) -> None:
    """The snapshot holds only what was written before it: the operator types the instance name to
    say the app's writes are stopped (or passes --yes)."""
    import sys

    if sys.stdin is None or not sys.stdin.isatty():
        raise ArgumentError(
            "--yes",
            f"writes to {source} after its snapshot starts are lost: stop the app's writes, then "
            "confirm with --yes when not on a terminal",
        )
    typed = input(
        f"Writes to {source} after its snapshot starts are lost. Stop the app's writes, then type "
        f"{source} to go on: "
    ).strip()
    if typed != source:
        raise ArgumentError("confirmation", f"typed {typed!r}, expected {source!r}: nothing done")


def run_encrypt(
    stage: Stage,
    reporter: Reporter,
    source: str | None = None,
    target: str | None = None,
    *,
    dry_run: bool = False,
    confirm: Callable[[str], None] | None = None,
) -> Resource:
    """What `rds.encrypt` does: plan from where an earlier run stopped, show, run (or only show)
    through the usual executors, then print the steps left to the operator. `confirm(source)` is
    asked before a snapshot is taken."""
    from deploy.execute import DryRunExecutor, Executor

    source, target = migration_names(stage, source, target)
    steps = plan_encrypt(stage, source, target)
    resource = converge(
        AREA, "DB instance", target, steps, exists=False, detail=f"encrypted copy of {source}"
    )
    if not steps:
        reporter.message(f"{stage.name}: {target} is the encrypted copy of {source}, available.")
    else:
        verb = "would encrypt" if dry_run else "encrypting"
        reporter.plan([resource], title=f"{stage.name}: {verb} {source} as {target}")
    snapshots = any(isinstance(s, Call) and s.operation == "CreateDBSnapshot" for s in steps)
    if snapshots and confirm is not None and not dry_run:
        confirm(source)
    executor = (DryRunExecutor if dry_run else Executor)(stage, reporter)
    executor.run(resource.steps)
    address = None if dry_run else read_instance(stage, target).endpoint
    remaining = operator_steps(stage, source, target, address)
    extra = {"source": source, "target": target, "endpoint": address, "next_steps": remaining}
    reporter.outcome([resource], stage=stage.name, dry_run=dry_run, calls=len(executor.made), extra=extra)
    reporter.message("then:" if dry_run else "left to do:")
    for number, line in enumerate(remaining, start=1):
        reporter.message(f"  {number}. {line}")
    return resource


# -- tasks -------------------------------------------------------------------------------------


create, status = area_tasks(AREA, "the PostgreSQL instance and its parameter group", plan)


@deploy_task(
    help={
        "source": "instance to encrypt (default: rds.identifier of the stage)",
        "target_identifier": "identifier of the encrypted copy (default: <source>-encrypted)",
        "yes": "the app's writes are stopped: do not ask for the instance name to be typed back",
    }
)
def encrypt(c, stage=None, source=None, target_identifier=None, yes=False, dry_run=False, json=False):
    """Copy an unencrypted instance into a new, encrypted one; a rerun continues where the last
    stopped. Example: inv rds.encrypt --stage prod --dry-run"""
    from deploy.report import Reporter
    from deploy.stage import open_stage

    opened = open_stage(stage, dry_run=dry_run)
    confirm = None if yes else confirm_writes_stopped
    run_encrypt(opened, Reporter(as_json=json), source, target_identifier, dry_run=dry_run, confirm=confirm)


collection = Collection(AREA, create, status, encrypt)
