"""DynamoDB: the worker log and stream filter log tables, encrypted with KMS, with point-in-time
recovery, deletion protection, a TTL on worker logs and (when provisioned) target-tracking autoscaling
of the tables and their indexes. No stage ever deletes a table.

Key schema, for the app developers (all key attributes are strings):

`iotile-worker-logs-{stage}`, one item per worker task:
    task_id      HASH of the table.
    action       HASH of the index `action-started-index` (projection ALL): worker statistics query
    started_at   RANGE of that index, ISO-8601 UTC (`2024-05-01T12:00:00Z`), so a range of dates is
                 a `between` on the sort key.
    status, finished_at, worker_id, duration (seconds, a number): plain attributes.
    expires_at   (`dynamodb.ttl_attribute`) a number, epoch seconds: the app writes
                 now + `dynamodb.worker_logs_ttl_days`; DynamoDB then deletes the item by itself.

`iotile-filter-log-{stage}`, one item per stream filter run:
    filter_run_id  HASH of the table.
    target_slug    HASH of the index `target-timestamp-index` (projection ALL): the runs of one
    timestamp      stream or device, RANGE ISO-8601 UTC.
    No TTL: filter runs are the audit trail of what a filter did to stored data, kept as long as
    that data (enabling one later is `ttl_attribute` on its TableSpec, no migration).

Autoscaling: scalable targets (and the target-tracking policies named `iotile-deploy-*`) on
`table/NAME` and `table/NAME/index/INDEX` of these tables are this tool's: on-demand mode
deregisters them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.areas import kms
from deploy.cli import area_tasks
from deploy.errors import error_code
from deploy.parallel import call_concurrently, map_concurrently
from deploy.plan import Call, Resource, Wait, converge, tag_drift

if TYPE_CHECKING:
    from deploy.config import Capacity
    from deploy.stage import Stage

AREA = "dynamodb"
# Needs first: the tables' key, the service-linked role of their autoscaling.
AFTER: tuple[str, ...] = ("kms", "iam")
OWNER = "iotile-deploy"
WORKER_LOGS_INDEX = "action-started-index"
FILTER_LOG_INDEX = "target-timestamp-index"
AWS_MANAGED_KEY = "alias/aws/dynamodb"
NAMESPACE = "dynamodb"
# States in which the setting is on, or on its way there: asking again would be refused.
SSE_ON = frozenset({"ENABLED", "ENABLING", "UPDATING"})
TTL_ON = frozenset({"ENABLED", "ENABLING"})
TTL_CHANGING = frozenset({"ENABLING", "DISABLING"})
# Refusals that only mean "not yet": point-in-time recovery right after CreateTable, for a while.
RETRY_CODES = {"UpdateContinuousBackups": ("ContinuousBackupsUnavailableException",)}
TABLE_FAILED = frozenset({"INACCESSIBLE_ENCRYPTION_CREDENTIALS", "ARCHIVING", "ARCHIVED", "DELETING"})


@dataclass(frozen=True)
class IndexSpec:
    name: str
    hash_key: str
    range_key: str


@dataclass(frozen=True)
class ScalingSpec:
    """One scalable dimension (reads or writes of the table or of an index) and its policy."""

    resource_id: str
    dimension: str
    min: int
    max: int
    target: float
    metric: str
    policy_name: str


@dataclass(frozen=True)
class TableSpec:
    """One table as config wants it."""

    name: str
    kind: str
    hash_key: str
    index: IndexSpec
    ttl_attribute: str | None
    provisioned: bool
    read: Capacity
    write: Capacity
    kms_key: str | None
    point_in_time_recovery: bool
    tags: dict[str, str]

    @property
    def attribute_definitions(self) -> list[dict[str, str]]:
        keys = (self.hash_key, self.index.hash_key, self.index.range_key)
        return [{"AttributeName": key, "AttributeType": "S"} for key in keys]

    @property
    def throughput(self) -> dict[str, int]:
        return {"ReadCapacityUnits": self.read.min, "WriteCapacityUnits": self.write.min}


@dataclass
class TableState:
    """One table as DynamoDB and Application Auto Scaling have it; empty where absent."""

    exists: bool
    status: str = ""
    arn: str = ""
    billing_mode: str = ""
    key_schema: list[dict[str, str]] = field(default_factory=list)
    indexes: dict[str, dict[str, Any]] = field(default_factory=dict)
    sse: dict[str, Any] = field(default_factory=dict)
    deletion_protection: bool = False
    point_in_time_recovery: bool = False
    ttl: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    # (resource id, dimension) -> (min, max) of registered targets; -> policy of ours
    targets: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    policies: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


def key_schema(hash_key: str, range_key: str | None = None) -> list[dict[str, str]]:
    schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key:
        schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return schema


def table_specs(stage: Stage) -> list[TableSpec]:
    ddb = stage.config.dynamodb
    common = {
        "provisioned": ddb.capacity_mode == "provisioned",
        "read": ddb.read_capacity,
        "write": ddb.write_capacity,
        "kms_key": ddb.kms_key,
        "point_in_time_recovery": ddb.point_in_time_recovery,
    }
    worker_logs, filter_log = ddb.tables.worker_logs, ddb.tables.filter_log
    return [
        TableSpec(
            name=worker_logs,
            kind="worker log table",
            hash_key="task_id",
            index=IndexSpec(WORKER_LOGS_INDEX, "action", "started_at"),
            ttl_attribute=ddb.ttl_attribute,
            tags=stage.tags(worker_logs),
            **common,
        ),
        TableSpec(
            name=filter_log,
            kind="filter log table",
            hash_key="filter_run_id",
            index=IndexSpec(FILTER_LOG_INDEX, "target_slug", "timestamp"),
            ttl_attribute=None,
            tags=stage.tags(filter_log),
            **common,
        ),
    ]


def table_resource_id(table: str, index: str | None = None) -> str:
    return f"table/{table}/index/{index}" if index else f"table/{table}"


def scaling_specs(spec: TableSpec) -> list[ScalingSpec]:
    """Reads and writes of the table and of its index, each between min and max at the target."""
    specs = []
    for index in (None, spec.index.name):
        level = "index" if index else "table"
        for unit, capacity in (("Read", spec.read), ("Write", spec.write)):
            specs.append(
                ScalingSpec(
                    resource_id=table_resource_id(spec.name, index),
                    dimension=f"dynamodb:{level}:{unit}CapacityUnits",
                    min=capacity.min,
                    max=capacity.max,
                    target=float(capacity.target),
                    metric=f"DynamoDB{unit}CapacityUtilization",
                    policy_name=f"{OWNER}-{unit.lower()}-capacity-utilization",
                )
            )
    return specs


# -- reading -----------------------------------------------------------------------------------


def describe_table(stage: Stage, name: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        return stage.client("dynamodb").describe_table(TableName=name)["Table"]
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise


def table_status(stage: Stage, name: str) -> str:
    """The table's status, or that of an index still being built: ACTIVE only when all are."""
    table = describe_table(stage, name)
    if table is None:
        return "NOT_FOUND"
    if table.get("TableStatus") != "ACTIVE":
        return table.get("TableStatus", "")
    for index in table.get("GlobalSecondaryIndexes", []):
        if index.get("IndexStatus", "ACTIVE") != "ACTIVE":
            return f"index {index['IndexName']} {index['IndexStatus']}"
    return "ACTIVE"


