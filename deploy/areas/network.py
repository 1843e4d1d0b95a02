"""Network: the stage's VPC (its own, or a named one with private subnets), the application and data
security groups with exact ingress and egress, the data stores' subnet groups and the VPC endpoints."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.cli import area_tasks
from deploy.errors import AwsError, error_code
from deploy.parallel import call_concurrently
from deploy.plan import Call, Deferred, Resource, Step, Wait, converge, tag_drift
from deploy.policies import canonical, partition

if TYPE_CHECKING:
    from deploy.stage import Stage

AREA = "network"
# What other areas may call here (the tests hold them to it).
LOOKUPS = (
    "security_group_id",
    "group_id_when_created",
    "subnet_zones",
    "vpc_id",
    "public_subnet_ids",
)
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
REDSHIFT_PORT = dict(DATA_PORTS)["redshift"]
HTTPS_PORT = 443
HTTP_PORT = 80
ANYWHERE = "0.0.0.0/0"
RULE_PREFIX = "iotile-deploy: "
# AWS accepts protocol numbers and names; rules come back named, except for the rarer protocols.
PROTOCOL_NAMES = {"6": "tcp", "17": "udp", "1": "icmp", "all": "-1"}
APP_DESCRIPTION = "IOTile Cloud application: Beanstalk and ECS instances, Lambdas in the VPC"
DATA_DESCRIPTION = "IOTile Cloud data stores: PostgreSQL, Redis, Redshift, search; open to the app group only"
SUBNET_GROUP_DESCRIPTION = "IOTile Cloud {what} subnets, managed by iotile-deploy"
# What a new security group allows out until told otherwise: everything, everywhere.
DEFAULT_EGRESS = {"IpProtocol": "-1", "IpRanges": [{"CidrIp": ANYWHERE}]}
# A NAT gateway in these states is gone or going: a new one takes its place.
NAT_GONE = frozenset({"failed", "deleting", "deleted"})
ENDPOINT_GONE = frozenset({"deleting", "deleted", "failed", "rejected", "expired"})
# How a route names where it leads from (DeleteRoute takes the same key).
ROUTE_DESTINATIONS = ("DestinationCidrBlock", "DestinationIpv6CidrBlock", "DestinationPrefixListId")
# Services reached through a gateway endpoint (a route) rather than an interface endpoint (an ENI).
GATEWAY_SERVICES = frozenset({"s3", "dynamodb"})

# (kind, value): ("cidr", "10.1.0.0/16"), ("cidr6", "2001:db8::/32"), ("group", "sg-..."), ("prefix", ...).
# A group not created yet has value None, which matches no rule that exists.
Peer = tuple[str, str | None]
# (protocol, from port, to port, peer): how two rules are compared.
RuleKey = tuple[str, int, int, Peer]
Ref = str | Deferred


# -- finding what this area made, by its Name tag ----------------------------------------------

# kind -> (describe method, response key, id key); NAT gateways filter with `Filter`, not `Filters`.
FINDERS: dict[str, tuple[str, str, str]] = {
    "VPC": ("describe_vpcs", "Vpcs", "VpcId"),
    "internet gateway": ("describe_internet_gateways", "InternetGateways", "InternetGatewayId"),
    "subnet": ("describe_subnets", "Subnets", "SubnetId"),
    "route table": ("describe_route_tables", "RouteTables", "RouteTableId"),
    "NAT gateway": ("describe_nat_gateways", "NatGateways", "NatGatewayId"),
    "Elastic IP": ("describe_addresses", "Addresses", "AllocationId"),
}
# Kinds that live inside one VPC: looked up there, so a same-named one elsewhere is never taken.
IN_VPC = frozenset({"subnet", "route table", "NAT gateway"})


def _name_of(item: dict[str, Any]) -> str | None:
    return next((tag["Value"] for tag in item.get("Tags", []) if tag["Key"] == "Name"), None)


def _live(kind: str, item: dict[str, Any]) -> bool:
    return kind != "NAT gateway" or item.get("State") not in NAT_GONE


def _describe(stage: Stage, kind: str, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The live parts of `kind` the filters match, read once per run until something changes
    (the data stores, the app and the functions look up the same VPC, subnets and groups)."""
    method, key, _ = FINDERS[kind]
    param = "Filter" if kind == "NAT gateway" else "Filters"

    def read() -> list[dict[str, Any]]:
        found = getattr(stage.client("ec2"), method)(**{param: filters}).get(key, [])
        return [item for item in found if _live(kind, item)]

    return stage.remember(("ec2", method, json.dumps(filters, sort_keys=True)), read)


