"""The stage's VPC against moto: private subnets for the data stores, public ones for the load
balancers only, outbound per network.nat, and a VPC named in config refused when a subnet is public."""

from __future__ import annotations

from typing import Any

import pytest

from deploy.areas import network
from deploy.errors import AwsError
from deploy.plan import Wait
from deploy.stage import Stage
from tests.helpers import changed, converge, operations
from tests.test_network import (
    DATA,
    PRIVATE,
    VPC,
    ZONES,
    by_name,
    group,
    private_subnets,
    stage_vpc,
    subnet_group_members,
)

PUBLIC = [f"{VPC}-public-{zone}" for zone in ZONES]
DB = "iotile-cloud-db-dev"


@pytest.fixture(autouse=True)
def no_default_amis(monkeypatch: pytest.MonkeyPatch) -> None:
    """No machine images needed here either (see test_network)."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


def tables_of(stage: Stage, vpc: str) -> list[dict[str, Any]]:
    return stage.client("ec2").describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])[
        "RouteTables"
    ]


def table_of(stage: Stage, subnet: str) -> dict[str, Any]:
    """The route table a subnet uses: its own association, else its VPC's main table."""
    (found,) = stage.client("ec2").describe_subnets(SubnetIds=[subnet])["Subnets"]
    tables = tables_of(stage, found["VpcId"])
    own = [t for t in tables for a in t["Associations"] if a.get("SubnetId") == subnet]
    return own[0] if own else next(t for t in tables for a in t["Associations"] if a.get("Main"))


def internet_routes(table: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in table["Routes"] if str(r.get("GatewayId", "")).startswith("igw-")]


def default_route(table: dict[str, Any]) -> dict[str, Any] | None:
    return next((r for r in table["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"), None)


def nat_of(stage: Stage, zone: str) -> dict[str, Any]:
    return by_name(stage, "NAT gateway", f"{VPC}-nat-{zone}")


def stage_with(make_stage, config_copy, text: str, **kwargs: Any) -> Stage:
    return make_stage("dev", config_dir=config_copy("dev", text), **kwargs)


def test_the_stage_vpc_keeps_data_subnets_private_and_only_load_balancer_subnets_public(make_stage) -> None:
    stage = make_stage("dev")
    converge(stage, "network")
    ec2 = stage.client("ec2")
    vpc = stage_vpc(stage)

    found = ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]
    assert found["CidrBlock"] == "10.20.0.0/16" and not found["IsDefault"]
    assert ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsHostnames")["EnableDnsHostnames"][
        "Value"
    ]
    igw = by_name(stage, "internet gateway", f"{VPC}-igw")
    assert [a["VpcId"] for a in igw["Attachments"]] == [vpc]
    nat = nat_of(stage, "us-east-1a")
    public_ids = {by_name(stage, "subnet", name)["SubnetId"] for name in PUBLIC}
    assert nat["SubnetId"] in public_ids and nat["State"] == "available"
    address = by_name(stage, "Elastic IP", f"{VPC}-nat-us-east-1a")
    assert nat["NatGatewayAddresses"][0]["AllocationId"] == address["AllocationId"]

    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    tiers = {network._name_of(s): s for s in subnets}
    assert sorted(tiers) == sorted([*PRIVATE, *PUBLIC])
    for name, subnet in tiers.items():
        tags = {t["Key"]: t["Value"] for t in subnet["Tags"]}
        assert (tags["Stage"], tags["ManagedBy"], tags["Tier"]) == (
            "dev",
            "iotile-deploy",
            name.split("-")[3],
        )
        assert subnet["MapPublicIpOnLaunch"] is False
    assert sorted(tiers[name]["AvailabilityZone"] for name in PRIVATE) == list(ZONES)

    # The data subnets: no route to an internet gateway; out through the NAT gateway only.
    data_subnets = private_subnets(stage)
    assert subnet_group_members(stage)[DB] == data_subnets
    for subnet in data_subnets:
        table = table_of(stage, subnet)
        assert internet_routes(table) == [], table
        assert default_route(table)["NatGatewayId"] == nat["NatGatewayId"]
    network.require_private(stage, vpc, sorted(data_subnets))
    # The load balancers' subnets: out through the internet gateway.
    for subnet in public_ids:
        assert default_route(table_of(stage, subnet))["GatewayId"] == igw["InternetGatewayId"]
    with pytest.raises(AwsError, match="PublicSubnet"):
        network.require_private(stage, vpc, sorted(public_ids))


