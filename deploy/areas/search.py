"""Search: the OpenSearch domain, encrypted, HTTPS only, in the VPC, open only to the search roles."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.areas import kms, network
from deploy.cli import area_tasks
from deploy.errors import AwsError, error_code
from deploy.parallel import map_concurrently
from deploy.plan import Call, Deferred, Resource, Step, Wait, converge, tag_drift

if TYPE_CHECKING:
    from deploy.stage import Stage

AREA = "search"
# Needs first: the data security group, the key, the roles its access policy names.
AFTER: tuple[str, ...] = ("network", "kms", "iam")
LOOKUPS = ("endpoint",)
# 10 to 40 minutes on AWS: started and awaited together with the other slow areas.
SLOW = True
KIND = "search domain"
TLS_POLICY = "Policy-Min-TLS-1-2-2019-07"
HTTPS_PORT = 443
VOLUME_TYPE = "gp3"
# Zone awareness spreads the data nodes (and replicas) over this many availability zones.
ZONES_WHEN_AWARE = 2
READY = frozenset({"active"})
BUSY = frozenset({"creating", "processing"})
FAILED = frozenset({"deleted", "missing"})
# Encryption at rest and node-to-node encryption can be turned on in place from Elasticsearch 6.7
# on (every OpenSearch version); older domains need a new domain.
ENCRYPT_IN_PLACE_FROM = (6, 7)


@dataclass(frozen=True)
class SearchSpec:
    name: str
    engine_version: str
    instance_type: str
    instances: int
    volume_gb: int
    kms_key: str | None
    security_group: str
    # Roles holding the search policy: the only principals the access policy admits.
    principals: tuple[str, ...]
    wait_seconds: int
    tags: dict[str, str]

    @property
    def zones(self) -> int:
        return ZONES_WHEN_AWARE if self.instances >= 2 else 1


@dataclass(frozen=True)
class SearchState:
    exists: bool
    status: str = ""
    arn: str = ""
    engine_version: str = ""
    cluster: dict[str, Any] = field(default_factory=dict)
    ebs: dict[str, Any] = field(default_factory=dict)
    access_policy: Any = None
    endpoint_options: dict[str, Any] = field(default_factory=dict)
    node_to_node: bool = False
    at_rest: dict[str, Any] = field(default_factory=dict)
    # None for a domain with a public endpoint (outside any VPC).
    vpc: dict[str, Any] | None = None
    endpoint: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


def search_principals(stage: Stage) -> tuple[str, ...]:
    """ARNs of the roles config gives the search policy (deploy.iam decides which those are)."""
    from deploy.areas.iam import role_arns_holding

    return role_arns_holding(stage, stage.config.iam.search_policy)


def domain_spec(stage: Stage) -> SearchSpec:
    search = stage.config.search
    return SearchSpec(
        name=search.domain,
        engine_version=search.engine_version,
        instance_type=search.instance_type,
        instances=search.instances,
        volume_gb=search.volume_gb,
        kms_key=search.kms_key,
        security_group=stage.config.network.data_security_group,
        principals=search_principals(stage),
        wait_seconds=search.wait_minutes * 60,
        tags=stage.tags(search.domain),
    )


def domain_arn(stage: Stage, name: str) -> str:
    return stage.arn("es", f"domain/{name}")


def access_policy(stage: Stage, spec: SearchSpec) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": list(spec.principals)},
                "Action": "es:ESHttp*",
                "Resource": f"{domain_arn(stage, spec.name)}/*",
            }
        ],
    }


def cluster_config(spec: SearchSpec) -> dict[str, Any]:
    config: dict[str, Any] = {
        "InstanceType": spec.instance_type,
        "InstanceCount": spec.instances,
        "ZoneAwarenessEnabled": spec.zones > 1,
    }
    if spec.zones > 1:
        config["ZoneAwarenessConfig"] = {"AvailabilityZoneCount": spec.zones}
    return config


def ebs_options(spec: SearchSpec) -> dict[str, Any]:
    return {"EBSEnabled": True, "VolumeType": VOLUME_TYPE, "VolumeSize": spec.volume_gb}


def encryption_at_rest(spec: SearchSpec) -> dict[str, Any]:
    options: dict[str, Any] = {"Enabled": True}
    if spec.kms_key:
        options["KmsKeyId"] = spec.kms_key
    return options


def endpoint_options() -> dict[str, Any]:
    return {"EnforceHTTPS": True, "TLSSecurityPolicy": TLS_POLICY}


# -- what OpenSearch has -----------------------------------------------------------------------


def _describe(stage: Stage, name: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        return stage.client("opensearch").describe_domain(DomainName=name)["DomainStatus"]
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise


def domain_status(domain: dict[str, Any]) -> str:
    """One word for the domain's flags: creating, processing, active or deleted."""
    if domain.get("Deleted"):
        return "deleted"
    if not domain.get("Created"):
        return "creating"
    if domain.get("Processing") or domain.get("UpgradeProcessing"):
        return "processing"
    return "active"


