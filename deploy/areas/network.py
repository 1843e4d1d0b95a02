"""Network: the application and data security groups in the VPC, and the RDS/Redshift/cache subnet groups."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.cli import area_tasks
from deploy.errors import AwsError, error_code
from deploy.parallel import map_concurrently
from deploy.plan import Call, Deferred, Resource, converge

if TYPE_CHECKING:
    from deploy.stage import Stage

AREA = "network"
# What other areas may call here (the tests hold them to it).
LOOKUPS = ("security_group_id", "group_id_when_created", "subnet_zones", "vpc_id")
AFTER: tuple[str, ...] = ()
# RDS refuses a DB subnet group that does not span two availability zones.
MIN_ZONES = 2
# The data stores' ports, each admitted from the application group only.
DATA_PORTS: tuple[tuple[str, int], ...] = (
    ("postgres", 5432),
    ("redis", 6379),
    ("redshift", 5439),
    ("search", 443),
)
SSH_PORT = 22
RULE_PREFIX = "iotile-deploy: "
# AWS accepts protocol numbers and names; rules come back named, except for the rarer protocols.
PROTOCOL_NAMES = {"6": "tcp", "17": "udp", "1": "icmp", "all": "-1"}
APP_DESCRIPTION = "IOTile Cloud application: Beanstalk and ECS instances, Lambdas in the VPC"
DATA_DESCRIPTION = "IOTile Cloud data stores: PostgreSQL, Redis, Redshift, search; open to the app group only"
SUBNET_GROUP_DESCRIPTION = "IOTile Cloud {what} subnets, managed by iotile-deploy"

# (kind, value): ("cidr", "10.1.0.0/16"), ("cidr6", "2001:db8::/32"), ("group", "sg-..."), ("prefix", ...).
# A group not created yet has value None, which matches no rule that exists.
Source = tuple[str, str | None]
# (protocol, from port, to port, source): how two ingress rules are compared.
RuleKey = tuple[str, int, int, Source]


# -- the VPC and its subnets -------------------------------------------------------------------


def vpc_id(stage: Stage) -> str:
    """The configured VPC (checked to exist), else the region's default VPC."""
    from botocore.exceptions import ClientError

    ec2 = stage.client("ec2")
    configured = stage.config.network.vpc_id
    if configured:
        try:
            ec2.describe_vpcs(VpcIds=[configured])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidVpcID.NotFound":
                raise AwsError(
                    "InvalidVpcID.NotFound",
                    f"VPC {configured} (network.vpc_id) does not exist in {stage.region}",
                    "Set network.vpc_id to a VPC of this account and region, or drop it for the default VPC.",
                ) from None
            raise
        return configured
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}]).get("Vpcs", [])
    if not vpcs:
        raise AwsError(
            "NoDefaultVpc",
            f"{stage.region} has no default VPC",
            f"Set network.vpc_id in config/{stage.name}.yaml to the VPC to deploy into.",
        )
    return vpcs[0]["VpcId"]


def subnet_zones(stage: Stage, vpc: str) -> dict[str, str]:
    """Subnet id -> availability zone: the configured subnets (all in `vpc`), else every subnet of it."""
    ec2 = stage.client("ec2")
    configured = stage.config.network.subnet_ids
    query: dict[str, Any] = (
        {"SubnetIds": list(configured)} if configured else {"Filters": [{"Name": "vpc-id", "Values": [vpc]}]}
    )
    subnets = [
        subnet
        for page in ec2.get_paginator("describe_subnets").paginate(**query)
        for subnet in page.get("Subnets", [])
    ]
    strays = sorted(s["SubnetId"] for s in subnets if s["VpcId"] != vpc)
    if strays:
        raise AwsError(
            "SubnetNotInVpc",
            f"subnets {', '.join(strays)} (network.subnet_ids) are not in VPC {vpc}",
            "List only subnets of network.vpc_id (or the default VPC) in network.subnet_ids.",
        )
    return {subnet["SubnetId"]: subnet["AvailabilityZone"] for subnet in subnets}


