"""Redis: the ElastiCache replication group, encrypted at rest and in transit, AUTH token from SSM."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.areas import kms, network
from deploy.cli import area_tasks
from deploy.errors import error_code
from deploy.parallel import call_concurrently, map_concurrently
from deploy.plan import Call, Deferred, Resource, Step, Wait, converge, tag_drift

if TYPE_CHECKING:
    from deploy.stage import Stage

AREA = "redis"
# Needs first: the data security group and subnet group, the key, the events topic, its
# service-linked role.
AFTER: tuple[str, ...] = ("network", "kms", "sns", "iam")
LOOKUPS = ("endpoint",)
# 10 to 40 minutes on AWS: started and awaited together with the other slow areas.
SLOW = True
KIND = "replication group"
ENGINE = "redis"
PORT = 6379
AUTH_TOKEN_LENGTH = 64
READY = frozenset({"available"})
# AWS is still working on the group: a rerun waits for it instead of changing anything.
BUSY = frozenset({"creating", "modifying", "snapshotting"})
FAILED = frozenset({"create-failed", "deleting", "missing"})
# In-transit encryption can be turned on in place from Redis 7.0 on; before, only a new group has it.
TRANSIT_IN_PLACE_FROM = (7, 0)
DESCRIPTION = "IOTile Cloud Redis ({stage}), managed by iotile-deploy"


@dataclass(frozen=True)
class RedisSpec:
    name: str
    description: str
    node_type: str
    engine_version: str
    replicas: int
    automatic_failover: bool
    snapshot_retention_days: int
    kms_key: str | None
    auth_token_secret: str
    subnet_group: str
    security_group: str
    notification_topic: str
    wait_seconds: int
    tags: dict[str, str]


@dataclass(frozen=True)
class NodeState:
    """What ElastiCache reports per member cluster, not per group: read from the primary."""

    engine_version: str = ""
    security_group_ids: frozenset[str] = frozenset()
    notification_topic: str | None = None
    # `inactive` when ElastiCache stopped publishing (an encrypted or deleted topic, say).
    notification_status: str | None = None
    subnet_group: str = ""
    pending: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RedisState:
    exists: bool
    status: str = ""
    arn: str = ""
    node_type: str = ""
    members: int = 0
    automatic_failover: str = ""
    multi_az: str = ""
    snapshot_retention_days: int = 0
    at_rest_encryption: bool = False
    transit_encryption: bool = False
    transit_mode: str | None = None
    auth_token: bool = False
    kms_key_id: str | None = None
    endpoint: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # None when the primary cluster could not be read (then what it reports is not compared).
    node: NodeState | None = None

    @property
    def replicas(self) -> int:
        return max(self.members - 1, 0)


def replication_group_spec(stage: Stage) -> RedisSpec:
    from deploy.areas.sns import topic_arn

    redis, net = stage.config.redis, stage.config.network
    return RedisSpec(
        name=redis.replication_group,
        description=DESCRIPTION.format(stage=stage.name),
        node_type=redis.node_type,
        engine_version=redis.engine_version,
        replicas=redis.replicas,
        automatic_failover=redis.automatic_failover,
        snapshot_retention_days=redis.snapshot_retention_days,
        kms_key=redis.kms_key,
        auth_token_secret=redis.auth_token_secret,
        subnet_group=net.cache_subnet_group,
        security_group=net.data_security_group,
        notification_topic=topic_arn(stage, stage.config.sns.topics.cache_events),
        wait_seconds=redis.wait_minutes * 60,
        tags=stage.tags(redis.replication_group),
    )


# -- what ElastiCache has ----------------------------------------------------------------------


def _describe(stage: Stage, name: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        found = stage.client("elasticache").describe_replication_groups(ReplicationGroupId=name)
    except ClientError as exc:
        if error_code(exc) == "ReplicationGroupNotFoundFault":
            return None
        raise
    return found["ReplicationGroups"][0]


def _endpoint(group: dict[str, Any]) -> str | None:
    node_groups = group.get("NodeGroups") or [{}]
    address = node_groups[0].get("PrimaryEndpoint") or group.get("ConfigurationEndpoint") or {}
    if not address.get("Address"):
        return None
    return f"{address['Address']}:{address.get('Port', PORT)}"


def _primary_cluster(group: dict[str, Any]) -> str | None:
    for node_group in group.get("NodeGroups", []):
        for member in node_group.get("NodeGroupMembers", []):
            if member.get("CurrentRole") == "primary":
                return member["CacheClusterId"]
    members = group.get("MemberClusters", [])
    return members[0] if members else None


def read_node(stage: Stage, cluster_id: str | None) -> NodeState | None:
    from botocore.exceptions import ClientError

    if cluster_id is None:
        return None
    try:
        found = stage.client("elasticache").describe_cache_clusters(CacheClusterId=cluster_id)
    except ClientError as exc:
        # Right after a failover or while members change, a listed member may not be found yet.
        if error_code(exc) == "CacheClusterNotFound":
            return None
        raise
    cluster = found["CacheClusters"][0]
    notification = cluster.get("NotificationConfiguration") or {}
    return NodeState(
        engine_version=cluster.get("EngineVersion", ""),
        security_group_ids=frozenset(g["SecurityGroupId"] for g in cluster.get("SecurityGroups", [])),
        notification_topic=notification.get("TopicArn"),
        notification_status=notification.get("TopicStatus"),
        subnet_group=cluster.get("CacheSubnetGroupName", ""),
        pending=cluster.get("PendingModifiedValues") or {},
    )


def read_replication_group(stage: Stage, name: str) -> RedisState:
    group = _describe(stage, name)
    if group is None:
        return RedisState(False)
    status = group.get("Status", "")
    state = RedisState(
        True,
        status=status,
        arn=group.get("ARN", ""),
        node_type=group.get("CacheNodeType", ""),
        members=len(group.get("MemberClusters", [])),
        automatic_failover=group.get("AutomaticFailover", ""),
        multi_az=group.get("MultiAZ", ""),
        snapshot_retention_days=int(group.get("SnapshotRetentionLimit") or 0),
        at_rest_encryption=bool(group.get("AtRestEncryptionEnabled")),
        transit_encryption=bool(group.get("TransitEncryptionEnabled")),
        transit_mode=group.get("TransitEncryptionMode"),
        auth_token=bool(group.get("AuthTokenEnabled")),
        kms_key_id=group.get("KmsKeyId"),
        endpoint=_endpoint(group),
    )
    if status not in READY:
        return state  # only waited for, or reported: the rest is not compared
    elasticache = stage.client("elasticache")
    # The group's tags and its primary node, side by side.
    tags, node = call_concurrently(
        lambda: elasticache.list_tags_for_resource(ResourceName=state.arn).get("TagList", []),
        partial(read_node, stage, _primary_cluster(group)),
    )
    return replace(state, tags={tag["Key"]: tag["Value"] for tag in tags}, node=node)


def probe(stage: Stage, name: str) -> str:
    """The group's status, "missing" when there is none: what a Wait polls."""
    group = _describe(stage, name)
    return "missing" if group is None else str(group.get("Status", "unknown"))