def test_prod_has_a_nat_gateway_per_zone_and_a_second_run_changes_nothing(make_stage, call_log) -> None:
    stage = make_stage("prod", log=call_log)
    outcome = converge(stage, "network")
    assert operations(outcome.resources).count("CreateNatGateway") == 2
    assert any(isinstance(step, Wait) for r in outcome.resources for step in r.steps)

    for zone in ZONES:
        nat = by_name(stage, "NAT gateway", f"iotile-cloud-prod-nat-{zone}")
        subnet = by_name(stage, "subnet", f"iotile-cloud-prod-private-{zone}")["SubnetId"]
        assert default_route(table_of(stage, subnet))["NatGatewayId"] == nat["NatGatewayId"]
        public = by_name(stage, "subnet", f"iotile-cloud-prod-public-{zone}")
        assert nat["SubnetId"] == public["SubnetId"]

    call_log.clear()
    again = converge(stage, "network")
    assert changed(again.resources) == []
    assert call_log.mutating == []


def test_changing_network_nat_reroutes_and_leaves_an_unused_nat_gateway_to_a_person(
    make_stage, config_copy
) -> None:
    stage = make_stage("dev")
    converge(stage, "network")
    per_zone = stage_with(make_stage, config_copy, "network:\n  nat: per_zone\n")

    outcome = converge(per_zone, "network")

    zone_b = f"{VPC}-private-us-east-1b-routes"
    assert changed(outcome.resources) == [f"{VPC}-nat-us-east-1b", zone_b]
    assert operations(outcome.resources) == ["AllocateAddress", "CreateNatGateway", "ReplaceRoute"]
    subnet_b = by_name(stage, "subnet", PRIVATE[1])["SubnetId"]
    assert (
        default_route(table_of(stage, subnet_b))["NatGatewayId"]
        == nat_of(stage, "us-east-1b")["NatGatewayId"]
    )

    back = converge(stage, "network")
    assert operations(back.resources) == ["ReplaceRoute"]
    unused = {r.name: r for r in back.resources}[f"{VPC}-nat-us-east-1b"]
    assert (unused.state, unused.steps) == ("drifted", ())
    assert "delete it (and release its Elastic IP) by hand" in unused.drift[0]
    assert (
        default_route(table_of(stage, subnet_b))["NatGatewayId"]
        == nat_of(stage, "us-east-1a")["NatGatewayId"]
    )


def test_without_nat_the_instances_reach_aws_through_endpoints(make_stage, config_copy, call_log) -> None:
    text = "network:\n  nat: none\n  endpoints: [ssm, sqs, ecr.dkr, dynamodb]\n"
    stage = stage_with(make_stage, config_copy, text, log=call_log)

    outcome = converge(stage, "network")

    assert "CreateNatGateway" not in operations(outcome.resources)
    for subnet in private_subnets(stage):
        table = table_of(stage, subnet)
        assert default_route(table) is None and internet_routes(table) == []
    data_id = group(stage, DATA)["GroupId"]
    for service in ("ssm", "sqs", "ecr.dkr"):
        found = {e["ServiceName"]: e for e in stage.client("ec2").describe_vpc_endpoints()["VpcEndpoints"]}[
            f"com.amazonaws.us-east-1.{service}"
        ]
        assert found["VpcEndpointType"] == "Interface" and found["PrivateDnsEnabled"] is True
        assert set(found["SubnetIds"]) == private_subnets(stage)
        assert [g["GroupId"] for g in found["Groups"]] == [data_id]
    dynamodb = {e["ServiceName"]: e for e in stage.client("ec2").describe_vpc_endpoints()["VpcEndpoints"]}[
        "com.amazonaws.us-east-1.dynamodb"
    ]
    assert dynamodb["VpcEndpointType"] == "Gateway"
    assert set(dynamodb["RouteTableIds"]) == {
        table_of(stage, s)["RouteTableId"] for s in private_subnets(stage)
    }

    call_log.clear()
    assert changed(converge(stage, "network").resources) == []
    assert call_log.mutating == []


