"""Redshift: the stream data cluster and the time series cluster: encrypted, private, in the data
security group, COPY through an IAM role, master password in Parameter Store. Never deleted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.areas import iam, network
from deploy.cli import area_tasks, deploy_task
from deploy.parallel import map_concurrently
from deploy.plan import Call, Deferred, Resource, Step, Wait, converge, tag_drift

if TYPE_CHECKING:
    from deploy.execute import Outcome
    from deploy.report import Reporter
    from deploy.stage import Stage

AREA = "redshift"
# What other areas may call here (the tests hold them to it).
LOOKUPS = ("enabled_clusters", "jdbc_url", "namespace_arn", "endpoint")
# Needs first: the data security group and subnet group, the key, the COPY role.
AFTER: tuple[str, ...] = ("network", "kms", "iam")
# 10 to 40 minutes on AWS: started and awaited together with the other slow areas.
SLOW = True
KIND = "Redshift cluster"
CLUSTERS = ("stream_data", "timeseries")
# Redshift wants 8 to 64 characters with upper case, lower case and a digit: generate_password
# always has all three.
PASSWORD_LENGTH = 32
# AWS is still working on the cluster: a rerun waits for it instead of changing anything.
BUSY = frozenset({"creating", "modifying", "resizing", "rebooting", "renaming", "cancelling-resize"})
FAILED = frozenset(
    {
        "hardware-failure",
        "incompatible-hsm",
        "incompatible-network",
        "incompatible-parameters",
        "incompatible-restore",
        "storage-full",
        "deleting",
        "final-snapshot",
    }
)
ABSENT = "missing"


@dataclass(frozen=True)
class ClusterSpec:
    """One cluster as config wants it."""

    which: str
    identifier: str
    node_type: str
    nodes: int
    database: str
    master_username: str
    password_secret: str
    snapshot_retention_days: int
    kms_key: str | None
    subnet_group: str
    security_group: str
    role_arn: str
    tags: dict[str, str]
    wait_seconds: int
    # firehose.delivery direct: Firehose connects to the cluster over the internet, so it is
    # publicly accessible (in the public subnets) and without enhanced VPC routing, which Firehose
    # cannot deliver through. Staged (the default): private, COPY routed through the VPC.
    public: bool = False

    @property
    def cluster_type(self) -> str:
        return "multi-node" if self.nodes > 1 else "single-node"


@dataclass(frozen=True)
class ClusterState:
    """One cluster as Redshift has it, pending modifications counted as done."""

    exists: bool
    status: str = ""
    node_type: str = ""
    nodes: int = 0
    encrypted: bool = False
    publicly_accessible: bool = False
    enhanced_vpc_routing: bool = False
    snapshot_retention_days: int = 0
    security_group_ids: frozenset[str] = frozenset()
    role_arns: frozenset[str] = frozenset()
    subnet_group: str = ""
    address: str = ""
    port: int = 0
    database: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str | None:
        return f"{self.address}:{self.port}" if self.address else None


def cluster_arn(stage: Stage, identifier: str) -> str:
    from deploy.policies import partition

    return f"arn:{partition(stage.region)}:redshift:{stage.region}:{stage.account_id}:cluster:{identifier}"


def cluster_spec(stage: Stage, which: str) -> ClusterSpec:
    config = stage.config
    redshift = config.redshift
    cluster = getattr(redshift, which)
    return ClusterSpec(
        which=which,
        identifier=cluster.identifier,
        node_type=cluster.node_type,
        nodes=cluster.nodes,
        database=cluster.database,
        master_username=cluster.master_username,
        password_secret=cluster.password_secret,
        snapshot_retention_days=redshift.snapshot_retention_days,
        kms_key=redshift.kms_key,
        subnet_group=config.network.redshift_subnet_group,
        security_group=config.network.data_security_group,
        role_arn=iam.role_arn(stage, config.iam.redshift_role),
        tags=stage.tags(cluster.identifier),
        wait_seconds=redshift.wait_minutes * 60,
        public=config.firehose.delivery == "direct",
    )


def enabled_clusters(stage: Stage) -> list[str]:
    """The clusters `up` manages: the time series one only once config enables it."""
    return [which for which in CLUSTERS if getattr(stage.config.redshift, which).enabled]


# -- reading -----------------------------------------------------------------------------------


def _describe(stage: Stage, identifier: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    def read() -> dict[str, Any] | None:
        try:
            clusters = stage.client("redshift").describe_clusters(ClusterIdentifier=identifier)["Clusters"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("ClusterNotFound", "ClusterNotFoundFault"):
                return None
            raise
        return clusters[0] if clusters else None

    # The cluster, the streams and the COPY jobs read the same cluster: once a run.
    return stage.remember(("redshift", "cluster", identifier), read)


def read_cluster(stage: Stage, identifier: str) -> ClusterState:
    found = _describe(stage, identifier)
    if found is None:
        return ClusterState(exists=False)
    # A modification AWS accepted but has not applied yet shows here: count it as made, so a
    # rerun does not ask for it again.
    pending = found.get("PendingModifiedValues") or {}
    current = {**found, **{k: v for k, v in pending.items() if v is not None}}
    encrypted = bool(found.get("Encrypted"))
    if "EncryptionType" in pending:
        encrypted = pending["EncryptionType"] not in ("None", "")
    endpoint = found.get("Endpoint") or {}
    return ClusterState(
        exists=True,
        status=str(found.get("ClusterStatus", "")),
        node_type=current.get("NodeType", ""),
        nodes=int(current.get("NumberOfNodes") or 0),
        encrypted=encrypted,
        publicly_accessible=bool(current.get("PubliclyAccessible")),
        enhanced_vpc_routing=bool(current.get("EnhancedVpcRouting")),
        snapshot_retention_days=int(current.get("AutomatedSnapshotRetentionPeriod") or 0),
        security_group_ids=frozenset(
            group["VpcSecurityGroupId"]
            for group in found.get("VpcSecurityGroups", [])
            if group.get("Status") != "removing"
        ),
        role_arns=frozenset(
            role["IamRoleArn"] for role in found.get("IamRoles", []) if role.get("ApplyStatus") != "removing"
        ),
        subnet_group=found.get("ClusterSubnetGroupName", ""),
        address=endpoint.get("Address", ""),
        port=int(endpoint.get("Port") or 0),
        database=found.get("DBName", ""),
        tags={tag["Key"]: tag["Value"] for tag in found.get("Tags", [])},
    )


def cluster_status(identifier: str) -> Callable[[Stage], str]:
    """A Wait probe: the cluster's status, or `missing`."""

    def probe(stage: Stage) -> str:
        found = _describe(stage, identifier)
        return str(found.get("ClusterStatus", "")) if found else ABSENT

    return probe