def endpoint(stage: Stage) -> str | None:
    """The primary endpoint (address:port) of the stage's replication group, None if there is none."""
    group = _describe(stage, stage.config.redis.replication_group)
    return _endpoint(group) if group else None


# -- planning ----------------------------------------------------------------------------------


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def _older(have: str, want: str) -> bool:
    """Whether engine `have` (e.g. 6.2.6) is older than `want` (e.g. 7.1, any patch level)."""
    wanted = _version(want)
    return bool(have) and _version(have)[: len(wanted)] < wanted


def _enabled(value: str) -> bool:
    return value in ("enabled", "enabling")


def wait_until_available(spec: RedisSpec, reason: str) -> Wait:
    return Wait(
        spec.name,
        reason,
        partial(probe, name=spec.name),
        READY,
        FAILED,
        timeout_seconds=spec.wait_seconds,
    )


def create_steps(stage: Stage, spec: RedisSpec, data_group: str | Deferred) -> list[Step]:
    from deploy.secrets import generated_secret

    steps: list[Step] = []
    secret_steps, token = generated_secret(stage, spec.auth_token_secret, spec.name, length=AUTH_TOKEN_LENGTH)
    steps.extend(secret_steps)
    params: dict[str, Any] = {
        "ReplicationGroupId": spec.name,
        "ReplicationGroupDescription": spec.description,
        "Engine": ENGINE,
        "EngineVersion": spec.engine_version,
        "CacheNodeType": spec.node_type,
        "NumCacheClusters": 1 + spec.replicas,
        "AutomaticFailoverEnabled": spec.automatic_failover,
        "MultiAZEnabled": spec.automatic_failover,
        "AtRestEncryptionEnabled": True,
        "TransitEncryptionEnabled": True,
        "AuthToken": token,
        "CacheSubnetGroupName": spec.subnet_group,
        "SecurityGroupIds": [data_group],
        "NotificationTopicArn": spec.notification_topic,
        "SnapshotRetentionLimit": spec.snapshot_retention_days,
        "Port": PORT,
        "Tags": stage.tag_list(spec.tags),
    }
    if spec.kms_key:
        params["KmsKeyId"] = spec.kms_key
    steps.append(
        Call(
            "elasticache",
            "CreateReplicationGroup",
            params,
            spec.name,
            "replication group does not exist",
            sensitive=("AuthToken",),
        )
    )
    steps.append(wait_until_available(spec, "new replication group"))
    return steps