def read_tags(stage: Stage, arn: str) -> dict[str, str]:
    client = stage.client("dynamodb")
    tags: dict[str, str] = {}
    params: dict[str, str] = {"ResourceArn": arn}
    while True:
        page = client.list_tags_of_resource(**params)
        tags.update({tag["Key"]: tag["Value"] for tag in page.get("Tags", [])})
        if not page.get("NextToken"):
            return tags
        params["NextToken"] = page["NextToken"]


def read_scaling(
    stage: Stage, resource_ids: list[str], with_policies: bool
) -> tuple[dict[tuple[str, str], tuple[int, int]], dict[tuple[str, str], dict[str, Any]]]:
    """Registered targets on these resources, and our policies on them when asked (those of each
    resource with a target, side by side)."""
    client = stage.client("application-autoscaling")
    targets = {}
    pages = client.get_paginator("describe_scalable_targets").paginate(
        ServiceNamespace=NAMESPACE, ResourceIds=resource_ids
    )
    for page in pages:
        for target in page.get("ScalableTargets", []):
            if target["ResourceId"] in resource_ids:
                key = (target["ResourceId"], target["ScalableDimension"])
                targets[key] = (target.get("MinCapacity"), target.get("MaxCapacity"))
    targeted = sorted({rid for rid, _ in targets}) if with_policies else []
    policies = {}
    for found in map_concurrently(lambda resource_id: read_our_policies(stage, resource_id), targeted):
        policies.update(found)
    return targets, policies