def _named(items: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Items by Name tag; of two with one name, the newest where AWS says (NAT gateways), else
    the last listed."""
    ordered = sorted(items, key=lambda item: str(item.get("CreateTime", "")))
    return {name: item for item in ordered if (name := _name_of(item))}


def _find(stage: Stage, kind: str, name: str, vpc: str | None = None) -> dict[str, Any] | None:
    filters = [{"Name": "tag:Name", "Values": [name]}]
    if vpc:
        filters.append({"Name": "vpc-id", "Values": [vpc]})
    return _named(_describe(stage, kind, filters)).get(name)


@dataclass(frozen=True, order=True)
class IdWhenCreated(Deferred):
    """The id of a part of the stage's VPC that an earlier step makes; sortable by what it names,
    so that other areas can pick subnets from a plan made before the VPC exists."""


def id_when_created(kind: str, name: str, vpc_name: str) -> IdWhenCreated:
    def resolve(stage: Stage) -> str:
        vpc = None if kind not in IN_VPC else _find(stage, "VPC", vpc_name)
        found = _find(stage, kind, name, vpc["VpcId"] if vpc else None)
        if found is None:
            raise AwsError(
                "NotFound",
                f"{kind} {name} does not exist",
                f"Run `inv network.create --stage {stage.name}` (or `inv up`): it picks up from what exists.",
            )
        return str(found[FINDERS[kind][2]])

    return IdWhenCreated(f"id of {kind} {name}", resolve)


def ids_when_created(kind: str, names: Sequence[str], vpc_name: str) -> Deferred:
    """The ids of several parts, as one list, in the order of `names`."""
    each = [id_when_created(kind, name, vpc_name) for name in names]
    return Deferred(f"ids of {kind}s {', '.join(names)}", lambda stage: [d.resolve(stage) for d in each])


def _tag_dict(tags: list[dict[str, str]]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in tags}


def _tag_spec(stage: Stage, resource_type: str, tags: dict[str, str]) -> list[dict[str, Any]]:
    return [{"ResourceType": resource_type, "Tags": stage.tag_list(tags)}]


def _retag(
    stage: Stage, resource_id: str, wanted: dict[str, str], current: dict[str, Any], name: str
) -> list[Call]:
    drifted = {k: v for k, v in wanted.items() if _tag_dict(current.get("Tags", [])).get(k) != v}
    if not drifted:
        return []
    params = {"Resources": [resource_id], "Tags": stage.tag_list(drifted)}
    return [Call("ec2", "CreateTags", params, name, tag_drift(_tag_dict(current.get("Tags", [])), wanted))]


# -- the stage's own VPC: its layout ------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """The stage's own VPC as config wants it: every part named after the VPC, two subnets a zone
    (private for instances and data stores, public for the load balancers only)."""

    name: str
    cidr: str
    zones: tuple[str, ...]
    nat: str  # per_zone, shared or none
    tags: dict[str, str]  # the stage's tags; each part adds its Name

    @property
    def igw(self) -> str:
        return igw_name(self.name)

    @property
    def public_routes(self) -> str:
        return f"{self.name}-public-routes"

    @property
    def s3_endpoint(self) -> str:
        return f"{self.name}-s3"

    def subnet(self, tier: str, zone: str) -> str:
        return f"{self.name}-{tier}-{zone}"

    def private_routes(self, zone: str) -> str:
        return f"{self.name}-private-{zone}-routes"

    def nat_gateway(self, zone: str) -> str:
        return f"{self.name}-nat-{zone}"

    def subnet_cidr(self, tier: str, zone: str) -> str:
        """Sixteen equal blocks: private subnets from the first, public ones from the ninth."""
        blocks = list(ipaddress.ip_network(self.cidr).subnets(prefixlen_diff=4))
        return str(blocks[self.zones.index(zone) + (0 if tier == "private" else 8)])

    @property
    def nat_zones(self) -> tuple[str, ...]:
        return {"per_zone": self.zones, "shared": self.zones[:1]}.get(self.nat, ())

    def nat_for(self, zone: str) -> str | None:
        """The zone whose NAT gateway the zone's private subnet goes out through, if any."""
        return {"per_zone": zone, "shared": self.zones[0]}.get(self.nat)

    def named(self, name: str) -> dict[str, str]:
        return {**self.tags, "Name": name}

    @property
    def private_subnets(self) -> list[str]:
        return [self.subnet("private", zone) for zone in self.zones]

    @property
    def private_tables(self) -> list[str]:
        return [self.private_routes(zone) for zone in self.zones]


def igw_name(vpc_name: str) -> str:
    return f"{vpc_name}-igw"


def availability_zones(stage: Stage, count: int) -> tuple[str, ...]:
    """The first `count` zones of the region by name: the same ones on every run."""
    filters = [
        {"Name": "state", "Values": ["available"]},
        {"Name": "zone-type", "Values": ["availability-zone"]},
    ]
    found = stage.remember(
        ("ec2", "zones"),
        lambda: stage.client("ec2").describe_availability_zones(Filters=filters)["AvailabilityZones"],
    )
    zones = sorted(zone["ZoneName"] for zone in found)
    if len(zones) < count:
        raise AwsError(
            "TooFewZones",
            f"{stage.region} offers {len(zones)} availability zone(s), network.zones asks for {count}",
            f"Set network.zones to {len(zones)} or fewer (RDS needs at least {MIN_ZONES}).",
        )
    return tuple(zones[:count])


def vpc_layout(stage: Stage) -> Layout:
    net = stage.config.network
    zones = availability_zones(stage, net.zones)
    return Layout(net.vpc_name, net.cidr, zones, net.nat, stage.tags(net.vpc_name))


# -- the stage's own VPC: what exists ------------------------------------------------------------


@dataclass(frozen=True)
class VpcState:
    vpc: dict[str, Any] | None
    dns: dict[str, bool] = field(default_factory=dict)
    igw: dict[str, Any] | None = None
    subnets: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    all_tables: tuple[dict[str, Any], ...] = ()
    nats: dict[str, dict[str, Any]] = field(default_factory=dict)
    addresses: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def vpc_id(self) -> str | None:
        return self.vpc["VpcId"] if self.vpc else None

    def id_of(self, kind: str, name: str) -> str | None:
        found = {
            "subnet": self.subnets,
            "route table": self.tables,
            "NAT gateway": self.nats,
            "Elastic IP": self.addresses,
        }[kind].get(name)
        return str(found[FINDERS[kind][2]]) if found else None


def _vpc_attribute(stage: Stage, vpc: str, attribute: str) -> bool:
    answer = stage.client("ec2").describe_vpc_attribute(VpcId=vpc, Attribute=attribute)
    key = attribute[0].upper() + attribute[1:]
    return bool(answer[key]["Value"])


def read_vpc_parts(
    stage: Stage, layout: Layout, vpc: dict[str, Any] | None, igw: dict[str, Any] | None
) -> VpcState:
    """The VPC found by name (None: not made yet) with its parts, read side by side."""
    if vpc is None:
        return VpcState(None, igw=igw)
    in_vpc = [{"Name": "vpc-id", "Values": [vpc["VpcId"]]}]
    nat_names = [layout.nat_gateway(zone) for zone in layout.zones]
    support, hostnames, subnets, tables, nats, addresses = call_concurrently(
        partial(_vpc_attribute, stage, vpc["VpcId"], "enableDnsSupport"),
        partial(_vpc_attribute, stage, vpc["VpcId"], "enableDnsHostnames"),
        partial(_describe, stage, "subnet", in_vpc),
        partial(_describe, stage, "route table", in_vpc),
        partial(_describe, stage, "NAT gateway", in_vpc),
        partial(_describe, stage, "Elastic IP", [{"Name": "tag:Name", "Values": nat_names}]),
    )
    return VpcState(
        vpc,
        {"EnableDnsSupport": support, "EnableDnsHostnames": hostnames},
        igw,
        _named(subnets),
        _named(tables),
        tuple(tables),
        _named(nats),
        _named(addresses),
    )


# -- the stage's own VPC: plans for its parts ----------------------------------------------------


def plan_vpc(stage: Stage, layout: Layout, state: VpcState) -> Resource:
    name, steps = layout.name, []
    if state.vpc is None:
        params = {"CidrBlock": layout.cidr, "TagSpecifications": _tag_spec(stage, "vpc", layout.named(name))}
        steps.append(Call("ec2", "CreateVpc", params, name, "VPC does not exist"))
    elif state.vpc["CidrBlock"] != layout.cidr:
        raise AwsError(
            "VpcCidrMismatch",
            f"VPC {name} ({state.vpc['VpcId']}) has CIDR {state.vpc['CidrBlock']}, "
            f"network.cidr says {layout.cidr}",
            f"Set network.cidr back to {state.vpc['CidrBlock']}: a VPC's range cannot change.",
        )
    else:
        steps.extend(_retag(stage, state.vpc["VpcId"], layout.named(name), state.vpc, name))
    vpc = state.vpc_id or id_when_created("VPC", name, name)
    # Interface endpoints' private DNS names, and the data stores' endpoints, need both on; a new
    # VPC has DNS support but no DNS host names.
    for attribute in ("EnableDnsSupport", "EnableDnsHostnames"):
        if not state.dns.get(attribute, attribute == "EnableDnsSupport"):
            params = {"VpcId": vpc, attribute: {"Value": True}}
            steps.append(Call("ec2", "ModifyVpcAttribute", params, name, f"{attribute} is off"))
    detail = f"{state.vpc_id} {layout.cidr}" if state.vpc_id else layout.cidr
    return converge(AREA, "VPC", name, steps, exists=state.vpc is not None, detail=detail)


def plan_internet_gateway(stage: Stage, layout: Layout, state: VpcState) -> Resource:
    """The public subnets' way out, for the load balancers (and the NAT gateways)."""
    name, steps, igw = layout.igw, [], state.igw
    if igw is None:
        params = {"TagSpecifications": _tag_spec(stage, "internet-gateway", layout.named(name))}
        steps.append(Call("ec2", "CreateInternetGateway", params, name, "internet gateway does not exist"))
    else:
        steps.extend(_retag(stage, igw["InternetGatewayId"], layout.named(name), igw, name))
    attached = {a.get("VpcId") for a in (igw or {}).get("Attachments", [])}
    if state.vpc_id not in attached or state.vpc_id is None:
        params = {
            "InternetGatewayId": igw["InternetGatewayId"]
            if igw
            else id_when_created("internet gateway", name, layout.name),
            "VpcId": state.vpc_id or id_when_created("VPC", layout.name, layout.name),
        }
        steps.append(Call("ec2", "AttachInternetGateway", params, name, "not attached to the VPC"))
    detail = igw["InternetGatewayId"] if igw else ""
    return converge(
        AREA,
        "internet gateway",
        name,
        steps,
        exists=igw is not None,
        detail=detail,
        depends_on=(layout.name,),
    )


def plan_subnet(stage: Stage, layout: Layout, state: VpcState, tier: str, zone: str) -> Resource:
    name, steps = layout.subnet(tier, zone), []
    tags = {**layout.named(name), "Tier": tier}
    found = state.subnets.get(name)
    cidr = layout.subnet_cidr(tier, zone)
    if found is None:
        params = {
            "VpcId": state.vpc_id or id_when_created("VPC", layout.name, layout.name),
            "CidrBlock": cidr,
            "AvailabilityZone": zone,
            "TagSpecifications": _tag_spec(stage, "subnet", tags),
        }
        steps.append(Call("ec2", "CreateSubnet", params, name, f"{tier} subnet does not exist"))
    else:
        steps.extend(_retag(stage, found["SubnetId"], tags, found, name))
    detail = f"{found['SubnetId']} {found['CidrBlock']} {zone}" if found else f"{cidr} {zone}"
    return converge(
        AREA,
        f"{tier} subnet",
        name,
        steps,
        exists=found is not None,
        detail=detail,
        depends_on=(layout.name,),
    )


def nat_probe(stage: Stage, name: str, vpc_name: str) -> str:
    """The state of the newest NAT gateway called `name` (failed ones too): what its Wait polls."""
    vpc = _find(stage, "VPC", vpc_name)
    filters = [{"Name": "tag:Name", "Values": [name]}]
    if vpc:
        filters.append({"Name": "vpc-id", "Values": [vpc["VpcId"]]})
    found = stage.client("ec2").describe_nat_gateways(Filter=filters).get("NatGateways", [])
    newest = max(found, key=lambda nat: str(nat.get("CreateTime", "")), default=None)
    return str(newest["State"]) if newest else "missing"


def wait_for_nat(name: str, vpc_name: str) -> Wait:
    # A NAT gateway takes a few minutes to become available; the routes through it follow.
    probe = partial(nat_probe, name=name, vpc_name=vpc_name)
    return Wait(name, "NAT gateway to be available", probe, frozenset({"available"}), NAT_GONE)


def plan_nat_gateway(stage: Stage, layout: Layout, state: VpcState, zone: str) -> Resource:
    name, steps = layout.nat_gateway(zone), []
    found = state.nats.get(name)
    tags = layout.named(name)
    if found is None:
        allocation: Ref | None = state.id_of("Elastic IP", name)
        if allocation is None:
            params = {"Domain": "vpc", "TagSpecifications": _tag_spec(stage, "elastic-ip", tags)}
            steps.append(Call("ec2", "AllocateAddress", params, name, "no Elastic IP for the NAT gateway"))
            allocation = id_when_created("Elastic IP", name, layout.name)
        public = layout.subnet("public", zone)
        params = {
            "SubnetId": state.id_of("subnet", public) or id_when_created("subnet", public, layout.name),
            "AllocationId": allocation,
            "ConnectivityType": "public",
            "TagSpecifications": _tag_spec(stage, "natgateway", tags),
        }
        steps.append(Call("ec2", "CreateNatGateway", params, name, "NAT gateway does not exist"))
        steps.append(wait_for_nat(name, layout.name))
    else:
        steps.extend(_retag(stage, found["NatGatewayId"], tags, found, name))
        if found["State"] != "available":
            steps.append(wait_for_nat(name, layout.name))
    detail = f"{found['NatGatewayId']} {found['State']}" if found else zone
    after = (layout.subnet("public", zone), layout.igw)
    return converge(
        AREA, "NAT gateway", name, steps, exists=found is not None, detail=detail, depends_on=after
    )


def unused_nat_gateways(layout: Layout, state: VpcState) -> list[Resource]:
    """NAT gateways of this VPC that config no longer routes through (network.nat changed): shown
    as drift to delete by hand, never deleted here, since deleting one cuts whatever still uses it."""
    wanted = {layout.nat_gateway(zone) for zone in layout.nat_zones}
    return [
        Resource(
            AREA,
            "NAT gateway",
            name,
            "drifted",
            drift=(
                f"not used with network.nat {layout.nat}: delete it (and release its Elastic IP) by hand",
            ),
            detail=f"{nat['NatGatewayId']} {nat['State']}",
        )
        for name, nat in sorted(state.nats.items())
        if name.startswith(f"{layout.name}-nat-") and name not in wanted
    ]


@dataclass(frozen=True)
class RoutesSpec:
    """One route table: its subnets, and where 0.0.0.0/0 goes (nowhere for private subnets
    without a NAT gateway). Nothing else it holds may lead to an internet gateway when private."""

    name: str
    subnets: tuple[str, ...]
    target: tuple[str, Ref] | None  # ("GatewayId", igw) or ("NatGatewayId", nat)
    private: bool
    depends_on: tuple[str, ...]


def routes_specs(layout: Layout, state: VpcState) -> list[RoutesSpec]:
    igw = (
        state.igw["InternetGatewayId"]
        if state.igw
        else id_when_created("internet gateway", layout.igw, layout.name)
    )
    public = RoutesSpec(
        layout.public_routes,
        tuple(layout.subnet("public", zone) for zone in layout.zones),
        ("GatewayId", igw),
        False,
        (layout.name, layout.igw, *(layout.subnet("public", zone) for zone in layout.zones)),
    )
    private = []
    for zone in layout.zones:
        nat_zone = layout.nat_for(zone)
        target: tuple[str, Ref] | None = None
        after: tuple[str, ...] = (layout.name, layout.subnet("private", zone))
        if nat_zone is not None:
            nat = layout.nat_gateway(nat_zone)
            target = (
                "NatGatewayId",
                state.id_of("NAT gateway", nat) or id_when_created("NAT gateway", nat, layout.name),
            )
            after = (*after, nat)
        private.append(
            RoutesSpec(layout.private_routes(zone), (layout.subnet("private", zone),), target, True, after)
        )
    return [public, *private]


def _route_target(route: dict[str, Any]) -> str | None:
    return route.get("NatGatewayId") or route.get("GatewayId")


def _default_route_steps(spec: RoutesSpec, table: dict[str, Any] | None, table_ref: Ref) -> list[Call]:
    current = next(
        (r for r in (table or {}).get("Routes", []) if r.get("DestinationCidrBlock") == ANYWHERE), None
    )
    base = {"RouteTableId": table_ref, "DestinationCidrBlock": ANYWHERE}
    if spec.target is None:
        if current is None:
            return []
        return [
            Call(
                "ec2",
                "DeleteRoute",
                base,
                spec.name,
                f"{ANYWHERE} leads to {_route_target(current)}: no way out in config",
            )
        ]
    key, target = spec.target
    if current is None:
        return [Call("ec2", "CreateRoute", {**base, key: target}, spec.name, f"no route for {ANYWHERE}")]
    if isinstance(target, str) and _route_target(current) == target and current.get("State") != "blackhole":
        return []
    reason = f"{ANYWHERE} leads to {_route_target(current)} ({current.get('State', 'active')}), not {target}"
    return [Call("ec2", "ReplaceRoute", {**base, key: target}, spec.name, reason)]


def _stray_internet_routes(spec: RoutesSpec, table: dict[str, Any] | None, table_ref: Ref) -> list[Call]:
    """Any other route of a private table to an internet gateway would make its subnets public."""
    if not spec.private or table is None:
        return []
    steps = []
    for route in table.get("Routes", []):
        key = next((k for k in ROUTE_DESTINATIONS if route.get(k)), None)
        destination = route.get(key) if key else None
        if not key or destination == ANYWHERE or not str(route.get("GatewayId", "")).startswith("igw-"):
            continue
        params = {"RouteTableId": table_ref, key: destination}
        reason = f"private subnets routed to internet gateway {route['GatewayId']} for {destination}"
        steps.append(Call("ec2", "DeleteRoute", params, spec.name, reason))
    return steps


def _association_steps(
    spec: RoutesSpec, layout: Layout, state: VpcState, table: dict[str, Any] | None, table_ref: Ref
) -> list[Call]:
    steps = []
    for subnet in spec.subnets:
        subnet_id = state.id_of("subnet", subnet)
        held = next(
            (
                (t, a)
                for t in state.all_tables
                for a in t.get("Associations", [])
                if subnet_id and a.get("SubnetId") == subnet_id
            ),
            None,
        )
        if held and table and held[0]["RouteTableId"] == table["RouteTableId"]:
            continue
        if held:
            params = {"AssociationId": held[1]["RouteTableAssociationId"], "RouteTableId": table_ref}
            reason = f"{subnet} uses route table {held[0]['RouteTableId']}"
            steps.append(Call("ec2", "ReplaceRouteTableAssociation", params, spec.name, reason))
        else:
            params = {
                "RouteTableId": table_ref,
                "SubnetId": subnet_id or id_when_created("subnet", subnet, layout.name),
            }
            steps.append(Call("ec2", "AssociateRouteTable", params, spec.name, f"{subnet} not associated"))
    return steps


def plan_route_table(stage: Stage, layout: Layout, state: VpcState, spec: RoutesSpec) -> Resource:
    table = state.tables.get(spec.name)
    tags = {**layout.named(spec.name), "Tier": "private" if spec.private else "public"}
    steps: list[Step] = []
    if table is None:
        params = {
            "VpcId": state.vpc_id or id_when_created("VPC", layout.name, layout.name),
            "TagSpecifications": _tag_spec(stage, "route-table", tags),
        }
        steps.append(Call("ec2", "CreateRouteTable", params, spec.name, "route table does not exist"))
    else:
        steps.extend(_retag(stage, table["RouteTableId"], tags, table, spec.name))
    table_ref = table["RouteTableId"] if table else id_when_created("route table", spec.name, layout.name)
    steps.extend(_default_route_steps(spec, table, table_ref))
    steps.extend(_stray_internet_routes(spec, table, table_ref))
    steps.extend(_association_steps(spec, layout, state, table, table_ref))
    way_out = "no way out" if spec.target is None else f"{ANYWHERE} via {spec.target[1]}"
    detail = f"{table['RouteTableId']}: {way_out}" if table else way_out
    return converge(
        AREA,
        "route table",
        spec.name,
        steps,
        exists=table is not None,
        detail=detail,
        depends_on=spec.depends_on,
    )


def plan_vpc_parts(stage: Stage, layout: Layout, state: VpcState) -> list[Resource]:
    return [
        plan_vpc(stage, layout, state),
        plan_internet_gateway(stage, layout, state),
        *(
            plan_subnet(stage, layout, state, tier, zone)
            for tier in ("private", "public")
            for zone in layout.zones
        ),
        *(plan_nat_gateway(stage, layout, state, zone) for zone in layout.nat_zones),
        *unused_nat_gateways(layout, state),
        *(plan_route_table(stage, layout, state, spec) for spec in routes_specs(layout, state)),
    ]


# -- a VPC named in config ------------------------------------------------------------------------


def _configured_vpc(stage: Stage, configured: str) -> str:
    from botocore.exceptions import ClientError

    try:
        stage.client("ec2").describe_vpcs(VpcIds=[configured])
    except ClientError as exc:
        if error_code(exc) == "InvalidVpcID.NotFound":
            raise AwsError(
                "InvalidVpcID.NotFound",
                f"VPC {configured} (network.vpc_id) does not exist in {stage.region}",
                "Set network.vpc_id to a VPC of this account and region, or drop it (and "
                "network.subnet_ids) for the stage's own VPC.",
            ) from None
        raise
    return configured


def _configured_subnets(stage: Stage, vpc: str) -> dict[str, str]:
    """Subnet id -> zone of network.subnet_ids, each checked to be in `vpc` and private."""
    ec2 = stage.client("ec2")
    configured = list(stage.config.network.subnet_ids)
    subnets = [
        subnet
        for page in ec2.get_paginator("describe_subnets").paginate(SubnetIds=configured)
        for subnet in page.get("Subnets", [])
    ]
    strays = sorted(s["SubnetId"] for s in subnets if s["VpcId"] != vpc)
    if strays:
        raise AwsError(
            "SubnetNotInVpc",
            f"subnets {', '.join(strays)} (network.subnet_ids) are not in VPC {vpc}",
            "List only subnets of network.vpc_id in network.subnet_ids.",
        )
    require_private(stage, vpc, sorted(s["SubnetId"] for s in subnets))
    return {subnet["SubnetId"]: subnet["AvailabilityZone"] for subnet in subnets}


def require_private(stage: Stage, vpc: str, subnets: Sequence[str]) -> None:
    """Refuse a subnet whose route table (its own, else the VPC's main one) leads to an internet
    gateway: the data stores and instances would sit in a public subnet."""
    tables = stage.client("ec2").describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
        "RouteTables"
    ]
    main = next((t for t in tables for a in t.get("Associations", []) if a.get("Main")), None)
    for subnet in subnets:
        table = next(
            (t for t in tables for a in t.get("Associations", []) if a.get("SubnetId") == subnet), main
        )
        routes = (table or {}).get("Routes", [])
        public = [r for r in routes if str(r.get("GatewayId", "")).startswith("igw-")]
        if table and public:
            route = public[0]
            destination = next((route[k] for k in ROUTE_DESTINATIONS if route.get(k)), "traffic")
            raise AwsError(
                "PublicSubnet",
                f"subnet {subnet} (network.subnet_ids) is public: its route table {table['RouteTableId']} "
                f"sends {destination} to internet gateway {route['GatewayId']}",
                "List only private subnets of network.vpc_id in network.subnet_ids, or drop both for "
                "the stage's own VPC. Nothing was changed.",
            )


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


