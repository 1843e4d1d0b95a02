"""Network planner against moto: security groups with exact ingress, subnet groups, drift repaired."""

from __future__ import annotations

from typing import Any

import pytest

from deploy.areas import network
from deploy.errors import AwsError
from deploy.stage import Stage
from tests.helpers import changed, converge, operations

APP = "iotile-cloud-app-dev"
DATA = "iotile-cloud-data-dev"
DB = "iotile-cloud-db-dev"
REDSHIFT = "iotile-cloud-redshift-dev"
CACHE = "iotile-cloud-cache-dev"
DATA_PORTS = {5432, 6379, 5439, 443}


@pytest.fixture(autouse=True)
def no_default_amis(monkeypatch: pytest.MonkeyPatch) -> None:
    """This area needs no machine images: moto loading its thousands of default AMIs into every
    fresh EC2 backend is most of each test's time."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


def default_vpc(stage: Stage) -> str:
    vpcs = stage.client("ec2").describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    return vpcs[0]["VpcId"]


def vpc_subnets(stage: Stage, vpc: str) -> set[str]:
    found = stage.client("ec2").describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])
    return {subnet["SubnetId"] for subnet in found["Subnets"]}


def group(stage: Stage, name: str) -> dict[str, Any]:
    filters = [{"Name": "group-name", "Values": [name]}]
    (found,) = stage.client("ec2").describe_security_groups(Filters=filters)["SecurityGroups"]
    return found


def ingress(stage: Stage, group_id: str) -> list[dict[str, Any]]:
    filters = [{"Name": "group-id", "Values": [group_id]}]
    rules = stage.client("ec2").describe_security_group_rules(Filters=filters)["SecurityGroupRules"]
    return [rule for rule in rules if not rule["IsEgress"]]


def subnet_group_members(stage: Stage) -> dict[str, set[str]]:
    rds = stage.client("rds").describe_db_subnet_groups(DBSubnetGroupName=DB)["DBSubnetGroups"][0]
    redshift = stage.client("redshift").describe_cluster_subnet_groups(ClusterSubnetGroupName=REDSHIFT)
    cache = stage.client("elasticache").describe_cache_subnet_groups(CacheSubnetGroupName=CACHE)
    groups = {
        DB: rds,
        REDSHIFT: redshift["ClusterSubnetGroups"][0],
        CACHE: cache["CacheSubnetGroups"][0],
    }
    return {name: {s["SubnetIdentifier"] for s in found["Subnets"]} for name, found in groups.items()}


def assert_data_group_admits_only_app(stage: Stage) -> None:
    app_id, data = group(stage, APP)["GroupId"], group(stage, DATA)
    rules = ingress(stage, data["GroupId"])
    assert sorted(rule["FromPort"] for rule in rules) == sorted(DATA_PORTS)
    for rule in rules:
        assert (rule["IpProtocol"], rule["FromPort"]) == ("tcp", rule["ToPort"])
        assert rule["ReferencedGroupInfo"]["GroupId"] == app_id
        assert "CidrIpv4" not in rule and "CidrIpv6" not in rule and "PrefixListId" not in rule
    for permission in data["IpPermissions"]:
        assert permission.get("IpRanges", []) == [] and permission.get("Ipv6Ranges", []) == []


def test_creates_groups_in_the_default_vpc_and_subnet_groups_over_its_subnets(make_stage) -> None:
    stage = make_stage("dev")
    vpc = default_vpc(stage)

    outcome = converge(stage, "network")

    assert [r.name for r in outcome.resources] == [APP, DATA, DB, REDSHIFT, CACHE, f"s3-endpoint/{vpc}"]
    assert {r.state for r in outcome.resources} == {"missing"}
    app, data = group(stage, APP), group(stage, DATA)
    assert app["VpcId"] == data["VpcId"] == vpc
    tags = {tag["Key"]: tag["Value"] for tag in data["Tags"]}
    assert tags["Name"] == DATA and tags["Stage"] == "dev" and tags["ManagedBy"] == "iotile-deploy"
    assert ingress(stage, app["GroupId"]) == []  # SSH is off by default
    assert_data_group_admits_only_app(stage)
    assert data["IpPermissionsEgress"][0]["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}]  # egress left as is
    subnets = vpc_subnets(stage, vpc)
    assert subnet_group_members(stage) == {DB: subnets, REDSHIFT: subnets, CACHE: subnets}
    assert network.vpc_id(stage) == vpc
    assert network.subnet_ids(stage) == sorted(subnets)
    assert network.security_group_id(stage, DATA) == data["GroupId"]
    assert network.security_group_id(stage, "no-such-group") is None
    details = {r.name: r.detail for r in network.plan(stage)}
    assert details[APP] == f"{app['GroupId']} in {vpc}"
    assert details[DB] == f"{vpc}, {len(subnets)} subnets"


def test_second_run_and_dry_run_make_no_mutating_call(make_stage, call_log) -> None:
    preview = converge(make_stage("dev", read_only=True, log=call_log), "network", dry_run=True)
    assert operations(preview.resources) == [
        "CreateSecurityGroup",
        "CreateSecurityGroup",
        "AuthorizeSecurityGroupIngress",
        "CreateDBSubnetGroup",
        "CreateClusterSubnetGroup",
        "CreateCacheSubnetGroup",
        "CreateVpcEndpoint",
    ]
    authorize = preview.resources[1].steps[1]
    shown = authorize.shown_params()
    assert shown["GroupId"] == f"<id of security group {DATA}>"
    assert {p["UserIdGroupPairs"][0]["GroupId"] for p in shown["IpPermissions"]} == {
        f"<id of security group {APP}>"
    }
    assert preview.resources[1].depends_on == (APP,)
    assert call_log.mutating == []

    stage = make_stage("dev", log=call_log)
    converge(stage, "network")
    call_log.clear()
    again = converge(stage, "network")
    assert changed(again.resources) == []
    assert {r.state for r in again.resources} == {"present"}
    assert call_log.mutating == []


def test_data_group_drift_is_repaired_by_exactly_the_calls_needed(make_stage) -> None:
    stage = make_stage("dev")
    converge(stage, "network")
    ec2 = stage.client("ec2")
    data_id = group(stage, DATA)["GroupId"]
    kept = {rule["SecurityGroupRuleId"] for rule in ingress(stage, data_id)}
    world = {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    ec2.authorize_security_group_ingress(GroupId=data_id, IpPermissions=[world])
    (opened,) = [r["SecurityGroupRuleId"] for r in ingress(stage, data_id) if r.get("CidrIpv4")]

    drifted = converge(stage, "network")

    assert changed(drifted.resources) == [DATA]
    assert operations(drifted.resources) == ["RevokeSecurityGroupIngress"]
    step = drifted.resources[1].steps[0]
    assert step.params == {"GroupId": data_id, "SecurityGroupRuleIds": [opened]}
    assert "0.0.0.0/0" in step.reason
    assert {rule["SecurityGroupRuleId"] for rule in ingress(stage, data_id)} == kept
    assert_data_group_admits_only_app(stage)

    # Second kind of drift: a data port's rule removed, another port opened, a tag deleted.
    app_id = group(stage, APP)["GroupId"]
    from_app = [{"GroupId": app_id}]
    (redis,) = [r["SecurityGroupRuleId"] for r in ingress(stage, data_id) if r["FromPort"] == 6379]
    ec2.revoke_security_group_ingress(GroupId=data_id, SecurityGroupRuleIds=[redis])
    ec2.authorize_security_group_ingress(
        GroupId=data_id,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "UserIdGroupPairs": from_app}],
    )
    (extra,) = [r["SecurityGroupRuleId"] for r in ingress(stage, data_id) if r["FromPort"] == 8080]
    ec2.delete_tags(Resources=[data_id], Tags=[{"Key": "ManagedBy"}])

    drifted = converge(stage, "network")

    assert changed(drifted.resources) == [DATA]
    revoke_authorize = ["RevokeSecurityGroupIngress", "AuthorizeSecurityGroupIngress"]
    assert operations(drifted.resources) == ["CreateTags", *revoke_authorize]
    assert drifted.resources[1].steps[1].params["SecurityGroupRuleIds"] == [extra]
    authorize = drifted.resources[1].steps[2]
    (permission,) = authorize.params["IpPermissions"]
    assert (permission["FromPort"], permission["UserIdGroupPairs"][0]["GroupId"]) == (6379, app_id)
    assert permission["UserIdGroupPairs"][0]["Description"] == "iotile-deploy: redis from app"
    assert_data_group_admits_only_app(stage)
    assert {t["Key"] for t in group(stage, DATA)["Tags"]} >= {"ManagedBy", "Name", "Stage"}


def test_ssh_only_from_configured_cidrs(make_stage, config_copy, call_log) -> None:
    config = config_copy("dev", "network:\n  ssh_cidrs: ['10.1.0.0/16']\n")
    stage = make_stage("dev", config_dir=config, log=call_log)
    converge(stage, "network")
    app_id = group(stage, APP)["GroupId"]
    (ssh,) = ingress(stage, app_id)
    assert (ssh["IpProtocol"], ssh["FromPort"], ssh["ToPort"]) == ("tcp", 22, 22)
    assert ssh["CidrIpv4"] == "10.1.0.0/16"
    assert ssh["Description"] == "iotile-deploy: ssh from 10.1.0.0/16"
    assert_data_group_admits_only_app(stage)

    world = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    stage.client("ec2").authorize_security_group_ingress(GroupId=app_id, IpPermissions=[world])
    drifted = converge(stage, "network")
    assert operations(drifted.resources) == ["RevokeSecurityGroupIngress"]
    assert [rule["CidrIpv4"] for rule in ingress(stage, app_id)] == ["10.1.0.0/16"]

    call_log.clear()
    assert changed(converge(stage, "network").resources) == []
    assert call_log.mutating == []


def test_configured_vpc_and_subnets_are_honoured(make_stage, config_copy, call_log) -> None:
    default = make_stage("dev")
    ec2 = default.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{n}.0/24", AvailabilityZone=zone)["Subnet"]["SubnetId"]
        for n, zone in enumerate(("us-east-1a", "us-east-1b", "us-east-1a"))
    ]
    chosen = subnets[:2]

    def configured(ids: list[str]) -> Stage:
        text = f"network:\n  vpc_id: {vpc}\n  subnet_ids: [{', '.join(ids)}]\n"
        return make_stage("dev", config_dir=config_copy("dev", text), log=call_log)

    stage = configured(chosen)
    converge(stage, "network")

    assert group(stage, APP)["VpcId"] == group(stage, DATA)["VpcId"] == vpc
    expected = set(chosen)
    assert subnet_group_members(stage) == {DB: expected, REDSHIFT: expected, CACHE: expected}
    assert network.vpc_id(stage) == vpc
    assert network.subnet_ids(stage) == sorted(chosen)
    assert changed(converge(stage, "network").resources) == []

    call_log.clear()
    with pytest.raises(AwsError) as one_zone:
        network.plan(configured([subnets[0], subnets[2]]))
    assert one_zone.value.code == "TooFewZones"
    assert "network.subnet_ids" in one_zone.value.hint
    assert call_log.mutating == []

    default_vpc_id = default_vpc(default)
    for subnet in vpc_subnets(default, default_vpc_id):
        ec2.delete_subnet(SubnetId=subnet)
    ec2.delete_vpc(VpcId=default_vpc_id)
    with pytest.raises(AwsError) as no_default:
        network.plan(default)
    assert no_default.value.code == "NoDefaultVpc"
    assert "network.vpc_id" in no_default.value.hint
    assert changed(converge(stage, "network").resources) == []  # the configured VPC needs no default


def test_subnet_removed_from_db_subnet_group_by_hand_is_restored(make_stage) -> None:
    stage = make_stage("dev")
    converge(stage, "network")
    subnets = sorted(vpc_subnets(stage, default_vpc(stage)))
    stage.client("rds").modify_db_subnet_group(DBSubnetGroupName=DB, SubnetIds=subnets[1:])

    drifted = converge(stage, "network")

    assert changed(drifted.resources) == [DB]
    (step,) = drifted.resources[2].steps
    assert step.operation == "ModifyDBSubnetGroup"
    assert step.params == {"DBSubnetGroupName": DB, "SubnetIds": subnets}
    assert subnets[0] in step.reason
    assert subnet_group_members(stage)[DB] == set(subnets)
    assert changed(converge(stage, "network").resources) == []


def test_redshift_and_cache_subnet_drift_is_repaired(make_stage, call_log) -> None:
    setup = make_stage("dev")
    subnets = sorted(vpc_subnets(setup, default_vpc(setup)))
    setup.client("redshift").create_cluster_subnet_group(
        ClusterSubnetGroupName=REDSHIFT, Description="by hand", SubnetIds=subnets[:2]
    )
    setup.client("elasticache").create_cache_subnet_group(
        CacheSubnetGroupName=CACHE, CacheSubnetGroupDescription="by hand", SubnetIds=subnets[:2]
    )

    stage = make_stage("dev", read_only=True, log=call_log)
    preview = converge(stage, "network", dry_run=True)

    by_name = {r.name: r for r in preview.resources}
    assert operations([by_name[REDSHIFT]]) == ["ModifyClusterSubnetGroup", "CreateTags"]
    assert by_name[REDSHIFT].steps[0].params == {"ClusterSubnetGroupName": REDSHIFT, "SubnetIds": subnets}
    assert operations([by_name[CACHE]]) == ["ModifyCacheSubnetGroup", "AddTagsToResource"]
    assert by_name[CACHE].steps[0].params == {"CacheSubnetGroupName": CACHE, "SubnetIds": subnets}
    assert call_log.mutating == []

    converge(setup, "network")

    members = subnet_group_members(setup)
    assert members[REDSHIFT] == members[CACHE] == set(subnets)
    redshift = setup.client("redshift").describe_cluster_subnet_groups(ClusterSubnetGroupName=REDSHIFT)
    assert {t["Key"] for t in redshift["ClusterSubnetGroups"][0]["Tags"]} >= {"ManagedBy", "Stage"}
    call_log.clear()
    again = converge(make_stage("dev", log=call_log), "network")
    assert changed(again.resources) == []
    assert call_log.mutating == []


def test_s3_gateway_endpoint_serves_every_route_table_of_the_vpc(make_stage) -> None:
    stage = make_stage("dev")
    vpc = default_vpc(stage)
    ec2 = stage.client("ec2")
    extra = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]

    converge(stage, "network")

    tables = {
        t["RouteTableId"]
        for t in ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"]
    }
    (endpoint,) = ec2.describe_vpc_endpoints()["VpcEndpoints"]
    assert (endpoint["ServiceName"], endpoint["VpcEndpointType"]) == ("com.amazonaws.us-east-1.s3", "Gateway")
    assert set(endpoint["RouteTableIds"]) == tables and extra in tables
    assert changed(converge(make_stage("prod"), "network").resources) == [
        name
        for name in (
            "iotile-cloud-app-prod",
            "iotile-cloud-data-prod",
            "iotile-cloud-db-prod",
            "iotile-cloud-redshift-prod",
            "iotile-cloud-cache-prod",
        )
    ], "another stage in the same VPC shares the endpoint"

    ec2.modify_vpc_endpoint(VpcEndpointId=endpoint["VpcEndpointId"], RemoveRouteTableIds=[extra])
    drifted = converge(stage, "network")

    assert operations(drifted.resources) == ["ModifyVpcEndpoint"]
    (endpoint,) = ec2.describe_vpc_endpoints()["VpcEndpoints"]
    assert extra in endpoint["RouteTableIds"]
    assert changed(converge(stage, "network").resources) == []