def read_our_policies(stage: Stage, resource_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """This tool's scaling policies on one resource, by (resource id, dimension)."""
    pages = (
        stage.client("application-autoscaling")
        .get_paginator("describe_scaling_policies")
        .paginate(ServiceNamespace=NAMESPACE, ResourceId=resource_id)
    )
    policies = {}
    for page in pages:
        for policy in page.get("ScalingPolicies", []):
            # Filtered here too: moto's ResourceId filter matches substrings (the table's id
            # is part of each of its indexes' ids).
            if policy["ResourceId"] == resource_id and policy["PolicyName"].startswith(OWNER):
                policies[(resource_id, policy["ScalableDimension"])] = policy
    return policies


def read_ttl(stage: Stage, spec: TableSpec) -> dict[str, str]:
    """The table's TTL setting; not read for a table that wants none."""
    if not spec.ttl_attribute:
        return {}
    found = stage.client("dynamodb").describe_time_to_live(TableName=spec.name)
    return found.get("TimeToLiveDescription", {})


def read_point_in_time_recovery(stage: Stage, name: str) -> bool:
    found = stage.client("dynamodb").describe_continuous_backups(TableName=name)
    backups = found["ContinuousBackupsDescription"]
    return backups.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus") == "ENABLED"


def table_state(stage: Stage, spec: TableSpec, table: dict[str, Any] | None) -> TableState:
    """The table as its DescribeTable answer has it (None: there is no such table), with what the
    other reads add (backups, TTL, autoscaling, tags): they need only its name, ARN and indexes,
    so they go side by side."""
    if table is None:
        return TableState(exists=False)
    indexes = {i["IndexName"]: i for i in table.get("GlobalSecondaryIndexes", [])}
    resource_ids = [table_resource_id(spec.name)]
    resource_ids += [table_resource_id(spec.name, index) for index in sorted({*indexes, spec.index.name})]
    pitr, ttl, (targets, policies), tags = call_concurrently(
        lambda: read_point_in_time_recovery(stage, spec.name),
        lambda: read_ttl(stage, spec),
        lambda: read_scaling(stage, resource_ids, with_policies=spec.provisioned),
        lambda: read_tags(stage, table["TableArn"]),
    )
    return TableState(
        exists=True,
        status=table.get("TableStatus", ""),
        arn=table["TableArn"],
        # Tables made before on-demand existed carry no summary: they are provisioned.
        billing_mode=table.get("BillingModeSummary", {}).get("BillingMode") or "PROVISIONED",
        key_schema=table.get("KeySchema", []),
        indexes=indexes,
        sse=table.get("SSEDescription", {}),
        deletion_protection=bool(table.get("DeletionProtectionEnabled")),
        point_in_time_recovery=pitr,
        ttl=ttl,
        tags=tags,
        targets=targets,
        policies=policies,
    )


# -- planning ----------------------------------------------------------------------------------


def wanted_key(spec: TableSpec) -> str:
    return spec.kms_key or AWS_MANAGED_KEY


def sse_specification(spec: TableSpec) -> dict[str, Any]:
    sse: dict[str, Any] = {"Enabled": True, "SSEType": "KMS"}
    if spec.kms_key:
        sse["KMSMasterKeyId"] = spec.kms_key
    return sse


def sse_matches(spec: TableSpec, state: TableState, key_arn: str | None) -> bool:
    if state.sse.get("Status") not in SSE_ON or state.sse.get("SSEType") != "KMS":
        return False
    return state.sse.get("KMSMasterKeyArn") in (wanted_key(spec), key_arn)


def wait_until_active(name: str) -> Wait:
    return Wait(
        name,
        "table and indexes ACTIVE before the next change",
        lambda stage: table_status(stage, name),
        frozenset({"ACTIVE"}),
        TABLE_FAILED,
    )


class TableSteps:
    """The steps for one table, with a wait for ACTIVE before any call that follows a change of
    the table itself (DynamoDB refuses most calls on a CREATING or UPDATING table)."""

    def __init__(self, spec: TableSpec, state: TableState) -> None:
        self.spec = spec
        self.steps: list[Call | Wait] = []
        self.busy = state.exists and state.status != "ACTIVE"

    def call(
        self, service: str, operation: str, reason: str, *, changes_table: bool = False, **params: Any
    ) -> None:
        if self.busy:
            self.steps.append(wait_until_active(self.spec.name))
            self.busy = False
        retry = RETRY_CODES.get(operation, ())
        self.steps.append(Call(service, operation, params, self.spec.name, reason, retry_codes=retry))
        self.busy = changes_table

    def table(self, operation: str, reason: str, **params: Any) -> None:
        changes_table = operation in ("CreateTable", "UpdateTable")
        self.call("dynamodb", operation, reason, changes_table=changes_table, **params)


def create_table_params(spec: TableSpec) -> dict[str, Any]:
    index: dict[str, Any] = {
        "IndexName": spec.index.name,
        "KeySchema": key_schema(spec.index.hash_key, spec.index.range_key),
        "Projection": {"ProjectionType": "ALL"},
    }
    params: dict[str, Any] = {
        "TableName": spec.name,
        "AttributeDefinitions": spec.attribute_definitions,
        "KeySchema": key_schema(spec.hash_key),
        "GlobalSecondaryIndexes": [index],
        "SSESpecification": sse_specification(spec),
        "DeletionProtectionEnabled": True,
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(spec.tags.items())],
    }
    if spec.provisioned:
        params["BillingMode"] = "PROVISIONED"
        params["ProvisionedThroughput"] = spec.throughput
        index["ProvisionedThroughput"] = spec.throughput
    else:
        params["BillingMode"] = "PAY_PER_REQUEST"
    return params