# -- lookups for other areas ---------------------------------------------------------------------


def vpc_id(stage: Stage) -> str | Deferred:
    """The stage's VPC: the configured one (checked to exist), else the stage's own, read by name
    (a Deferred id when the network area has yet to make it)."""
    net = stage.config.network
    if net.vpc_id:
        return _configured_vpc(stage, net.vpc_id)
    found = _find(stage, "VPC", net.vpc_name)
    return found["VpcId"] if found else id_when_created("VPC", net.vpc_name, net.vpc_name)


def subnet_zones(stage: Stage, vpc: str | Deferred) -> dict[Any, str]:
    """Subnet id -> availability zone of the private subnets, where the data stores and instances
    go. Before the network area made them, the ids are Deferred (sortable, one per zone)."""
    if stage.config.network.vpc_id:
        return _configured_subnets(stage, str(vpc))
    layout = vpc_layout(stage)
    found = {}
    if isinstance(vpc, str):
        found = _named(_describe(stage, "subnet", [{"Name": "vpc-id", "Values": [vpc]}]))
    names = {layout.subnet("private", zone): zone for zone in layout.zones}
    if all(name in found for name in names):
        return {found[name]["SubnetId"]: zone for name, zone in names.items()}
    return {id_when_created("subnet", name, layout.name): zone for name, zone in names.items()}