def _endpoint(domain: dict[str, Any]) -> str | None:
    return (domain.get("Endpoints") or {}).get("vpc") or domain.get("Endpoint")


def _policy(text: Any) -> Any:
    if not text:
        return None
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text  # not JSON: compares unequal to ours, so it gets replaced


def read_domain(stage: Stage, name: str) -> SearchState:
    domain = _describe(stage, name)
    if domain is None:
        return SearchState(False)
    state = SearchState(
        True,
        status=domain_status(domain),
        arn=domain.get("ARN", ""),
        engine_version=domain.get("EngineVersion", ""),
        cluster=domain.get("ClusterConfig") or {},
        ebs=domain.get("EBSOptions") or {},
        access_policy=_policy(domain.get("AccessPolicies")),
        endpoint_options=domain.get("DomainEndpointOptions") or {},
        node_to_node=bool((domain.get("NodeToNodeEncryptionOptions") or {}).get("Enabled")),
        at_rest=domain.get("EncryptionAtRestOptions") or {},
        vpc=domain.get("VPCOptions"),
        endpoint=_endpoint(domain),
    )
    if state.status not in READY:
        return state
    tags = stage.client("opensearch").list_tags(ARN=state.arn).get("TagList", [])
    return replace(state, tags={tag["Key"]: tag["Value"] for tag in tags})


def probe(stage: Stage, name: str) -> str:
    """The domain's status, "missing" when there is none: what a Wait polls."""
    domain = _describe(stage, name)
    return "missing" if domain is None else domain_status(domain)


def endpoint(stage: Stage) -> str | None:
    """The host name of the stage's domain (its VPC endpoint; HTTPS on 443), None if there is none."""
    domain = _describe(stage, stage.config.search.domain)
    return _endpoint(domain) if domain else None


@dataclass(frozen=True)
class Placement:
    """Where the domain may go: the data security group and the stage's subnets by zone."""

    security_group: str | Deferred
    subnet_zones: dict[str, str]

    def subnets(self, zones: int) -> list[str]:
        """One subnet in each of the first `zones` zones (the lowest subnet id of each), sorted."""
        first: dict[str, str] = {}
        for subnet, zone in sorted(self.subnet_zones.items()):
            first.setdefault(zone, subnet)
        chosen = [first[zone] for zone in sorted(first)][:zones]
        if len(chosen) < zones:
            raise AwsError(
                "TooFewZones",
                f"the stage's subnets span {len(chosen)} availability zone(s); the search domain "
                f"needs {zones} for {zones}-zone awareness",
                "List subnets in more zones in network.subnet_ids, or set search.instances to 1.",
            )
        return sorted(chosen)


def read_placement(stage: Stage, security_group: str) -> Placement:
    from deploy.areas.network import security_group_id, subnet_zones, vpc_id

    vpc = vpc_id(stage)
    group = security_group_id(stage, security_group, vpc=vpc)
    return Placement(group or network.group_id_when_created(security_group), subnet_zones(stage, vpc))