def plan_billing(out: TableSteps, state: TableState) -> None:
    """Switch billing mode; on-demand first drops the autoscaling that would fight it."""
    spec = out.spec
    want = "PROVISIONED" if spec.provisioned else "PAY_PER_REQUEST"
    if not spec.provisioned:
        for resource_id, dimension in sorted(state.targets):
            out.call(
                "application-autoscaling",
                "DeregisterScalableTarget",
                "autoscaling is not used on an on-demand table",
                ServiceNamespace=NAMESPACE,
                ResourceId=resource_id,
                ScalableDimension=dimension,
            )
    if state.billing_mode == want:
        return
    params: dict[str, Any] = {"TableName": spec.name, "BillingMode": want}
    if spec.provisioned:
        params["ProvisionedThroughput"] = spec.throughput
        # Every existing index needs its own capacity in the same call.
        updates = [
            {"Update": {"IndexName": name, "ProvisionedThroughput": spec.throughput}}
            for name in sorted(state.indexes)
        ]
        if updates:
            params["GlobalSecondaryIndexUpdates"] = updates
    out.table("UpdateTable", f"billing mode is {state.billing_mode}, config wants {want}", **params)


def plan_index(out: TableSteps, state: TableState) -> str | None:
    """Add the index when missing; an index with other keys cannot change in place (returned)."""
    spec = out.spec
    wanted = key_schema(spec.index.hash_key, spec.index.range_key)
    index = state.indexes.get(spec.index.name)
    if index is not None:
        if index.get("KeySchema") != wanted:
            return f"index {spec.index.name} has other keys than config: cannot change in place"
        return None
    create: dict[str, Any] = {
        "IndexName": spec.index.name,
        "KeySchema": wanted,
        "Projection": {"ProjectionType": "ALL"},
    }
    if spec.provisioned:
        create["ProvisionedThroughput"] = spec.throughput
    out.table(
        "UpdateTable",
        f"index {spec.index.name} does not exist",
        TableName=spec.name,
        AttributeDefinitions=spec.attribute_definitions,
        GlobalSecondaryIndexUpdates=[{"Create": create}],
    )
    return None