def public_subnet_ids(stage: Stage) -> list[Any]:
    """The stage's own public subnets (for load balancers), one per zone in zone order; Deferred ids
    before the network area made them, and [] for a configured VPC (network.subnet_ids lists only
    private ones)."""
    if stage.config.network.vpc_id:
        return []
    layout = vpc_layout(stage)
    vpc = vpc_id(stage)
    found = {}
    if isinstance(vpc, str):
        found = _named(_describe(stage, "subnet", [{"Name": "vpc-id", "Values": [vpc]}]))
    names = [layout.subnet("public", zone) for zone in layout.zones]
    return [found[n]["SubnetId"] if n in found else id_when_created("subnet", n, layout.name) for n in names]


def subnet_ids(stage: Stage) -> list[Any]:
    """The subnets the stage's data stores and instances go in, sorted."""
    return sorted(subnet_zones(stage, vpc_id(stage)))


# -- security groups ---------------------------------------------------------------------------


def _find_group(stage: Stage, vpc: str, name: str) -> dict[str, Any] | None:
    filters = [{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc]}]

    def read() -> list[dict[str, Any]]:
        return stage.client("ec2").describe_security_groups(Filters=filters).get("SecurityGroups", [])

    groups = stage.remember(("ec2", "describe_security_groups", name, vpc), read)
    return groups[0] if groups else None