def test_a_shared_nat_stage_that_drops_its_nat_loses_the_default_route(make_stage, config_copy) -> None:
    converge(make_stage("dev"), "network")
    none = stage_with(make_stage, config_copy, "network:\n  nat: none\n  endpoints: [ssm]\n")

    outcome = converge(none, "network")

    assert operations(outcome.resources).count("DeleteRoute") == 2
    for subnet in private_subnets(none):
        assert default_route(table_of(none, subnet)) is None


def test_a_nat_gateway_still_pending_is_awaited_not_made_again(make_stage) -> None:
    from moto.ec2.models import ec2_backends

    stage = make_stage("dev")
    converge(stage, "network")
    nat_id = nat_of(stage, "us-east-1a")["NatGatewayId"]
    ec2_backends[stage.account_id]["us-east-1"].nat_gateways[nat_id].state = "pending"

    resources = {r.name: r for r in network.plan(stage)}

    waiting = resources[f"{VPC}-nat-us-east-1a"]
    assert waiting.state == "pending" and [type(step) for step in waiting.steps] == [Wait]
    assert waiting.steps[0].probe(stage) == "pending"
    assert [r.name for r in resources.values() if r.steps] == [f"{VPC}-nat-us-east-1a"]


def test_private_subnets_made_public_by_hand_are_made_private_again(make_stage, call_log) -> None:
    stage = make_stage("dev")
    converge(stage, "network")
    ec2 = stage.client("ec2")
    igw = by_name(stage, "internet gateway", f"{VPC}-igw")["InternetGatewayId"]
    subnet_a, subnet_b = (by_name(stage, "subnet", name)["SubnetId"] for name in PRIVATE)
    table_a = table_of(stage, subnet_a)["RouteTableId"]
    ec2.replace_route(RouteTableId=table_a, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ec2.create_route(RouteTableId=table_a, DestinationCidrBlock="198.51.100.0/24", GatewayId=igw)
    public_table = by_name(stage, "route table", f"{VPC}-public-routes")["RouteTableId"]
    (association,) = [a for a in table_of(stage, subnet_b)["Associations"] if a.get("SubnetId") == subnet_b]
    ec2.replace_route_table_association(
        AssociationId=association["RouteTableAssociationId"], RouteTableId=public_table
    )
    with pytest.raises(AwsError, match="PublicSubnet"):
        network.require_private(stage, stage_vpc(stage), [subnet_a])

    shown = {r.name: r for r in network.plan(make_stage("dev", read_only=True, log=call_log))}
    assert call_log.mutating == []
    assert shown[f"{PRIVATE[0]}-routes"].state == shown[f"{PRIVATE[1]}-routes"].state == "drifted"

    drifted = converge(stage, "network")

    assert operations(drifted.resources) == ["ReplaceRoute", "DeleteRoute", "ReplaceRouteTableAssociation"]
    network.require_private(stage, stage_vpc(stage), sorted(private_subnets(stage)))
    assert network._name_of(table_of(stage, subnet_b)) == f"{PRIVATE[1]}-routes"
    assert changed(converge(stage, "network").resources) == []


def test_a_vpc_with_another_cidr_is_refused_before_any_change(make_stage, config_copy, call_log) -> None:
    converge(make_stage("dev"), "network")
    other = stage_with(make_stage, config_copy, "network:\n  cidr: 10.30.0.0/16\n", log=call_log)
    with pytest.raises(AwsError) as refused:
        converge(other, "network")
    assert refused.value.code == "VpcCidrMismatch" and "10.20.0.0/16" in refused.value.hint
    assert call_log.mutating == []


def test_the_local_stage_takes_the_same_path(make_stage) -> None:
    stage = make_stage("local")
    converge(stage, "network")
    vpc = by_name(stage, "VPC", "iotile-cloud-local")["VpcId"]
    assert network.vpc_id(stage) == vpc
    assert group(stage, "iotile-cloud-data-local")["VpcId"] == vpc
    assert changed(converge(stage, "network").resources) == []


# -- a VPC named in config -----------------------------------------------------------------------


def named_vpc(stage: Stage) -> dict[str, Any]:
    """A VPC as a team might have made it: an internet gateway, a public subnet, and three private
    ones (two zones) whose own route table has no way out."""
    ec2 = stage.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)

    def subnet(n: int, zone: str) -> str:
        return ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{n}.0/24", AvailabilityZone=zone)["Subnet"][
            "SubnetId"
        ]

    private = [subnet(n, zone) for n, zone in enumerate(("us-east-1a", "us-east-1b", "us-east-1a"))]
    public = subnet(10, "us-east-1b")
    quiet = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    for each in private:
        ec2.associate_route_table(RouteTableId=quiet, SubnetId=each)
    routes = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=routes, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ec2.associate_route_table(RouteTableId=routes, SubnetId=public)
    return {"vpc": vpc, "igw": igw, "private": private, "public": public, "public_table": routes}