def subnet_ids(stage: Stage) -> list[str]:
    """The subnets the stage's data stores and instances go in, sorted."""
    return sorted(subnet_zones(stage, vpc_id(stage)))


def require_zones(vpc: str, zones: dict[str, str]) -> None:
    spanned = sorted(set(zones.values()))
    if len(spanned) < MIN_ZONES:
        where = ", ".join(spanned) or "none"
        raise AwsError(
            "TooFewZones",
            f"the {len(zones)} subnet(s) chosen in {vpc} span {len(spanned)} availability zone(s) "
            f"({where}); RDS needs at least {MIN_ZONES}",
            "List subnets in two or more zones in network.subnet_ids, or add a subnet in another "
            "zone to the VPC.",
        )


# -- security groups ---------------------------------------------------------------------------


def _find_group(stage: Stage, vpc: str, name: str) -> dict[str, Any] | None:
    filters = [{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc]}]
    groups = stage.client("ec2").describe_security_groups(Filters=filters).get("SecurityGroups", [])
    return groups[0] if groups else None


def security_group_id(stage: Stage, name: str, *, vpc: str | None = None) -> str | None:
    """The id of the security group called `name` in the stage's VPC, or None when there is none."""
    group = _find_group(stage, vpc or vpc_id(stage), name)
    return group["GroupId"] if group else None


def group_id_when_created(name: str) -> Deferred:
    """The id of a security group that an earlier step or wave makes, read when a call needs it."""

    def resolve(stage: Stage) -> str:
        found = security_group_id(stage, name)
        if found is None:
            raise AwsError(
                "InvalidGroup.NotFound",
                f"security group {name} does not exist",
                f"Run `inv network.create --stage {stage.name}` (or `inv up`): it picks up from what exists.",
            )
        return found

    return Deferred(f"id of security group {name}", resolve)


@dataclass(frozen=True)
class Ingress:
    """One ingress rule the config wants: a TCP port from one CIDR or one security group."""

    port: int
    source_kind: str  # "cidr", "cidr6" or "group"
    source: str | Deferred
    description: str

    @property
    def key(self) -> RuleKey:
        value = self.source if isinstance(self.source, str) else None
        return ("tcp", self.port, self.port, (self.source_kind, value))

    def permission(self) -> dict[str, Any]:
        entry = {"Description": self.description}
        permission: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": self.port, "ToPort": self.port}
        if self.source_kind == "group":
            permission["UserIdGroupPairs"] = [{"GroupId": self.source, **entry}]
        elif self.source_kind == "cidr6":
            permission["Ipv6Ranges"] = [{"CidrIpv6": self.source, **entry}]
        else:
            permission["IpRanges"] = [{"CidrIp": self.source, **entry}]
        return permission

    def shown(self) -> str:
        return f"tcp {self.port} from {self.source}"


@dataclass(frozen=True)
class IngressRule:
    """One ingress rule as AWS has it."""

    rule_id: str
    key: RuleKey

    def shown(self) -> str:
        protocol, low, high, (_, value) = self.key
        ports = "all ports" if protocol == "-1" else str(low) if low == high else f"{low}-{high}"
        return f"{'all' if protocol == '-1' else protocol} {ports} from {value}"


@dataclass(frozen=True)
class GroupSpec:
    name: str
    description: str
    tags: dict[str, str]
    ingress: tuple[Ingress, ...]
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupState:
    group_id: str | None
    ingress: tuple[IngressRule, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)


def _cidr(text: str) -> str:
    return str(ipaddress.ip_network(text, strict=False))