def plan_protection(out: TableSteps, state: TableState, key_arn: str | None) -> None:
    """Encryption, deletion protection, point-in-time recovery, TTL and tags."""
    spec, name = out.spec, out.spec.name
    if not sse_matches(spec, state, key_arn):
        out.table(
            "UpdateTable",
            f"encryption is not KMS with {wanted_key(spec)}",
            TableName=name,
            SSESpecification=sse_specification(spec),
        )
    if not state.deletion_protection:
        out.table(
            "UpdateTable",
            "deletion protection is off",
            TableName=name,
            DeletionProtectionEnabled=True,
        )
    if state.point_in_time_recovery != spec.point_in_time_recovery:
        out.table(
            "UpdateContinuousBackups",
            f"point-in-time recovery is not {'on' if spec.point_in_time_recovery else 'off'}",
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": spec.point_in_time_recovery},
        )
    plan_ttl(out, state)
    if any(state.tags.get(k) != v for k, v in spec.tags.items()):
        missing = {k: v for k, v in spec.tags.items() if state.tags.get(k) != v}
        out.table(
            "TagResource",
            tag_drift(state.tags, spec.tags),
            ResourceArn=state.arn,
            Tags=[{"Key": k, "Value": v} for k, v in sorted(missing.items())],
        )


def plan_ttl(out: TableSteps, state: TableState) -> None:
    attribute = out.spec.ttl_attribute
    if attribute is None:
        return
    status, current = state.ttl.get("TimeToLiveStatus", "DISABLED"), state.ttl.get("AttributeName")
    if status in TTL_CHANGING or (status in TTL_ON and current == attribute):
        # While AWS is still switching TTL it refuses another change: the next run looks again.
        return
    if status in TTL_ON:
        # One attribute at a time, and AWS refuses a second UpdateTimeToLive for about an hour:
        # this run turns the old one off, a run an hour later turns the new one on.
        out.table(
            "UpdateTimeToLive",
            f"TTL is on {current}, config wants {attribute}: turning it off; rerun after about an "
            f"hour to turn it on for {attribute}",
            TableName=out.spec.name,
            TimeToLiveSpecification={"Enabled": False, "AttributeName": current},
        )
        return
    out.table(
        "UpdateTimeToLive",
        f"items do not expire on {attribute}",
        TableName=out.spec.name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
    )


def policy_matches(want: ScalingSpec, policy: dict[str, Any] | None) -> bool:
    if policy is None or policy.get("PolicyType") != "TargetTrackingScaling":
        return False
    config = policy.get("TargetTrackingScalingPolicyConfiguration", {})
    metric = config.get("PredefinedMetricSpecification", {}).get("PredefinedMetricType")
    return metric == want.metric and float(config.get("TargetValue", -1)) == want.target