def security_group_id(stage: Stage, name: str, *, vpc: str | Deferred | None = None) -> str | None:
    """The id of the security group called `name` in the stage's VPC, or None when there is none."""
    where = vpc or vpc_id(stage)
    if not isinstance(where, str):
        return None  # the VPC itself is still to be made
    group = _find_group(stage, where, name)
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
class Rule:
    """One rule the config wants, in or out: a TCP port from or to one CIDR, security group or
    prefix list."""

    port: int
    peer_kind: str  # "cidr", "cidr6", "group" or "prefix"
    peer: str | Deferred
    description: str

    @property
    def key(self) -> RuleKey:
        value = self.peer if isinstance(self.peer, str) else None
        return ("tcp", self.port, self.port, (self.peer_kind, value))

    def permission(self) -> dict[str, Any]:
        entry = {"Description": self.description}
        permission: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": self.port, "ToPort": self.port}
        if self.peer_kind == "group":
            permission["UserIdGroupPairs"] = [{"GroupId": self.peer, **entry}]
        elif self.peer_kind == "prefix":
            permission["PrefixListIds"] = [{"PrefixListId": self.peer, **entry}]
        elif self.peer_kind == "cidr6":
            permission["Ipv6Ranges"] = [{"CidrIpv6": self.peer, **entry}]
        else:
            permission["IpRanges"] = [{"CidrIp": self.peer, **entry}]
        return permission

    def shown(self, egress: bool) -> str:
        return f"tcp {self.port} {'to' if egress else 'from'} {self.peer}"


@dataclass(frozen=True)
class ExistingRule:
    """One rule as AWS has it."""

    rule_id: str
    key: RuleKey
    egress: bool

    def shown(self) -> str:
        protocol, low, high, (_, value) = self.key
        ports = str(low) if low == high else f"{low}-{high}"
        what = "all traffic" if protocol == "-1" else f"{protocol} {ports}"
        return f"{what} {'to' if self.egress else 'from'} {value}"


@dataclass(frozen=True)
class GroupSpec:
    name: str
    description: str
    tags: dict[str, str]
    ingress: tuple[Rule, ...]
    egress: tuple[Rule, ...]
    depends_on: tuple[str, ...] = ()
    # What the egress rules name (the other group) must exist before they are added.
    egress_after: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupState:
    group_id: str | None
    rules: tuple[ExistingRule, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)

    def direction(self, egress: bool) -> tuple[ExistingRule, ...]:
        return tuple(rule for rule in self.rules if rule.egress == egress)


def _cidr(text: str) -> str:
    return str(ipaddress.ip_network(text, strict=False))


def rule_key(rule: dict[str, Any]) -> RuleKey:
    """Normalise a DescribeSecurityGroupRules entry, so a rule compares equal to the one we asked for."""
    protocol = str(rule.get("IpProtocol", "-1")).lower()
    protocol = PROTOCOL_NAMES.get(protocol, protocol)
    low, high = int(rule.get("FromPort", -1)), int(rule.get("ToPort", -1))
    peer: Peer
    if rule.get("CidrIpv4"):
        peer = ("cidr", _cidr(rule["CidrIpv4"]))
    elif rule.get("CidrIpv6"):
        peer = ("cidr6", _cidr(rule["CidrIpv6"]))
    elif rule.get("ReferencedGroupInfo", {}).get("GroupId"):
        peer = ("group", rule["ReferencedGroupInfo"]["GroupId"])
    elif rule.get("PrefixListId"):
        peer = ("prefix", rule["PrefixListId"])
    else:
        peer = ("unknown", rule.get("SecurityGroupRuleId"))
    return (protocol, low, high, peer)


def read_group(stage: Stage, vpc: str | Deferred, name: str) -> GroupState:
    group = _find_group(stage, vpc, name) if isinstance(vpc, str) else None
    if group is None:
        return GroupState(None)
    ec2 = stage.client("ec2")
    filters = [{"Name": "group-id", "Values": [group["GroupId"]]}]
    rules = [
        ExistingRule(rule["SecurityGroupRuleId"], rule_key(rule), bool(rule.get("IsEgress")))
        for page in ec2.get_paginator("describe_security_group_rules").paginate(Filters=filters)
        for rule in page.get("SecurityGroupRules", [])
    ]
    tags = {tag["Key"]: tag["Value"] for tag in group.get("Tags", [])}
    return GroupState(group["GroupId"], tuple(rules), tags)


def ssh_ingress(cidr: str) -> Rule:
    network = ipaddress.ip_network(cidr, strict=False)
    kind = "cidr" if network.version == 4 else "cidr6"
    return Rule(SSH_PORT, kind, str(network), f"{RULE_PREFIX}ssh from {network}")


def s3_prefix_list(stage: Stage) -> str:
    """The id of the AWS-managed prefix list of S3 in the region (what the gateway endpoint routes)."""
    name = service_name(stage, "s3")
    filters = [{"Name": "prefix-list-name", "Values": [name]}]
    found = stage.client("ec2").describe_managed_prefix_lists(Filters=filters).get("PrefixLists", [])
    if not found:
        raise AwsError(
            "PrefixListNotFound",
            f"no AWS-managed prefix list {name} in {stage.region}",
            "Check the stage's region: every region with S3 gateway endpoints has one.",
        )
    return str(found[0]["PrefixListId"])


def group_specs(stage: Stage, app_group: Ref, data_group: Ref, s3_list: str) -> list[GroupSpec]:
    """The application group: SSH in only from configured CIDRs; out, HTTPS (and HTTP when
    network.http_egress) anywhere and each data port to the data group. The data group: each data
    port in from the application group, nothing from any CIDR; out, HTTPS to S3 only (Redshift's
    COPY and UNLOAD through the gateway endpoint). `app_group` and `data_group` are ids, or
    Deferred ones. Traffic to the VPC's DNS, the instance metadata and the Amazon Time Sync
    Service is never filtered by security groups, so it needs no rule."""
    net = stage.config.network
    app, data = net.app_security_group, net.data_security_group
    out = [Rule(HTTPS_PORT, "cidr", ANYWHERE, f"{RULE_PREFIX}https out: AWS APIs, package mirrors")]
    if net.http_egress:
        out.append(Rule(HTTP_PORT, "cidr", ANYWHERE, f"{RULE_PREFIX}http out: package mirrors"))
    out.extend(Rule(port, "group", data_group, f"{RULE_PREFIX}{label} to data") for label, port in DATA_PORTS)
    return [
        GroupSpec(
            app,
            APP_DESCRIPTION,
            {**stage.tags(app), "Name": app},
            tuple(ssh_ingress(cidr) for cidr in net.ssh_cidrs),
            tuple(out),
            egress_after=(data,),
        ),
        GroupSpec(
            data,
            DATA_DESCRIPTION,
            {**stage.tags(data), "Name": data},
            (
                *(
                    Rule(port, "group", app_group, f"{RULE_PREFIX}{label} from app")
                    for label, port in DATA_PORTS
                ),
                *firehose_ingress(stage),
            ),
            (Rule(HTTPS_PORT, "prefix", s3_list, f"{RULE_PREFIX}https to S3"),),
            depends_on=(app,),
        ),
    ]


def firehose_ingress(stage: Stage) -> tuple[Rule, ...]:
    """Redshift's port from Firehose's published range for the region, in direct delivery only
    (config refuses any range wider than /24, and never the world); none when staged."""
    return tuple(
        Rule(REDSHIFT_PORT, "cidr", _cidr(cidr), f"{RULE_PREFIX}redshift from Firehose ({stage.region})")
        for cidr in stage.config.firehose_cidrs()
    )