def configured(make_stage, config_copy, vpc: str, subnets: list[str], **kwargs: Any) -> Stage:
    text = f"network:\n  vpc_id: {vpc}\n  subnet_ids: [{', '.join(subnets)}]\n"
    return make_stage("dev", config_dir=config_copy("dev", text), **kwargs)


def test_a_named_subnet_with_a_route_to_an_internet_gateway_is_refused_before_any_change(
    make_stage, config_copy, call_log
) -> None:
    made = named_vpc(make_stage("dev"))
    stage = configured(
        make_stage, config_copy, made["vpc"], [made["private"][0], made["public"]], log=call_log
    )

    with pytest.raises(AwsError) as refused:
        converge(stage, "network")

    assert refused.value.code == "PublicSubnet"
    line = str(refused.value)
    assert made["public"] in line and made["igw"] in line and made["public_table"] in line
    assert made["private"][0] not in line and "\n" not in line
    assert call_log.mutating == []
    with pytest.raises(AwsError, match=made["public"]):
        network.subnet_zones(stage, made["vpc"])  # the data stores' placement is refused too


def test_a_named_subnet_public_through_the_main_route_table_is_refused(
    make_stage, config_copy, call_log
) -> None:
    setup = make_stage("dev")
    made = named_vpc(setup)
    ec2 = setup.client("ec2")
    loose = ec2.create_subnet(VpcId=made["vpc"], CidrBlock="10.9.20.0/24", AvailabilityZone="us-east-1b")[
        "Subnet"
    ]["SubnetId"]
    (main,) = [t for t in tables_of(setup, made["vpc"]) for a in t["Associations"] if a.get("Main")]
    ec2.create_route(
        RouteTableId=main["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", GatewayId=made["igw"]
    )

    with pytest.raises(AwsError, match=f"subnet {loose} .* is public"):
        network.plan(
            configured(make_stage, config_copy, made["vpc"], [made["private"][0], loose], log=call_log)
        )
    assert call_log.mutating == []


def test_the_default_vpc_named_in_config_is_refused(make_stage, config_copy, call_log) -> None:
    setup = make_stage("dev")
    ec2 = setup.client("ec2")
    (default,) = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    subnets = sorted(
        s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [default["VpcId"]]}])["Subnets"]
    )
    stage = configured(make_stage, config_copy, default["VpcId"], subnets[:2], log=call_log)
    with pytest.raises(AwsError) as refused:
        converge(stage, "network")
    assert refused.value.code == "PublicSubnet" and subnets[0] in str(refused.value)
    assert call_log.mutating == []