def rule_key(rule: dict[str, Any]) -> RuleKey:
    """Normalise a DescribeSecurityGroupRules entry, so a rule compares equal to the one we asked for."""
    protocol = str(rule.get("IpProtocol", "-1")).lower()
    protocol = PROTOCOL_NAMES.get(protocol, protocol)
    low, high = int(rule.get("FromPort", -1)), int(rule.get("ToPort", -1))
    source: Source
    if rule.get("CidrIpv4"):
        source = ("cidr", _cidr(rule["CidrIpv4"]))
    elif rule.get("CidrIpv6"):
        source = ("cidr6", _cidr(rule["CidrIpv6"]))
    elif rule.get("ReferencedGroupInfo", {}).get("GroupId"):
        source = ("group", rule["ReferencedGroupInfo"]["GroupId"])
    elif rule.get("PrefixListId"):
        source = ("prefix", rule["PrefixListId"])
    else:
        source = ("unknown", rule.get("SecurityGroupRuleId"))
    return (protocol, low, high, source)


def read_group(stage: Stage, vpc: str, name: str) -> GroupState:
    group = _find_group(stage, vpc, name)
    if group is None:
        return GroupState(None)
    ec2 = stage.client("ec2")
    filters = [{"Name": "group-id", "Values": [group["GroupId"]]}]
    rules = [
        IngressRule(rule["SecurityGroupRuleId"], rule_key(rule))
        for page in ec2.get_paginator("describe_security_group_rules").paginate(Filters=filters)
        for rule in page.get("SecurityGroupRules", [])
        if not rule.get("IsEgress")
    ]
    tags = {tag["Key"]: tag["Value"] for tag in group.get("Tags", [])}
    return GroupState(group["GroupId"], tuple(rules), tags)


def ssh_ingress(cidr: str) -> Ingress:
    network = ipaddress.ip_network(cidr, strict=False)
    kind = "cidr" if network.version == 4 else "cidr6"
    return Ingress(SSH_PORT, kind, str(network), f"{RULE_PREFIX}ssh from {network}")


def group_specs(stage: Stage, app_group: str | Deferred) -> list[GroupSpec]:
    """The application group (SSH only from configured CIDRs) and the data group (each data port
    from the application group, nothing from any CIDR). `app_group` is its id, or a Deferred one."""
    net = stage.config.network
    app, data = net.app_security_group, net.data_security_group
    return [
        GroupSpec(
            app,
            APP_DESCRIPTION,
            {**stage.tags(app), "Name": app},
            tuple(ssh_ingress(cidr) for cidr in net.ssh_cidrs),
        ),
        GroupSpec(
            data,
            DATA_DESCRIPTION,
            {**stage.tags(data), "Name": data},
            tuple(
                Ingress(port, "group", app_group, f"{RULE_PREFIX}{label} from app")
                for label, port in DATA_PORTS
            ),
            depends_on=(app,),
        ),
    ]


def _ingress_steps(spec: GroupSpec, state: GroupState, group: str | Deferred) -> list[Call]:
    wanted = {ingress.key for ingress in spec.ingress}
    present = {rule.key for rule in state.ingress}
    extra = [rule for rule in state.ingress if rule.key not in wanted]
    missing = [ingress for ingress in spec.ingress if ingress.key not in present]
    steps: list[Call] = []
    if extra and state.group_id:
        steps.append(
            Call(
                "ec2",
                "RevokeSecurityGroupIngress",
                {"GroupId": state.group_id, "SecurityGroupRuleIds": [rule.rule_id for rule in extra]},
                spec.name,
                f"ingress not in config: {'; '.join(rule.shown() for rule in extra)}",
            )
        )
    if missing:
        reason = "ingress to add" if state.group_id is None else "ingress missing"
        steps.append(
            Call(
                "ec2",
                "AuthorizeSecurityGroupIngress",
                {"GroupId": group, "IpPermissions": [ingress.permission() for ingress in missing]},
                spec.name,
                f"{reason}: {'; '.join(ingress.shown() for ingress in missing)}",
            )
        )
    return steps