def endpoint(stage: Stage, which: str = "stream_data") -> str | None:
    """`address:port` of a cluster (live read), or None while it does not exist or has none yet."""
    return read_cluster(stage, getattr(stage.config.redshift, which).identifier).endpoint


def jdbc_url(stage: Stage, which: str = "stream_data") -> str | None:
    """The JDBC URL Firehose delivers to (live read), or None while the cluster has no endpoint."""
    cluster = getattr(stage.config.redshift, which)
    state = read_cluster(stage, cluster.identifier)
    if not state.endpoint:
        return None
    return f"jdbc:redshift://{state.endpoint}/{state.database or cluster.database}"


def namespace_arn(stage: Stage, which: str = "stream_data") -> str | None:
    """The cluster's namespace ARN (live read), which integrations and resource policies name;
    None while the cluster does not exist."""
    found = _describe(stage, getattr(stage.config.redshift, which).identifier)
    return (found or {}).get("ClusterNamespaceArn") or None


def _data_group_id(stage: Stage) -> str | None:
    from deploy.areas import network

    return network.security_group_id(stage, stage.config.network.data_security_group)


# -- planning ----------------------------------------------------------------------------------


def _wait(spec: ClusterSpec, reason: str) -> Wait:
    return Wait(
        spec.identifier,
        reason,
        cluster_status(spec.identifier),
        ready=frozenset({"available"}),
        failed=FAILED,
        timeout_seconds=spec.wait_seconds,
    )