def _rule_steps(
    name: str, wanted: Sequence[Rule], present: Sequence[ExistingRule], group: Ref, *, egress: bool, new: bool
) -> list[Call]:
    direction = "Egress" if egress else "Ingress"
    label = direction.lower()
    wanted_keys = {rule.key for rule in wanted}
    present_keys = {rule.key for rule in present}
    extra = [rule for rule in present if rule.key not in wanted_keys]
    missing = [rule for rule in wanted if rule.key not in present_keys]
    steps: list[Call] = []
    if new and egress:
        # A new group allows everything out; the rule has no id to name before the group exists.
        params = {"GroupId": group, "IpPermissions": [DEFAULT_EGRESS]}
        steps.append(
            Call("ec2", "RevokeSecurityGroupEgress", params, name, "default egress: all traffic anywhere")
        )
    if extra:
        params = {"GroupId": group, "SecurityGroupRuleIds": [rule.rule_id for rule in extra]}
        reason = f"{label} not in config: {'; '.join(rule.shown() for rule in extra)}"
        steps.append(Call("ec2", f"RevokeSecurityGroup{direction}", params, name, reason))
    if missing:
        shown = "; ".join(rule.shown(egress) for rule in missing)
        reason = f"{label} {'to add' if new else 'missing'}: {shown}"
        params = {"GroupId": group, "IpPermissions": [rule.permission() for rule in missing]}
        steps.append(Call("ec2", f"AuthorizeSecurityGroup{direction}", params, name, reason))
    return steps


def plan_group(
    stage: Stage, vpc: Ref, spec: GroupSpec, state: GroupState, after: Sequence[str] = ()
) -> Resource:
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
            steps.append(Call("ec2", "CreateTags", params, spec.name, tag_drift(state.tags, spec.tags)))
    group = state.group_id or group_id_when_created(spec.name)
    new = state.group_id is None
    steps.extend(_rule_steps(spec.name, spec.ingress, state.direction(False), group, egress=False, new=new))
    return converge(
        AREA,
        "security group",
        spec.name,
        steps,
        exists=state.group_id is not None,
        detail=f"{state.group_id} in {vpc}" if state.group_id else str(vpc),
        depends_on=(*after, *spec.depends_on),
    )