def plan_group(stage: Stage, vpc: str, spec: GroupSpec, state: GroupState) -> Resource:
    steps: list[Call] = []
    if state.group_id is None:
        params = {
            "GroupName": spec.name,
            "Description": spec.description,
            "VpcId": vpc,
            "TagSpecifications": [{"ResourceType": "security-group", "Tags": stage.tag_list(spec.tags)}],
        }
        steps.append(Call("ec2", "CreateSecurityGroup", params, spec.name, "security group does not exist"))
    else:
        drifted = {k: v for k, v in spec.tags.items() if state.tags.get(k) != v}
        if drifted:
            params = {"Resources": [state.group_id], "Tags": stage.tag_list(drifted)}
            steps.append(Call("ec2", "CreateTags", params, spec.name, "tags differ from config"))
    group = state.group_id or group_id_when_created(spec.name)
    steps.extend(_ingress_steps(spec, state, group))
    return converge(
        AREA,
        "security group",
        spec.name,
        steps,
        exists=state.group_id is not None,
        detail=f"{state.group_id} in {vpc}" if state.group_id else vpc,
        depends_on=spec.depends_on,
    )


# -- subnet groups -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SubnetGroupApi:
    """How one service names the same idea: a group of subnets its instances may use."""

    service: str
    kind: str
    name_param: str
    description_param: str
    create: str
    modify: str
    add_tags: str  # takes ResourceName (the group's ARN) and Tags in every one of the three
    read: Callable[[Stage, str], SubnetGroupState]


@dataclass(frozen=True)
class SubnetGroupSpec:
    api: SubnetGroupApi
    name: str
    subnet_ids: tuple[str, ...]
    tags: dict[str, str]


@dataclass(frozen=True)
class SubnetGroupState:
    exists: bool
    arn: str = ""
    vpc_id: str = ""
    subnet_ids: frozenset[str] = frozenset()
    tags: dict[str, str] = field(default_factory=dict)


def _subnets_of(group: dict[str, Any]) -> frozenset[str]:
    return frozenset(subnet["SubnetIdentifier"] for subnet in group.get("Subnets", []))


def _tag_dict(tags: list[dict[str, str]]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in tags}


def read_db_subnet_group(stage: Stage, name: str) -> SubnetGroupState:
    from botocore.exceptions import ClientError

    rds = stage.client("rds")
    try:
        group = rds.describe_db_subnet_groups(DBSubnetGroupName=name)["DBSubnetGroups"][0]
    except ClientError as exc:
        if error_code(exc) == "DBSubnetGroupNotFoundFault":
            return SubnetGroupState(False)
        raise
    arn = group["DBSubnetGroupArn"]
    tags = rds.list_tags_for_resource(ResourceName=arn).get("TagList", [])
    return SubnetGroupState(True, arn, group.get("VpcId", ""), _subnets_of(group), _tag_dict(tags))


def read_cluster_subnet_group(stage: Stage, name: str) -> SubnetGroupState:
    from botocore.exceptions import ClientError

    redshift = stage.client("redshift")
    try:
        response = redshift.describe_cluster_subnet_groups(ClusterSubnetGroupName=name)
    except ClientError as exc:
        if error_code(exc) == "ClusterSubnetGroupNotFoundFault":
            return SubnetGroupState(False)
        raise
    group = response["ClusterSubnetGroups"][0]
    # Redshift returns no ARN for a subnet group; this is its documented form.
    arn = stage.arn("redshift", f"subnetgroup:{group['ClusterSubnetGroupName']}")
    tags = _tag_dict(group.get("Tags", []))
    return SubnetGroupState(True, arn, group.get("VpcId", ""), _subnets_of(group), tags)