def _create_steps(stage: Stage, spec: ClusterSpec, group: str | Deferred) -> list[Step]:
    from deploy.secrets import generated_secret

    steps: list[Step] = []
    secret_steps, password = generated_secret(
        stage, spec.password_secret, spec.identifier, length=PASSWORD_LENGTH
    )
    steps.extend(secret_steps)
    params: dict[str, Any] = {
        "ClusterIdentifier": spec.identifier,
        "NodeType": spec.node_type,
        "ClusterType": spec.cluster_type,
        **({"NumberOfNodes": spec.nodes} if spec.nodes > 1 else {}),
        "DBName": spec.database,
        "MasterUsername": spec.master_username,
        "MasterUserPassword": password,
        "Encrypted": True,
        **({"KmsKeyId": spec.kms_key} if spec.kms_key else {}),
        "PubliclyAccessible": spec.public,
        "EnhancedVpcRouting": not spec.public,
        "ClusterSubnetGroupName": spec.subnet_group,
        "VpcSecurityGroupIds": [group],
        "IamRoles": [spec.role_arn],
        "AutomatedSnapshotRetentionPeriod": spec.snapshot_retention_days,
        "Tags": stage.tag_list(spec.tags),
    }
    reason = "cluster does not exist"
    steps.append(
        Call("redshift", "CreateCluster", params, spec.identifier, reason, sensitive=("MasterUserPassword",))
    )
    steps.append(_wait(spec, "new cluster is being created"))
    return steps


def _settings_drift(
    spec: ClusterSpec, state: ClusterState, group: str | Deferred
) -> tuple[dict[str, Any], list[str]]:
    params: dict[str, Any] = {}
    why: list[str] = []
    if state.publicly_accessible != spec.public:
        params["PubliclyAccessible"] = spec.public
        why.append("publicly accessible" if state.publicly_accessible else "not publicly accessible")
    if state.snapshot_retention_days != spec.snapshot_retention_days:
        params["AutomatedSnapshotRetentionPeriod"] = spec.snapshot_retention_days
        why.append(f"snapshot retention {state.snapshot_retention_days} days")
    if isinstance(group, Deferred) or state.security_group_ids != {group}:
        params["VpcSecurityGroupIds"] = [group]
        why.append("security groups differ")
    if state.enhanced_vpc_routing == spec.public:
        params["EnhancedVpcRouting"] = not spec.public
        why.append(f"enhanced VPC routing {'on' if state.enhanced_vpc_routing else 'off'}")
    return params, why


def _modify(spec: ClusterSpec, params: dict[str, Any], reason: str) -> list[Step]:
    call = Call(
        "redshift", "ModifyCluster", {"ClusterIdentifier": spec.identifier, **params}, spec.identifier, reason
    )
    return [call, _wait(spec, "cluster applies the change")]