# -- planning ----------------------------------------------------------------------------------


def _engine(text: str) -> tuple[str, tuple[int, ...]]:
    family, _, number = text.partition("_")
    return family, tuple(int(part) for part in number.split(".") if part.isdigit())


def _encrypts_in_place(engine_version: str) -> bool:
    family, version = _engine(engine_version)
    return family == "OpenSearch" or version >= ENCRYPT_IN_PLACE_FROM


def wait_until_active(spec: SearchSpec, reason: str) -> Wait:
    return Wait(spec.name, reason, partial(probe, name=spec.name), READY, FAILED, spec.wait_seconds)


def create_steps(stage: Stage, spec: SearchSpec, placement: Placement) -> list[Step]:
    params = {
        "DomainName": spec.name,
        "EngineVersion": spec.engine_version,
        "ClusterConfig": cluster_config(spec),
        "EBSOptions": ebs_options(spec),
        "EncryptionAtRestOptions": encryption_at_rest(spec),
        "NodeToNodeEncryptionOptions": {"Enabled": True},
        "DomainEndpointOptions": endpoint_options(),
        "VPCOptions": {
            "SubnetIds": placement.subnets(spec.zones),
            "SecurityGroupIds": [placement.security_group],
        },
        "AccessPolicies": json.dumps(access_policy(stage, spec)),
        "TagList": stage.tag_list(spec.tags),
    }
    call = Call("opensearch", "CreateDomain", params, spec.name, "search domain does not exist")
    return [call, wait_until_active(spec, "new search domain")]


def _differs(want: dict[str, Any], have: dict[str, Any]) -> bool:
    """Whether `have` lacks any value `want` sets (AWS adds keys of its own: those are ignored)."""
    return any(have.get(key) != value for key, value in want.items())


def _vpc_matches(spec: SearchSpec, vpc: dict[str, Any], placement: Placement) -> bool:
    subnets = vpc.get("SubnetIds", [])
    zones = {placement.subnet_zones.get(subnet) for subnet in subnets}
    groups = set(vpc.get("SecurityGroupIds", []))
    return (
        None not in zones
        and len(zones) == len(subnets) == spec.zones
        and isinstance(placement.security_group, str)
        and groups == {placement.security_group}
    )


def _config_changes(
    stage: Stage, spec: SearchSpec, state: SearchState, placement: Placement
) -> tuple[dict[str, Any], list[str]]:
    from deploy.policies import normalised

    params: dict[str, Any] = {}
    reasons: list[str] = []
    if _differs(cluster_config(spec), state.cluster):
        params["ClusterConfig"] = cluster_config(spec)
        have = f"{state.cluster.get('InstanceCount')} x {state.cluster.get('InstanceType')}"
        reasons.append(f"cluster is {have}, zone awareness {state.cluster.get('ZoneAwarenessEnabled')}")
    if _differs(ebs_options(spec), state.ebs):
        params["EBSOptions"] = ebs_options(spec)
        reasons.append(f"storage is {state.ebs.get('VolumeSize')} GB {state.ebs.get('VolumeType')}")
    wanted_policy = access_policy(stage, spec)
    if not isinstance(state.access_policy, dict) or normalised(state.access_policy) != normalised(
        wanted_policy
    ):
        params["AccessPolicies"] = json.dumps(wanted_policy)
        reasons.append("access policy admits others than the search policy's roles")
    if _differs(endpoint_options(), state.endpoint_options):
        params["DomainEndpointOptions"] = endpoint_options()
        reasons.append(f"HTTPS not enforced with TLS 1.2 ({TLS_POLICY})")
    if state.vpc is not None and not _vpc_matches(spec, state.vpc, placement):
        params["VPCOptions"] = {
            "SubnetIds": placement.subnets(spec.zones),
            "SecurityGroupIds": [placement.security_group],
        }
        reasons.append("subnets or security groups differ from config")
    if _encrypts_in_place(state.engine_version):
        if not state.node_to_node:
            params["NodeToNodeEncryptionOptions"] = {"Enabled": True}
            reasons.append("node-to-node encryption is off")
        if not state.at_rest.get("Enabled"):
            params["EncryptionAtRestOptions"] = encryption_at_rest(spec)
            reasons.append("not encrypted at rest")
    return params, reasons