def read_cache_subnet_group(stage: Stage, name: str) -> SubnetGroupState:
    from botocore.exceptions import ClientError

    elasticache = stage.client("elasticache")
    try:
        response = elasticache.describe_cache_subnet_groups(CacheSubnetGroupName=name)
    except ClientError as exc:
        if error_code(exc) == "CacheSubnetGroupNotFoundFault":
            return SubnetGroupState(False)
        raise
    group = response["CacheSubnetGroups"][0]
    arn = group["ARN"]
    tags = elasticache.list_tags_for_resource(ResourceName=arn).get("TagList", [])
    return SubnetGroupState(True, arn, group.get("VpcId", ""), _subnets_of(group), _tag_dict(tags))


DB_SUBNET_GROUP = SubnetGroupApi(
    "rds",
    "DB subnet group",
    "DBSubnetGroupName",
    "DBSubnetGroupDescription",
    "CreateDBSubnetGroup",
    "ModifyDBSubnetGroup",
    "AddTagsToResource",
    read_db_subnet_group,
)
REDSHIFT_SUBNET_GROUP = SubnetGroupApi(
    "redshift",
    "Redshift subnet group",
    "ClusterSubnetGroupName",
    "Description",
    "CreateClusterSubnetGroup",
    "ModifyClusterSubnetGroup",
    "CreateTags",
    read_cluster_subnet_group,
)
CACHE_SUBNET_GROUP = SubnetGroupApi(
    "elasticache",
    "cache subnet group",
    "CacheSubnetGroupName",
    "CacheSubnetGroupDescription",
    "CreateCacheSubnetGroup",
    "ModifyCacheSubnetGroup",
    "AddTagsToResource",
    read_cache_subnet_group,
)


def subnet_group_specs(stage: Stage, subnets: list[str]) -> list[SubnetGroupSpec]:
    net = stage.config.network
    return [
        SubnetGroupSpec(api, name, tuple(sorted(subnets)), stage.tags(name))
        for api, name in (
            (DB_SUBNET_GROUP, net.db_subnet_group),
            (REDSHIFT_SUBNET_GROUP, net.redshift_subnet_group),
            (CACHE_SUBNET_GROUP, net.cache_subnet_group),
        )
    ]


def plan_subnet_group(stage: Stage, spec: SubnetGroupSpec, state: SubnetGroupState) -> Resource:
    api = spec.api
    steps: list[Call] = []
    if not state.exists:
        params = {
            api.name_param: spec.name,
            api.description_param: SUBNET_GROUP_DESCRIPTION.format(
                what=api.kind.removesuffix(" subnet group")
            ),
            "SubnetIds": list(spec.subnet_ids),
            "Tags": stage.tag_list(spec.tags),
        }
        steps.append(Call(api.service, api.create, params, spec.name, f"{api.kind} does not exist"))
    else:
        added = sorted(set(spec.subnet_ids) - state.subnet_ids)
        removed = sorted(state.subnet_ids - set(spec.subnet_ids))
        if added or removed:
            change = [*(f"+{s}" for s in added), *(f"-{s}" for s in removed)]
            params = {api.name_param: spec.name, "SubnetIds": list(spec.subnet_ids)}
            reason = f"subnets differ from config: {' '.join(change)}"
            steps.append(Call(api.service, api.modify, params, spec.name, reason))
        drifted = {k: v for k, v in spec.tags.items() if state.tags.get(k) != v}
        if drifted:
            params = {"ResourceName": state.arn, "Tags": stage.tag_list(drifted)}
            steps.append(Call(api.service, api.add_tags, params, spec.name, "tags differ from config"))
    return converge(
        AREA,
        api.kind,
        spec.name,
        steps,
        exists=state.exists,
        detail=f"{state.vpc_id}, {len(state.subnet_ids)} subnets" if state.exists else "",
    )


# -- the area ----------------------------------------------------------------------------------


# -- S3 gateway endpoint -------------------------------------------------------------------------
# The data stores have no public address and Redshift routes COPY through the VPC (enhanced VPC
# routing), so S3 must be reachable from inside the VPC: a gateway endpoint on every route table.
S3_ENDPOINT_NAME = "iotile-cloud-s3-gateway"