@dataclass
class Changes:
    """Parameters of one ModifyReplicationGroup call, and why each is there."""

    params: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def add(self, reason: str, **params: Any) -> None:
        self.params.update(params)
        self.reasons.append(reason)


def _security_changes(spec: RedisSpec, state: RedisState, data_group: str | Deferred) -> Changes:
    """What protects the data: applied at once."""
    out = Changes()
    if _enabled(state.automatic_failover) != spec.automatic_failover:
        want = "on" if spec.automatic_failover else "off"
        out.add(f"automatic failover should be {want}", AutomaticFailoverEnabled=spec.automatic_failover)
    if _enabled(state.multi_az) != spec.automatic_failover:
        want = "on" if spec.automatic_failover else "off"
        out.add(f"Multi-AZ should be {want}", MultiAZEnabled=spec.automatic_failover)
    if state.snapshot_retention_days != spec.snapshot_retention_days:
        out.add(
            f"snapshots kept {state.snapshot_retention_days} days, not {spec.snapshot_retention_days}",
            SnapshotRetentionLimit=spec.snapshot_retention_days,
        )
    node = state.node
    if node is not None:
        if not isinstance(data_group, str) or node.security_group_ids != {data_group}:
            groups = ", ".join(sorted(node.security_group_ids)) or "none"
            out.add(
                f"security groups {groups}, config wants the data group only", SecurityGroupIds=[data_group]
            )
        if node.notification_topic != spec.notification_topic:
            out.add(
                "notifications do not go to the configured topic",
                NotificationTopicArn=spec.notification_topic,
            )
        elif node.notification_status not in (None, "active"):
            out.add(
                f"notifications are {node.notification_status}: ElastiCache stopped publishing",
                NotificationTopicArn=spec.notification_topic,
                NotificationTopicStatus="active",
            )
    return out


def _sizing_changes(spec: RedisSpec, state: RedisState) -> Changes:
    """Node type and engine upgrades: left to the maintenance window (a restart of each node)."""
    out = Changes()
    pending = state.node.pending if state.node else {}
    if state.node_type != spec.node_type and pending.get("CacheNodeType") != spec.node_type:
        out.add(f"node type {state.node_type}, config says {spec.node_type}", CacheNodeType=spec.node_type)
    if (
        state.node is not None
        and _older(state.node.engine_version, spec.engine_version)
        and _older(pending.get("EngineVersion", state.node.engine_version), spec.engine_version)
    ):
        out.add(
            f"engine {state.node.engine_version} is older than {spec.engine_version}",
            EngineVersion=spec.engine_version,
        )
    return out


def _modify(spec: RedisSpec, changes: Changes, *, immediately: bool) -> list[Step]:
    if not changes.params:
        return []
    params = {"ReplicationGroupId": spec.name, **changes.params, "ApplyImmediately": immediately}
    reason = "; ".join(changes.reasons)
    call = Call("elasticache", "ModifyReplicationGroup", params, spec.name, reason)
    return [call, wait_until_available(spec, "applying the change")]


def _replica_steps(spec: RedisSpec, state: RedisState, operation: str) -> list[Step]:
    params = {"ReplicationGroupId": spec.name, "NewReplicaCount": spec.replicas, "ApplyImmediately": True}
    reason = f"{state.replicas} replica(s), config says {spec.replicas}"
    call = Call("elasticache", operation, params, spec.name, reason)
    return [call, wait_until_available(spec, "changing the replicas")]