def _drift_steps(stage: Stage, spec: ClusterSpec, state: ClusterState, group: str | Deferred) -> list[Step]:
    steps: list[Step] = []
    # One change per ModifyCluster, each awaited: Redshift refuses a modify while one is running.
    settings, why = _settings_drift(spec, state, group)
    if settings:
        steps += _modify(spec, settings, f"{', '.join(why)}: not as config says")
    if (state.node_type, state.nodes) != (spec.node_type, spec.nodes):
        resize = {"ClusterType": spec.cluster_type, "NodeType": spec.node_type, "NumberOfNodes": spec.nodes}
        reason = (
            f"resize from {state.nodes} x {state.node_type} to {spec.nodes} x {spec.node_type} "
            "(the cluster is read-only while it resizes)"
        )
        steps += _modify(spec, resize, reason)
    if not state.encrypted:
        # Unlike RDS, Redshift encrypts a running cluster in place (it stays read-only meanwhile).
        encrypt = {"Encrypted": True, **({"KmsKeyId": spec.kms_key} if spec.kms_key else {})}
        steps += _modify(spec, encrypt, "cluster is not encrypted at rest")
    if spec.role_arn not in state.role_arns:
        params = {"ClusterIdentifier": spec.identifier, "AddIamRoles": [spec.role_arn]}
        reason = "COPY role is not attached"
        steps.append(Call("redshift", "ModifyClusterIamRoles", params, spec.identifier, reason))
        steps.append(_wait(spec, "cluster attaches the role"))
    if any(state.tags.get(k) != v for k, v in spec.tags.items()):
        params = {"ResourceName": cluster_arn(stage, spec.identifier), "Tags": stage.tag_list(spec.tags)}
        steps.append(
            Call("redshift", "CreateTags", params, spec.identifier, tag_drift(state.tags, spec.tags))
        )
    return steps


def plan_cluster(stage: Stage, spec: ClusterSpec, state: ClusterState, group_id: str | None) -> Resource:
    group: str | Deferred = group_id or network.group_id_when_created(spec.security_group)
    detail = state.endpoint or state.status
    if not state.exists:
        steps = _create_steps(stage, spec, group)
    elif state.status in BUSY:
        steps = [_wait(spec, f"cluster is {state.status}")]
    elif state.status != "available":
        # paused, failed or on its way out: nothing can be modified; status shows why.
        steps = []
        detail = f"{state.status}: not changed while in this state"
    else:
        steps = _drift_steps(stage, spec, state, group)
    return converge(AREA, KIND, spec.identifier, steps, exists=state.exists, detail=detail)


def plan_clusters(stage: Stage, which: list[str]) -> list[Resource]:
    specs = [cluster_spec(stage, name) for name in which]
    if not specs:
        return []
    reads: list[Callable[[], Any]] = [
        partial(_data_group_id, stage),
        *(partial(read_cluster, stage, spec.identifier) for spec in specs),
    ]
    group_id, *states = map_concurrently(lambda read: read(), reads)
    return [plan_cluster(stage, spec, state, group_id) for spec, state in zip(specs, states, strict=True)]


def plan(stage: Stage) -> list[Resource]:
    """What `up` and `redshift.create` converge: the stream data cluster, plus the time series
    cluster when redshift.timeseries.enabled."""
    return plan_clusters(stage, enabled_clusters(stage))


def plan_timeseries(stage: Stage) -> list[Resource]:
    """The time series cluster alone, enabled in config or not (create-streamtimeseries-redshift)."""
    return plan_clusters(stage, ["timeseries"])


def converge_timeseries(stage: Stage, reporter: Reporter, *, dry_run: bool) -> Outcome:
    from deploy.execute import converge_waves

    waves = [{AREA: plan_timeseries}]
    return converge_waves(stage, waves, reporter, dry_run=dry_run, title="the time series cluster")


# -- tasks -------------------------------------------------------------------------------------


create, status = area_tasks(AREA, "the Redshift clusters (time series only when enabled)", plan)


@deploy_task()
def create_timeseries(c, stage=None, dry_run=False, json=False):
    """Create or converge the time series cluster, enabled in config or not.
    Example: inv redshift.create-timeseries --stage dev --dry-run"""
    from deploy.report import Reporter
    from deploy.stage import open_stage

    target = open_stage(stage, dry_run=dry_run)
    reporter = Reporter(as_json=json)
    outcome = converge_timeseries(target, reporter, dry_run=dry_run)
    reporter.outcome(outcome.resources, stage=target.name, dry_run=dry_run, calls=outcome.calls)


collection = Collection(AREA, create, status, create_timeseries)