@dataclass(frozen=True)
class EndpointState:
    endpoint_id: str | None
    route_tables: frozenset[str] = frozenset()


def s3_service(stage: Stage) -> str:
    return f"com.amazonaws.{stage.region}.s3"


def route_table_ids(stage: Stage, vpc: str) -> frozenset[str]:
    tables = stage.client("ec2").describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])
    return frozenset(table["RouteTableId"] for table in tables["RouteTables"])


def read_s3_endpoint(stage: Stage, vpc: str) -> EndpointState:
    found = stage.client("ec2").describe_vpc_endpoints(
        Filters=[{"Name": "vpc-endpoint-type", "Values": ["Gateway"]}]
    )["VpcEndpoints"]
    for endpoint in found:
        live = str(endpoint.get("State", "")).lower() not in ("deleting", "deleted", "failed")
        if endpoint["VpcId"] == vpc and endpoint["ServiceName"] == s3_service(stage) and live:
            return EndpointState(endpoint["VpcEndpointId"], frozenset(endpoint.get("RouteTableIds", [])))
    return EndpointState(None)


def plan_s3_endpoint(stage: Stage, vpc: str, tables: frozenset[str], state: EndpointState) -> Resource:
    """Shared by every stage in the VPC: found by VPC and service, never by stage."""
    resource, steps = f"s3-endpoint/{vpc}", []
    if state.endpoint_id is None:
        tags = [
            {
                "ResourceType": "vpc-endpoint",
                "Tags": stage.tag_list({**stage.tags(S3_ENDPOINT_NAME), "Name": S3_ENDPOINT_NAME}),
            }
        ]
        params = {
            "VpcEndpointType": "Gateway",
            "VpcId": vpc,
            "ServiceName": s3_service(stage),
            "RouteTableIds": sorted(tables),
            "TagSpecifications": tags,
        }
        steps.append(Call("ec2", "CreateVpcEndpoint", params, resource, "no S3 gateway endpoint in the VPC"))
    elif tables - state.route_tables:
        missing = sorted(tables - state.route_tables)
        params = {"VpcEndpointId": state.endpoint_id, "AddRouteTableIds": missing}
        reason = f"route tables without the S3 route: {', '.join(missing)}"
        steps.append(Call("ec2", "ModifyVpcEndpoint", params, resource, reason))
    detail = f"{state.endpoint_id or 'S3 gateway'} in {vpc}"
    return converge(AREA, "S3 endpoint", resource, steps, exists=state.endpoint_id is not None, detail=detail)


def plan(stage: Stage) -> list[Resource]:
    vpc = vpc_id(stage)
    zones = subnet_zones(stage, vpc)
    require_zones(vpc, zones)
    net = stage.config.network
    subnet_specs = subnet_group_specs(stage, list(zones))
    reads: list[Callable[[], Any]] = [
        partial(read_group, stage, vpc, net.app_security_group),
        partial(read_group, stage, vpc, net.data_security_group),
        partial(route_table_ids, stage, vpc),
        partial(read_s3_endpoint, stage, vpc),
        *(partial(spec.api.read, stage, spec.name) for spec in subnet_specs),
    ]
    app_state, data_state, tables, endpoint, *subnet_states = map_concurrently(lambda read: read(), reads)
    app_group = app_state.group_id or group_id_when_created(net.app_security_group)
    app_spec, data_spec = group_specs(stage, app_group)
    return [
        plan_group(stage, vpc, app_spec, app_state),
        plan_group(stage, vpc, data_spec, data_state),
        *(
            plan_subnet_group(stage, spec, state)
            for spec, state in zip(subnet_specs, subnet_states, strict=True)
        ),
        plan_s3_endpoint(stage, vpc, tables, endpoint),
    ]


create, status = area_tasks(AREA, "the security groups, subnet groups and the S3 endpoint", plan)
collection = Collection(AREA, create, status)