def _transit_steps(spec: RedisSpec, state: RedisState) -> tuple[list[Step], list[str]]:
    """In-transit encryption goes on in two runs, as AWS advises: `preferred` (TLS and plain both
    accepted, so clients can move to TLS), then `required`."""
    if state.transit_encryption and state.transit_mode != "preferred":
        return [], []
    if state.transit_encryption:
        params = {"TransitEncryptionMode": "required"}
        reason = "in-transit encryption is optional (preferred): make it required"
    elif state.node is not None and _version(state.node.engine_version) >= TRANSIT_IN_PLACE_FROM:
        params = {"TransitEncryptionEnabled": True, "TransitEncryptionMode": "preferred"}
        reason = "not encrypted in transit: enable (preferred first, required on the next run)"
    elif state.node is None:
        return [], ["not encrypted in transit (engine version unknown: rerun to enable it in place)"]
    else:
        return [], ["recreate needed: not encrypted in transit (Redis before 7.0 cannot enable it in place)"]
    call = Call(
        "elasticache",
        "ModifyReplicationGroup",
        {"ReplicationGroupId": spec.name, **params, "ApplyImmediately": True},
        spec.name,
        reason,
    )
    return [call, wait_until_available(spec, "applying in-transit encryption")], []


def _unfixable(spec: RedisSpec, state: RedisState, key_arn: str | None) -> list[str]:
    """Drift no call can repair without a new group (and so a new, empty cache): reported only."""
    problems = []
    if not state.at_rest_encryption:
        problems.append("recreate needed: not encrypted at rest")
    elif spec.kms_key and state.kms_key_id not in (spec.kms_key, key_arn):
        problems.append(
            f"recreate needed: encrypted with {state.kms_key_id or 'the AWS key'}, not {spec.kms_key}"
        )
    if not state.auth_token:
        problems.append(f"no AUTH token: set one by hand and store it as {spec.auth_token_secret}")
    if state.node is not None and state.node.subnet_group != spec.subnet_group:
        problems.append(
            f"recreate needed: in subnet group {state.node.subnet_group}, not {spec.subnet_group}"
        )
    return problems


def plan_replication_group(
    stage: Stage,
    spec: RedisSpec,
    state: RedisState,
    data_group: str | Deferred,
    key_arn: str | None = None,
) -> Resource:
    """`data_group` is the data security group's id (a Deferred when it is still to be made);
    `key_arn` the ARN of the configured KMS key, when the group reports its key by ARN."""
    if not state.exists:
        return converge(AREA, KIND, spec.name, create_steps(stage, spec, data_group), exists=False)
    if state.status in BUSY:
        wait = wait_until_available(spec, f"{state.status}: wait until available")
        return converge(AREA, KIND, spec.name, [wait], exists=True, detail=state.status)
    if state.status not in READY:
        drift = (f"status {state.status}: nothing can be changed; see the ElastiCache console",)
        return Resource(AREA, KIND, spec.name, "drifted", (), drift, state.status)
    steps: list[Step] = []
    # Replicas first when adding (failover needs one), last when removing (after failover is off).
    if spec.replicas > state.replicas:
        steps += _replica_steps(spec, state, "IncreaseReplicaCount")
    steps += _modify(spec, _security_changes(spec, state, data_group), immediately=True)
    if spec.replicas < state.replicas:
        steps += _replica_steps(spec, state, "DecreaseReplicaCount")
    transit, unfixable = _transit_steps(spec, state)
    steps += transit
    steps += _modify(spec, _sizing_changes(spec, state), immediately=False)
    drifted = {k: v for k, v in spec.tags.items() if state.tags.get(k) != v}
    if drifted:
        params = {"ResourceName": state.arn, "Tags": stage.tag_list(drifted)}
        steps.append(
            Call("elasticache", "AddTagsToResource", params, spec.name, tag_drift(state.tags, spec.tags))
        )
    resource = converge(AREA, KIND, spec.name, steps, exists=True, detail=state.endpoint or state.status)
    unfixable += _unfixable(spec, state, key_arn)
    if unfixable:
        # Shown by status; no step can repair them without losing the cache, so none is planned.
        resource = replace(resource, state="drifted", drift=resource.drift + tuple(unfixable))
    return resource


def plan(stage: Stage) -> list[Resource]:
    from deploy.areas.network import security_group_id

    spec = replication_group_spec(stage)
    reads = [
        partial(read_replication_group, stage, spec.name),
        partial(security_group_id, stage, spec.security_group),
    ]
    state, group_id = map_concurrently(lambda read: read(), reads)
    key_arn = None
    if spec.kms_key and state.kms_key_id and state.kms_key_id != spec.kms_key:
        key_arn = kms.key_arn(stage, spec.kms_key)
    data_group = group_id or network.group_id_when_created(spec.security_group)
    return [plan_replication_group(stage, spec, state, data_group, key_arn)]


# -- tasks -------------------------------------------------------------------------------------


create, status = area_tasks(AREA, "the Redis replication group", plan)
collection = Collection(AREA, create, status)