def _unfixable(spec: SearchSpec, state: SearchState, key_arn: str | None) -> list[str]:
    """Drift no call repairs without a new domain (or a risky upgrade): reported only."""
    problems = []
    if state.vpc is None:
        problems.append("recreate needed: public endpoint, not in the VPC")
    if not _encrypts_in_place(state.engine_version):
        if not state.at_rest.get("Enabled"):
            problems.append(f"recreate needed: not encrypted at rest ({state.engine_version})")
        if not state.node_to_node:
            problems.append(f"recreate needed: no node-to-node encryption ({state.engine_version})")
    key = state.at_rest.get("KmsKeyId")
    if spec.kms_key and state.at_rest.get("Enabled") and key not in (spec.kms_key, key_arn):
        problems.append(f"recreate needed: encrypted with {key or 'the AWS key'}, not {spec.kms_key}")
    have, want = _engine(state.engine_version), _engine(spec.engine_version)
    if have != want and (have[0] != want[0] or have[1] < want[1]):
        problems.append(f"engine {state.engine_version}, config says {spec.engine_version}: upgrade by hand")
    return problems


def plan_domain(
    stage: Stage,
    spec: SearchSpec,
    state: SearchState,
    placement: Placement,
    key_arn: str | None = None,
) -> Resource:
    """`key_arn` is the ARN of the configured KMS key, when the domain reports its key by ARN."""
    if not state.exists:
        return converge(AREA, KIND, spec.name, create_steps(stage, spec, placement), exists=False)
    detail = f"{state.endpoint}:{HTTPS_PORT}" if state.endpoint else state.status
    if state.status in BUSY:
        wait = wait_until_active(spec, f"{state.status}: wait until active")
        return converge(AREA, KIND, spec.name, [wait], exists=True, detail=state.status)
    if state.status not in READY:
        drift = (f"status {state.status}: nothing can be changed; see the OpenSearch console",)
        return Resource(AREA, KIND, spec.name, "drifted", (), drift, state.status)
    steps: list[Step] = []
    params, reasons = _config_changes(stage, spec, state, placement)
    if params:
        call = Call(
            "opensearch",
            "UpdateDomainConfig",
            {"DomainName": spec.name, **params},
            spec.name,
            "; ".join(reasons),
        )
        steps += [call, wait_until_active(spec, "applying the change")]
    drifted = {k: v for k, v in spec.tags.items() if state.tags.get(k) != v}
    if drifted:
        params = {"ARN": state.arn, "TagList": stage.tag_list(drifted)}
        steps.append(Call("opensearch", "AddTags", params, spec.name, tag_drift(state.tags, spec.tags)))
    resource = converge(AREA, KIND, spec.name, steps, exists=True, detail=detail)
    unfixable = _unfixable(spec, state, key_arn)
    if unfixable:
        resource = replace(resource, state="drifted", drift=resource.drift + tuple(unfixable))
    return resource


def plan(stage: Stage) -> list[Resource]:
    spec = domain_spec(stage)
    reads = [partial(read_domain, stage, spec.name), partial(read_placement, stage, spec.security_group)]
    state, placement = map_concurrently(lambda read: read(), reads)
    key_arn = None
    reported = state.at_rest.get("KmsKeyId")
    if spec.kms_key and reported and reported != spec.kms_key:
        key_arn = kms.key_arn(stage, spec.kms_key)
    return [plan_domain(stage, spec, state, placement, key_arn)]


# -- tasks -------------------------------------------------------------------------------------


create, status = area_tasks(AREA, "the OpenSearch domain", plan)
collection = Collection(AREA, create, status)