def plan_egress(spec: GroupSpec, state: GroupState) -> Resource:
    """A group's egress, apart from the group: the application group's rules name the data group,
    which is made after it (its ingress names the application group)."""
    name = f"{spec.name}/egress"
    group = state.group_id or group_id_when_created(spec.name)
    new = state.group_id is None
    steps = _rule_steps(name, spec.egress, state.direction(True), group, egress=True, new=new)
    shown = "; ".join(rule.shown(True) for rule in spec.egress)
    return converge(
        AREA,
        "security group egress",
        name,
        steps,
        exists=not new,
        detail=shown,
        depends_on=(spec.name, *spec.egress_after),
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
    subnet_ids: tuple[str, ...] | Deferred  # Deferred: the private subnets are still to be made
    tags: dict[str, str]
    vpc: Ref = ""
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class SubnetGroupState:
    exists: bool
    arn: str = ""
    vpc_id: str = ""
    subnet_ids: frozenset[str] = frozenset()
    tags: dict[str, str] = field(default_factory=dict)


def _subnets_of(group: dict[str, Any]) -> frozenset[str]:
    return frozenset(subnet["SubnetIdentifier"] for subnet in group.get("Subnets", []))


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


def subnet_group_specs(
    stage: Stage,
    subnets: tuple[str, ...] | Deferred,
    vpc: Ref = "",
    after: tuple[str, ...] = (),
    public: tuple[tuple[str, ...] | Deferred, tuple[str, ...]] | None = None,
) -> list[SubnetGroupSpec]:
    """The data stores' subnet groups, in the private subnets; with `public` (its subnets and what
    makes them), the Redshift one in those instead: Firehose's direct delivery reaches the clusters
    only at a public address."""

    def members(found: tuple[str, ...] | Deferred) -> tuple[str, ...] | Deferred:
        return tuple(sorted(found)) if isinstance(found, tuple) else found

    redshift = public or (subnets, after)
    specs = []
    for api, name in subnet_groups(stage):
        placed, placed_after = redshift if api is REDSHIFT_SUBNET_GROUP else (subnets, after)
        specs.append(SubnetGroupSpec(api, name, members(placed), stage.tags(name), vpc, placed_after))
    return specs


def subnet_groups(stage: Stage) -> list[tuple[SubnetGroupApi, str]]:
    """The data stores' subnet groups: the API of each, and its name."""
    net = stage.config.network
    return [
        (DB_SUBNET_GROUP, net.db_subnet_group),
        (REDSHIFT_SUBNET_GROUP, net.redshift_subnet_group),
        (CACHE_SUBNET_GROUP, net.cache_subnet_group),
    ]


def _subnet_change(spec: SubnetGroupSpec, state: SubnetGroupState) -> str | None:
    """Why the group's subnets differ from config, or None when they match."""
    if isinstance(spec.subnet_ids, Deferred):
        return f"subnets to be made: {spec.subnet_ids}"
    added = sorted(set(spec.subnet_ids) - state.subnet_ids)
    removed = sorted(state.subnet_ids - set(spec.subnet_ids))
    if not added and not removed:
        return None
    change = [*(f"+{s}" for s in added), *(f"-{s}" for s in removed)]
    return f"subnets differ from config: {' '.join(change)}"


def _elsewhere(spec: SubnetGroupSpec, state: SubnetGroupState) -> str | None:
    """Why the group cannot follow config, when it lives in another VPC than the stage's (an
    older deployment's, say): AWS moves no subnet group, nor what is in it, across VPCs."""
    if not state.exists or not state.vpc_id or spec.vpc == state.vpc_id or not spec.vpc:
        return None
    return (
        f"in VPC {state.vpc_id}, not the stage's VPC {spec.vpc}: move its data stores to the "
        f"stage's VPC by hand, then delete the group so that the next run makes it there"
    )


def plan_subnet_group(stage: Stage, spec: SubnetGroupSpec, state: SubnetGroupState) -> Resource:
    api = spec.api
    detail = f"{state.vpc_id}, {len(state.subnet_ids)} subnets" if state.exists else ""
    note = _elsewhere(spec, state)
    if note:
        return Resource(AREA, api.kind, spec.name, "drifted", drift=(note,), detail=detail)
    subnets = spec.subnet_ids if isinstance(spec.subnet_ids, Deferred) else list(spec.subnet_ids)
    steps: list[Call] = []
    if not state.exists:
        params = {
            api.name_param: spec.name,
            api.description_param: SUBNET_GROUP_DESCRIPTION.format(
                what=api.kind.removesuffix(" subnet group")
            ),
            "SubnetIds": subnets,
            "Tags": stage.tag_list(spec.tags),
        }
        steps.append(Call(api.service, api.create, params, spec.name, f"{api.kind} does not exist"))
    else:
        reason = _subnet_change(spec, state)
        if reason:
            params = {api.name_param: spec.name, "SubnetIds": subnets}
            steps.append(Call(api.service, api.modify, params, spec.name, reason))
        drifted = {k: v for k, v in spec.tags.items() if state.tags.get(k) != v}
        if drifted:
            params = {"ResourceName": state.arn, "Tags": stage.tag_list(drifted)}
            steps.append(Call(api.service, api.add_tags, params, spec.name, tag_drift(state.tags, spec.tags)))
    return converge(
        AREA,
        api.kind,
        spec.name,
        steps,
        exists=state.exists,
        detail=detail,
        depends_on=spec.depends_on,
    )


# -- VPC endpoints -------------------------------------------------------------------------------
# The data stores have no public address and Redshift routes COPY through the VPC (enhanced VPC
# routing), so S3 must be reachable from inside the VPC: a gateway endpoint on the private route
# tables (on every route table of a VPC named in config), limited to the buckets in use.
S3_ENDPOINT_NAME = "iotile-cloud-s3-gateway"
# Buckets AWS owns that instances in a private subnet read through the S3 endpoint, by why:
# package mirrors (Amazon Linux 2: the first two; Amazon Linux 2023: the third), image layers that
# docker pulls from ECR (the workers' image), and what Elastic Beanstalk's instances fetch: their
# platform's assets. Read only.
AWS_READ_BUCKETS = (
    "amazonlinux.{region}.amazonaws.com",
    "amazonlinux-2-repos-{region}",
    "al2023-repos-{region}-de612dc2",
    "prod-{region}-starport-layer-bucket",
    "elasticbeanstalk-platform-assets-{region}",
    "elasticbeanstalk-env-resources-{region}",
)
# Where Beanstalk's CloudFormation stack takes its instances' signals (presigned PUTs).
AWS_SIGNAL_BUCKETS = (
    "cloudformation-waitcondition-{region}",
    "cloudformation-custom-resource-response-{region}",
)


def service_name(stage: Stage, service: str) -> str:
    prefix = "cn.com.amazonaws" if partition(stage.region) == "aws-cn" else "com.amazonaws"
    return f"{prefix}.{stage.region}.{service}"


def stage_buckets(stage: Stage) -> list[str]:
    """The stage's configured buckets, and Beanstalk's own bucket of the account (application
    versions in, instance logs out)."""
    buckets = stage.config.s3.buckets
    names = {getattr(buckets, key).name for key in type(buckets).model_fields}
    return sorted({*names, f"elasticbeanstalk-{stage.region}-{stage.account_id}"})


def s3_endpoint_policy(stage: Stage) -> dict[str, Any]:
    """The endpoint reaches only the buckets in use: the stage's own (everything the instances'
    roles allow) and the AWS ones its instances need (read, or write a signal). Anything else
    through the endpoint, such as copying data out to some other bucket, is refused."""
    arn = f"arn:{partition(stage.region)}:s3:::"

    def objects(names: Sequence[str]) -> list[str]:
        return [f"{arn}{name.format(region=stage.region)}/*" for name in names]

    own = stage_buckets(stage)
    statement = [
        {
            "Sid": "StageBuckets",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": sorted([*(f"{arn}{name}" for name in own), *objects(own)]),
        },
        {
            "Sid": "AwsReadOnly",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": objects(AWS_READ_BUCKETS),
        },
        {
            "Sid": "AwsSignals",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": objects(AWS_SIGNAL_BUCKETS),
        },
    ]
    return {"Version": "2012-10-17", "Statement": statement}


@dataclass(frozen=True)
class EndpointState:
    endpoint_id: str | None
    route_tables: frozenset[str] = frozenset()
    subnets: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    policy: str = ""


def read_endpoints(stage: Stage, vpc: Ref) -> dict[str, EndpointState]:
    """The live endpoints of the VPC by service name; shared by every stage in a VPC named in
    config, so found by VPC and service, never by stage."""
    if not isinstance(vpc, str):
        return {}
    filters = [{"Name": "vpc-id", "Values": [vpc]}]
    found = stage.client("ec2").describe_vpc_endpoints(Filters=filters)["VpcEndpoints"]
    states = {}
    for endpoint in sorted(found, key=lambda e: str(e.get("CreationTimestamp", ""))):
        if str(endpoint.get("State", "")).lower() in ENDPOINT_GONE:
            continue
        states[endpoint["ServiceName"]] = EndpointState(
            endpoint["VpcEndpointId"],
            frozenset(endpoint.get("RouteTableIds", [])),
            frozenset(endpoint.get("SubnetIds", [])),
            frozenset(group["GroupId"] for group in endpoint.get("Groups", [])),
            endpoint.get("PolicyDocument", ""),
        )
    return states


def _missing(wanted: Sequence[Ref], present: frozenset[str]) -> list[Ref]:
    return [ref for ref in wanted if not isinstance(ref, str) or ref not in present]


def plan_s3_endpoint(stage: Stage, inside: Inside, state: EndpointState, policy: dict[str, Any]) -> Resource:
    resource = inside.s3_endpoint
    steps: list[Call] = []
    document = json.dumps(policy, separators=(",", ":"))
    if state.endpoint_id is None:
        params = {
            "VpcEndpointType": "Gateway",
            "VpcId": inside.vpc,
            "ServiceName": service_name(stage, "s3"),
            "RouteTableIds": list(inside.route_tables),
            "PolicyDocument": document,
            "TagSpecifications": _tag_spec(stage, "vpc-endpoint", inside.endpoint_tags),
        }
        steps.append(Call("ec2", "CreateVpcEndpoint", params, resource, "no S3 gateway endpoint in the VPC"))
    else:
        missing = _missing(inside.route_tables, state.route_tables)
        if missing:
            params = {"VpcEndpointId": state.endpoint_id, "AddRouteTableIds": missing}
            reason = f"route tables without the S3 route: {', '.join(map(str, missing))}"
            steps.append(Call("ec2", "ModifyVpcEndpoint", params, resource, reason))
        if not state.policy or canonical(state.policy) != canonical(policy):
            params = {"VpcEndpointId": state.endpoint_id, "PolicyDocument": document}
            reason = "endpoint policy differs from config (buckets in use only)"
            steps.append(Call("ec2", "ModifyVpcEndpoint", params, resource, reason))
    detail = f"{state.endpoint_id or 'S3 gateway'} in {inside.vpc}"
    return converge(
        AREA,
        "S3 endpoint",
        resource,
        steps,
        exists=state.endpoint_id is not None,
        detail=detail,
        depends_on=inside.tables_after,
    )


def plan_service_endpoint(
    stage: Stage, inside: Inside, service: str, state: EndpointState, group: Ref
) -> Resource:
    """With network.nat none, the way the instances reach one AWS API: an interface endpoint in
    each private subnet behind the data group (which admits 443 from the application group only),
    or a gateway endpoint on the private route tables for DynamoDB."""
    name = f"{inside.name}-{service}"
    gateway = service in GATEWAY_SERVICES
    steps: list[Call] = []
    if state.endpoint_id is None:
        params: dict[str, Any] = {
            "VpcEndpointType": "Gateway" if gateway else "Interface",
            "VpcId": inside.vpc,
            "ServiceName": service_name(stage, service),
            "TagSpecifications": _tag_spec(stage, "vpc-endpoint", {**inside.endpoint_tags, "Name": name}),
        }
        if gateway:
            params["RouteTableIds"] = list(inside.route_tables)
        else:
            params.update(SubnetIds=inside.subnet_refs, SecurityGroupIds=[group], PrivateDnsEnabled=True)
        steps.append(Call("ec2", "CreateVpcEndpoint", params, name, f"no {service} endpoint in the VPC"))
    else:
        change: dict[str, Any] = {}
        if gateway and (tables := _missing(inside.route_tables, state.route_tables)):
            change["AddRouteTableIds"] = tables
        if not gateway and (subnets := _missing(inside.subnet_refs, state.subnets)):
            change["AddSubnetIds"] = subnets
        if not gateway and (groups := _missing([group], state.groups)):
            change["AddSecurityGroupIds"] = groups
        if change:
            reason = f"endpoint lacks {', '.join(sorted(change))}"
            steps.append(
                Call("ec2", "ModifyVpcEndpoint", {"VpcEndpointId": state.endpoint_id, **change}, name, reason)
            )
    after = (*inside.tables_after, *inside.subnets_after, stage.config.network.data_security_group)
    detail = state.endpoint_id or service_name(stage, service)
    return converge(
        AREA,
        "VPC endpoint",
        name,
        steps,
        exists=state.endpoint_id is not None,
        detail=detail,
        depends_on=after,
    )


# -- the area ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inside:
    """What the groups, subnet groups and endpoints are placed in, and the resources of this plan
    that make it (so that they run first)."""

    name: str
    vpc: Ref
    subnets: tuple[str, ...] | Deferred  # the data stores' (private) subnets
    subnet_refs: list[Ref]  # one per zone, for interface endpoints
    route_tables: tuple[Ref, ...]  # the S3 endpoint's
    s3_endpoint: str
    endpoint_tags: dict[str, str]
    vpc_after: tuple[str, ...] = ()
    subnets_after: tuple[str, ...] = ()
    tables_after: tuple[str, ...] = ()
    service_endpoints: tuple[str, ...] = ()
    # The public subnets (own VPC only): the Redshift clusters' in direct Firehose delivery.
    public_subnets: tuple[str, ...] | Deferred = ()
    public_after: tuple[str, ...] = ()


def own_vpc_inside(layout: Layout, state: VpcState, endpoints: Sequence[str]) -> Inside:
    """The stage's own VPC: its private subnets and their route tables, as ids or, for what is
    still to be made, Deferred ones; `endpoints` are made only when no NAT gateway leads out."""
    vpc: Ref = state.vpc_id or id_when_created("VPC", layout.name, layout.name)
    ids = [state.id_of("subnet", name) for name in layout.private_subnets]
    refs: list[Ref] = [
        found or id_when_created("subnet", name, layout.name)
        for found, name in zip(ids, layout.private_subnets, strict=True)
    ]
    members: tuple[str, ...] | Deferred = (
        tuple(str(i) for i in ids)
        if all(ids)
        else ids_when_created("subnet", sorted(layout.private_subnets), layout.name)
    )
    tables = tuple(
        state.id_of("route table", name) or id_when_created("route table", name, layout.name)
        for name in layout.private_tables
    )
    public = sorted(layout.subnet("public", zone) for zone in layout.zones)
    public_ids = [state.id_of("subnet", name) for name in public]
    public_members: tuple[str, ...] | Deferred = (
        tuple(str(i) for i in public_ids)
        if all(public_ids)
        else ids_when_created("subnet", public, layout.name)
    )
    return Inside(
        layout.name,
        vpc,
        members,
        refs,
        tables,
        layout.s3_endpoint,
        layout.named(layout.s3_endpoint),
        vpc_after=(layout.name,),
        subnets_after=tuple(layout.private_subnets),
        tables_after=(layout.name, *layout.private_tables),
        service_endpoints=tuple(endpoints) if layout.nat == "none" else (),
        public_subnets=public_members,
        public_after=tuple(public),
    )


def configured_vpc_inside(stage: Stage, zones: dict[str, str], tables: list[dict[str, Any]]) -> Inside:
    """A VPC named in config, with its subnets' `zones` and its route `tables`: nothing of it is
    made here; the S3 endpoint (shared by the stages in it) serves every route table of it."""
    vpc = str(stage.config.network.vpc_id)
    tags = {**stage.tags(S3_ENDPOINT_NAME), "Name": S3_ENDPOINT_NAME}
    return Inside(
        vpc,
        vpc,
        tuple(sorted(zones)),
        sorted(zones),
        tuple(sorted(table["RouteTableId"] for table in tables)),
        f"s3-endpoint/{vpc}",
        tags,
    )


@dataclass(frozen=True)
class Placement:
    """Where the groups, subnet groups and endpoints go (with the plans of the stage's own VPC),
    and the groups and endpoints found there."""

    vpc_parts: list[Resource]
    inside: Inside
    app_group: GroupState
    data_group: GroupState
    endpoints: dict[str, EndpointState]


def read_in_vpc(stage: Stage, vpc: Ref) -> list[Any]:
    """The stage's two security groups and the VPC's endpoints, side by side (nothing is read in a
    VPC still to be made)."""
    net = stage.config.network
    return call_concurrently(
        partial(read_group, stage, vpc, net.app_security_group),
        partial(read_group, stage, vpc, net.data_security_group),
        partial(read_endpoints, stage, vpc),
    )


def read_own_placement(stage: Stage) -> Placement:
    """The stage's own VPC in three round trips: its zones, the VPC and its internet gateway side
    by side; then, in the VPC, its parts beside the groups and endpoints; then the groups' rules."""
    name = stage.config.network.vpc_name
    layout, vpc, igw = call_concurrently(
        partial(vpc_layout, stage),
        partial(_find, stage, "VPC", name),
        partial(_find, stage, "internet gateway", igw_name(name)),
    )
    where: Ref = vpc["VpcId"] if vpc else id_when_created("VPC", name, name)
    state, (app_group, data_group, endpoints) = call_concurrently(
        partial(read_vpc_parts, stage, layout, vpc, igw),
        partial(read_in_vpc, stage, where),
    )
    inside = own_vpc_inside(layout, state, stage.config.network.endpoints)
    return Placement(plan_vpc_parts(stage, layout, state), inside, app_group, data_group, endpoints)


def checked_zones(stage: Stage, vpc: str) -> dict[str, str]:
    """Subnet id -> zone of network.subnet_ids, checked to be private subnets of `vpc` in enough zones."""
    zones = _configured_subnets(stage, vpc)
    require_zones(vpc, zones)
    return zones


def route_tables(stage: Stage, vpc: str) -> list[dict[str, Any]]:
    filters = [{"Name": "vpc-id", "Values": [vpc]}]
    return stage.client("ec2").describe_route_tables(Filters=filters)["RouteTables"]


def read_configured_placement(stage: Stage) -> Placement:
    """A VPC named in config: its id is known, so it is checked (to exist, and its subnets to be
    private and span the zones) while its route tables, the groups and the endpoints in it are read."""
    vpc = str(stage.config.network.vpc_id)
    _, zones, tables, (app_group, data_group, endpoints) = call_concurrently(
        partial(_configured_vpc, stage, vpc),
        partial(checked_zones, stage, vpc),
        partial(route_tables, stage, vpc),
        partial(read_in_vpc, stage, vpc),
    )
    inside = configured_vpc_inside(stage, zones, tables)
    return Placement([], inside, app_group, data_group, endpoints)


def read_placement(stage: Stage) -> Placement:
    return read_configured_placement(stage) if stage.config.network.vpc_id else read_own_placement(stage)


def plan(stage: Stage) -> list[Resource]:
    net = stage.config.network
    # The prefix list, the endpoint policy and the subnet groups (found by name) need nothing of
    # the VPC: they are read beside it.
    placement, s3_list, policy, *subnet_states = call_concurrently(
        partial(read_placement, stage),
        partial(s3_prefix_list, stage),
        partial(s3_endpoint_policy, stage),
        *(partial(api.read, stage, name) for api, name in subnet_groups(stage)),
    )
    inside, app_state, data_state = placement.inside, placement.app_group, placement.data_group
    # Config allows direct delivery only in the stage's own VPC, the one with public subnets.
    public = (inside.public_subnets, inside.public_after) if stage.config.firehose_cidrs() else None
    subnet_specs = subnet_group_specs(stage, inside.subnets, inside.vpc, inside.subnets_after, public)
    app_group = app_state.group_id or group_id_when_created(net.app_security_group)
    data_group = data_state.group_id or group_id_when_created(net.data_security_group)
    app_spec, data_spec = group_specs(stage, app_group, data_group, s3_list)
    endpoints, no_endpoint = placement.endpoints, EndpointState(None)
    return [
        *placement.vpc_parts,
        plan_group(stage, inside.vpc, app_spec, app_state, inside.vpc_after),
        plan_group(stage, inside.vpc, data_spec, data_state, inside.vpc_after),
        plan_egress(app_spec, app_state),
        plan_egress(data_spec, data_state),
        *(
            plan_subnet_group(stage, spec, state)
            for spec, state in zip(subnet_specs, subnet_states, strict=True)
        ),
        plan_s3_endpoint(stage, inside, endpoints.get(service_name(stage, "s3"), no_endpoint), policy),
        *(
            plan_service_endpoint(
                stage, inside, service, endpoints.get(service_name(stage, service), no_endpoint), data_group
            )
            for service in inside.service_endpoints
        ),
    ]


create, status = area_tasks(
    AREA, "the VPC, the security groups, the subnet groups and the VPC endpoints", plan
)
collection = Collection(AREA, create, status)