def test_named_vpc_and_private_subnets_are_honoured(make_stage, config_copy, call_log) -> None:
    made = named_vpc(make_stage("dev"))
    chosen = made["private"][:2]
    stage = configured(make_stage, config_copy, made["vpc"], chosen, log=call_log)

    outcome = converge(stage, "network")

    kinds = {r.kind for r in outcome.resources}
    assert not kinds & {"VPC", "internet gateway", "private subnet", "NAT gateway", "route table"}
    assert group(stage, "iotile-cloud-app-dev")["VpcId"] == made["vpc"]
    assert subnet_group_members(stage)[DB] == set(chosen)
    assert network.vpc_id(stage) == made["vpc"]
    assert network.subnet_ids(stage) == sorted(chosen)
    (endpoint,) = stage.client("ec2").describe_vpc_endpoints()["VpcEndpoints"]
    assert set(endpoint["RouteTableIds"]) == {t["RouteTableId"] for t in tables_of(stage, made["vpc"])}
    call_log.clear()
    assert changed(converge(stage, "network").resources) == []
    assert call_log.mutating == []

    with pytest.raises(AwsError) as one_zone:
        network.plan(
            configured(make_stage, config_copy, made["vpc"], [made["private"][0], made["private"][2]])
        )
    assert one_zone.value.code == "TooFewZones"
    assert "network.subnet_ids" in one_zone.value.hint


def test_the_emulator_default_vpc_is_public_as_on_aws(make_stage) -> None:
    """deploy/emulator/fixes.py: moto's default VPC has no internet gateway; AWS's has one, routed."""
    stage = make_stage("dev")
    ec2 = stage.client("ec2")
    (default,) = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    (igw,) = ec2.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [default["VpcId"]]}]
    )["InternetGateways"]
    (main,) = [t for t in tables_of(stage, default["VpcId"]) for a in t["Associations"] if a.get("Main")]
    assert default_route(main)["GatewayId"] == igw["InternetGatewayId"]


def test_the_emulator_finds_nat_gateways_by_tag_as_aws_does(make_stage) -> None:
    """deploy/emulator/fixes.py: moto ignored tag filters of DescribeNatGateways (and returned all)."""
    stage = make_stage("prod")
    converge(stage, "network")
    ec2 = stage.client("ec2")
    assert len(ec2.describe_nat_gateways()["NatGateways"]) == 2
    name = "iotile-cloud-prod-nat-us-east-1b"
    (found,) = ec2.describe_nat_gateways(Filter=[{"Name": "tag:Name", "Values": [name]}])["NatGateways"]
    assert network._name_of(found) == name
    assert (
        ec2.describe_nat_gateways(Filter=[{"Name": "tag-key", "Values": ["NoSuchTag"]}])["NatGateways"] == []
    )


def test_a_subnet_group_left_in_another_vpc_is_drift_for_a_person_not_a_failing_call(make_stage) -> None:
    """An older deployment's DB subnet group, in the default VPC: AWS moves no subnet group across
    VPCs, so `up` shows it and leaves it, and makes everything else."""
    stage = make_stage("dev")
    ec2 = stage.client("ec2")
    (default,) = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    old = sorted(
        s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [default["VpcId"]]}])["Subnets"]
    )[:2]
    stage.client("rds").create_db_subnet_group(
        DBSubnetGroupName=DB, DBSubnetGroupDescription="by hand", SubnetIds=old
    )

    outcome = converge(stage, "network")

    left = {r.name: r for r in outcome.resources}[DB]
    assert (left.state, left.steps) == ("drifted", ())
    assert f"in VPC {default['VpcId']}, not the stage's VPC" in left.drift[0]
    assert subnet_group_members(stage)[DB] == set(old)
    assert subnet_group_members(stage)["iotile-cloud-cache-dev"] == private_subnets(stage)
    assert changed(converge(stage, "network").resources) == []