def plan_scaling(out: TableSteps, state: TableState) -> None:
    if not out.spec.provisioned:
        return
    for want in scaling_specs(out.spec):
        key = (want.resource_id, want.dimension)
        target = {
            "ServiceNamespace": NAMESPACE,
            "ResourceId": want.resource_id,
            "ScalableDimension": want.dimension,
        }
        have = state.targets.get(key)
        if have != (want.min, want.max):
            reason = (
                "autoscaling is not set up" if have is None else f"capacity range is {have[0]}..{have[1]}"
            )
            out.call(
                "application-autoscaling",
                "RegisterScalableTarget",
                f"{reason} ({want.dimension}), config wants {want.min}..{want.max}",
                MinCapacity=want.min,
                MaxCapacity=want.max,
                **target,
            )
        # A target registered just now has no policy (deregistering one drops its policies).
        if have is None or not policy_matches(want, state.policies.get(key)):
            out.call(
                "application-autoscaling",
                "PutScalingPolicy",
                f"no target tracking at {want.target:g}% ({want.dimension})",
                PolicyName=want.policy_name,
                PolicyType="TargetTrackingScaling",
                TargetTrackingScalingPolicyConfiguration={
                    "TargetValue": want.target,
                    "PredefinedMetricSpecification": {"PredefinedMetricType": want.metric},
                },
                **target,
            )


def plan_table(stage: Stage, spec: TableSpec, state: TableState, key_arn: str | None = None) -> Resource:
    """`key_arn` is the ARN of the configured key, when the table reports it by ARN."""
    out = TableSteps(spec, state)
    unfixable: list[str] = []
    if not state.exists:
        out.table("CreateTable", "table does not exist", **create_table_params(spec))
        if spec.point_in_time_recovery:
            out.table(
                "UpdateContinuousBackups",
                "point-in-time recovery is off on a new table",
                TableName=spec.name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
        plan_ttl(out, state)
    else:
        if state.key_schema != key_schema(spec.hash_key):
            unfixable.append("table key differs from config: cannot change in place (never recreated)")
        plan_billing(out, state)
        problem = plan_index(out, state)
        unfixable += [problem] if problem else []
        plan_protection(out, state, key_arn)
    plan_scaling(out, state)
    detail = f"{state.arn} ({state.billing_mode})" if state.exists else ""
    resource = converge(AREA, spec.kind, spec.name, out.steps, exists=state.exists, detail=detail)
    if unfixable:
        # Shown by status; no step can repair it without losing data, so none is planned.
        resource = replace(resource, state="drifted", drift=resource.drift + tuple(unfixable))
    return resource


def plan(stage: Stage) -> list[Resource]:
    specs = table_specs(stage)
    tables = map_concurrently(lambda spec: describe_table(stage, spec.name), specs)
    # DynamoDB names the key by ARN; config may name it by alias or id: resolve only if it matters,
    # beside the tables' other reads.
    wanted = {wanted_key(spec) for spec in specs}
    encryption = [table.get("SSEDescription") for table in tables if table]
    reported = {sse.get("KMSMasterKeyArn") for sse in encryption if sse}
    other_key = bool(reported - wanted - {None})
    *states, key_arn = call_concurrently(
        *(partial(table_state, stage, spec, table) for spec, table in zip(specs, tables, strict=True)),
        lambda: kms.key_arn(stage, wanted.pop()) if other_key else None,
    )
    return [plan_table(stage, spec, state, key_arn) for spec, state in zip(specs, states, strict=True)]


# -- tasks -------------------------------------------------------------------------------------


create, status = area_tasks(AREA, "the worker log and filter log tables", plan)
collection = Collection(AREA, create, status)
