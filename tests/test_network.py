"""Network planner against moto: security groups with exact ingress and egress, subnet groups on
the private subnets, the S3 endpoint and its policy, drift shown and repaired."""

from __future__ import annotations

import json
from typing import Any

import pytest

from deploy.areas import network
from deploy.config import load_config
from deploy.errors import ConfigError
from deploy.plan import Deferred
from deploy.stage import Stage
from tests.helpers import changed, converge, operations

APP = "iotile-cloud-app-dev"
DATA = "iotile-cloud-data-dev"
DB = "iotile-cloud-db-dev"
REDSHIFT = "iotile-cloud-redshift-dev"
CACHE = "iotile-cloud-cache-dev"
VPC = "iotile-cloud-dev"
ENDPOINT = f"{VPC}-s3"
DATA_PORTS = {5432, 6379, 5439, 443}
ZONES = ("us-east-1a", "us-east-1b")
PRIVATE = [f"{VPC}-private-{zone}" for zone in ZONES]


@pytest.fixture(autouse=True)
def no_default_amis(monkeypatch: pytest.MonkeyPatch) -> None:
    """This area needs no machine images: moto loading its thousands of default AMIs into every
    fresh EC2 backend is most of each test's time."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


def by_name(stage: Stage, kind: str, name: str) -> dict[str, Any]:
    method, key, _ = network.FINDERS[kind]
    param = "Filter" if kind == "NAT gateway" else "Filters"
    found = getattr(stage.client("ec2"), method)(**{param: [{"Name": "tag:Name", "Values": [name]}]})[key]
    (item,) = [i for i in found if i.get("State") not in ("deleted", "deleting")]
    return item


def stage_vpc(stage: Stage) -> str:
    return by_name(stage, "VPC", VPC)["VpcId"]


def private_subnets(stage: Stage) -> set[str]:
    return {by_name(stage, "subnet", name)["SubnetId"] for name in PRIVATE}


def group(stage: Stage, name: str) -> dict[str, Any]:
    filters = [{"Name": "group-name", "Values": [name]}]
    (found,) = stage.client("ec2").describe_security_groups(Filters=filters)["SecurityGroups"]
    return found


def rules(stage: Stage, group_id: str, *, egress: bool = False) -> list[dict[str, Any]]:
    filters = [{"Name": "group-id", "Values": [group_id]}]
    found = stage.client("ec2").describe_security_group_rules(Filters=filters)["SecurityGroupRules"]
    return [rule for rule in found if rule["IsEgress"] == egress]


def ingress(stage: Stage, group_id: str) -> list[dict[str, Any]]:
    return rules(stage, group_id)


def egress(stage: Stage, name: str) -> set[tuple[str, int, int, str]]:
    """(protocol, from, to, peer) of every egress rule of group `name`."""
    return {
        (
            r["IpProtocol"],
            r["FromPort"],
            r["ToPort"],
            r.get("CidrIpv4")
            or r.get("CidrIpv6")
            or r.get("PrefixListId")
            or r.get("ReferencedGroupInfo", {}).get("GroupId"),
        )
        for r in rules(stage, group(stage, name)["GroupId"], egress=True)
    }


def s3_prefix_list(stage: Stage) -> str:
    filters = [{"Name": "prefix-list-name", "Values": ["com.amazonaws.us-east-1.s3"]}]
    (found,) = stage.client("ec2").describe_managed_prefix_lists(Filters=filters)["PrefixLists"]
    return found["PrefixListId"]


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
    found = ingress(stage, data["GroupId"])
    assert sorted(rule["FromPort"] for rule in found) == sorted(DATA_PORTS)
    for rule in found:
        assert (rule["IpProtocol"], rule["FromPort"]) == ("tcp", rule["ToPort"])
        assert rule["ReferencedGroupInfo"]["GroupId"] == app_id
        assert "CidrIpv4" not in rule and "CidrIpv6" not in rule and "PrefixListId" not in rule
    for permission in data["IpPermissions"]:
        assert permission.get("IpRanges", []) == [] and permission.get("Ipv6Ranges", []) == []


def expected_egress(stage: Stage, *, http: bool = False) -> dict[str, set[tuple[str, int, int, str]]]:
    data_id = group(stage, DATA)["GroupId"]
    app = {("tcp", 443, 443, "0.0.0.0/0"), *(("tcp", port, port, data_id) for port in DATA_PORTS)}
    if http:
        app.add(("tcp", 80, 80, "0.0.0.0/0"))
    return {APP: app, DATA: {("tcp", 443, 443, s3_prefix_list(stage))}}


def endpoint(stage: Stage, service: str = "s3") -> dict[str, Any]:
    name = f"com.amazonaws.us-east-1.{service}"
    (found,) = [
        e for e in stage.client("ec2").describe_vpc_endpoints()["VpcEndpoints"] if e["ServiceName"] == name
    ]
    return found


def test_creates_groups_in_the_stage_vpc_and_subnet_groups_over_its_private_subnets(make_stage) -> None:
    stage = make_stage("dev")

    outcome = converge(stage, "network")

    assert {r.state for r in outcome.resources} == {"missing"}
    vpc = stage_vpc(stage)
    default = stage.client("ec2").describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    assert vpc != default[0]["VpcId"], "never the default VPC"
    app, data = group(stage, APP), group(stage, DATA)
    assert app["VpcId"] == data["VpcId"] == vpc
    tags = {tag["Key"]: tag["Value"] for tag in data["Tags"]}
    assert tags["Name"] == DATA and tags["Stage"] == "dev" and tags["ManagedBy"] == "iotile-deploy"
    assert ingress(stage, app["GroupId"]) == []  # SSH is off by default
    assert_data_group_admits_only_app(stage)
    subnets = private_subnets(stage)
    assert subnet_group_members(stage) == {DB: subnets, REDSHIFT: subnets, CACHE: subnets}
    assert network.vpc_id(stage) == vpc
    assert network.subnet_ids(stage) == sorted(subnets)
    zones = network.subnet_zones(stage, vpc)
    assert set(zones) == subnets and sorted(zones.values()) == list(ZONES)
    assert network.security_group_id(stage, DATA) == data["GroupId"]
    assert network.security_group_id(stage, "no-such-group") is None
    details = {r.name: r.detail for r in network.plan(stage)}
    assert details[APP] == f"{app['GroupId']} in {vpc}"
    assert details[DB] == f"{vpc}, 2 subnets"


def test_egress_is_exactly_as_configured(make_stage, config_copy) -> None:
    stage = make_stage("dev")
    converge(stage, "network")

    assert {APP: egress(stage, APP), DATA: egress(stage, DATA)} == expected_egress(stage)
    for permission in group(stage, APP)["IpPermissionsEgress"]:
        peers = [*permission["IpRanges"], *permission["UserIdGroupPairs"]]
        assert peers and all(peer["Description"].startswith("iotile-deploy: ") for peer in peers)

    # Port 80 only when config says so, added to the same groups by one call.
    http = make_stage("dev", config_dir=config_copy("dev", "network:\n  http_egress: true\n"))
    again = converge(http, "network")
    assert operations(again.resources) == ["AuthorizeSecurityGroupEgress"]
    assert changed(again.resources) == [f"{APP}/egress"]
    assert {APP: egress(http, APP), DATA: egress(http, DATA)} == expected_egress(http, http=True)
    assert changed(converge(stage, "network").resources) == [f"{APP}/egress"], "and back off"
    assert egress(stage, APP) == expected_egress(stage)[APP]


def test_second_run_and_dry_run_make_no_mutating_call(make_stage, call_log) -> None:
    preview = converge(make_stage("dev", read_only=True, log=call_log), "network", dry_run=True)
    assert call_log.mutating == []
    by_resource = {r.name: operations([r]) for r in preview.resources}
    assert by_resource[APP] == ["CreateSecurityGroup"]
    assert by_resource[DATA] == ["CreateSecurityGroup", "AuthorizeSecurityGroupIngress"]
    assert (
        by_resource[f"{APP}/egress"]
        == by_resource[f"{DATA}/egress"]
        == [
            "RevokeSecurityGroupEgress",
            "AuthorizeSecurityGroupEgress",
        ]
    )
    assert by_resource[DB] == ["CreateDBSubnetGroup"]
    assert by_resource[ENDPOINT] == ["CreateVpcEndpoint"]
    resources = {r.name: r for r in preview.resources}
    authorize = resources[DATA].steps[1].shown_params()
    assert authorize["GroupId"] == f"<id of security group {DATA}>"
    assert {p["UserIdGroupPairs"][0]["GroupId"] for p in authorize["IpPermissions"]} == {
        f"<id of security group {APP}>"
    }
    assert resources[APP].steps[0].shown_params()["VpcId"] == f"<id of VPC {VPC}>"
    assert resources[DATA].depends_on == (VPC, APP)
    assert resources[f"{APP}/egress"].depends_on == (APP, DATA)
    create_db = resources[DB].steps[0].shown_params()
    assert create_db["SubnetIds"] == f"<ids of subnets {', '.join(PRIVATE)}>"
    assert set(resources[DB].depends_on) == set(PRIVATE)

    stage = make_stage("dev", log=call_log)
    converge(stage, "network")
    call_log.clear()
    again = converge(stage, "network")
    assert changed(again.resources) == []
    assert {r.state for r in again.resources} == {"present"}
    assert call_log.mutating == []


def test_lookups_before_the_vpc_exists_are_deferred_and_sortable(make_stage, call_log) -> None:
    """What rds, redshift, redis and search read while planning a stage whose VPC is not made yet
    (a dry run of `up`): no group, and one subnet per zone that a later call resolves."""
    stage = make_stage("dev", read_only=True, log=call_log)
    vpc = network.vpc_id(stage)
    assert isinstance(vpc, Deferred)
    assert network.security_group_id(stage, DATA) is None
    assert network.security_group_id(stage, DATA, vpc=vpc) is None
    zones = network.subnet_zones(stage, vpc)
    assert sorted(zones.values()) == list(ZONES)
    assert [str(subnet) for subnet in sorted(zones)] == [f"<id of subnet {name}>" for name in PRIVATE]
    assert call_log.mutating == []

    converge(make_stage("dev"), "network")
    resolved = sorted(subnet.resolve(stage) for subnet in zones)
    assert resolved == network.subnet_ids(stage)


def test_hand_made_egress_rule_is_drift_and_converging_removes_it(make_stage, call_log) -> None:
    stage = make_stage("dev")
    converge(stage, "network")
    ec2 = stage.client("ec2")
    data_id = group(stage, DATA)["GroupId"]
    everything = {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    ec2.authorize_security_group_egress(GroupId=data_id, IpPermissions=[everything])
    (opened,) = [r["SecurityGroupRuleId"] for r in rules(stage, data_id, egress=True) if r.get("CidrIpv4")]

    # status: the area's plan, reading only, shows the rule as drift.
    shown = {r.name: r for r in network.plan(make_stage("dev", read_only=True, log=call_log))}
    assert call_log.mutating == []
    assert shown[f"{DATA}/egress"].state == "drifted"
    assert shown[f"{DATA}/egress"].drift == ("egress not in config: all traffic to 0.0.0.0/0",)
    assert [r.name for r in shown.values() if r.state != "present"] == [f"{DATA}/egress"]

    drifted = converge(stage, "network")

    assert changed(drifted.resources) == [f"{DATA}/egress"]
    (step,) = [s for r in drifted.resources for s in r.steps]
    assert (step.operation, step.params) == (
        "RevokeSecurityGroupEgress",
        {"GroupId": data_id, "SecurityGroupRuleIds": [opened]},
    )
    assert {APP: egress(stage, APP), DATA: egress(stage, DATA)} == expected_egress(stage)

    # A rule of config removed by hand comes back; an extra port to the data group goes.
    app_id = group(stage, APP)["GroupId"]
    (https,) = [r["SecurityGroupRuleId"] for r in rules(stage, app_id, egress=True) if r.get("CidrIpv4")]
    ec2.revoke_security_group_egress(GroupId=app_id, SecurityGroupRuleIds=[https])
    to_data = [{"GroupId": data_id}]
    ec2.authorize_security_group_egress(
        GroupId=app_id,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "UserIdGroupPairs": to_data}],
    )
    drifted = converge(stage, "network")
    assert operations(drifted.resources) == ["RevokeSecurityGroupEgress", "AuthorizeSecurityGroupEgress"]
    assert egress(stage, APP) == expected_egress(stage)[APP]
    assert changed(converge(stage, "network").resources) == []


def test_data_group_ingress_drift_is_repaired_by_exactly_the_calls_needed(make_stage) -> None:
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
    (step,) = operations_steps = [s for r in drifted.resources for s in r.steps]
    assert operations_steps[0].params == {"GroupId": data_id, "SecurityGroupRuleIds": [opened]}
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
    steps = [s for r in drifted.resources for s in r.steps]
    assert [s.operation for s in steps] == [
        "CreateTags",
        "RevokeSecurityGroupIngress",
        "AuthorizeSecurityGroupIngress",
    ]
    assert steps[1].params["SecurityGroupRuleIds"] == [extra]
    (permission,) = steps[2].params["IpPermissions"]
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


def test_subnet_removed_from_db_subnet_group_by_hand_is_restored(make_stage) -> None:
    stage = make_stage("dev")
    converge(stage, "network")
    subnets = sorted(private_subnets(stage))
    stage.client("rds").modify_db_subnet_group(DBSubnetGroupName=DB, SubnetIds=subnets[1:])

    drifted = converge(stage, "network")

    assert changed(drifted.resources) == [DB]
    (step,) = [s for r in drifted.resources for s in r.steps]
    assert step.operation == "ModifyDBSubnetGroup"
    assert step.params == {"DBSubnetGroupName": DB, "SubnetIds": subnets}
    assert subnets[0] in step.reason
    assert subnet_group_members(stage)[DB] == set(subnets)
    assert changed(converge(stage, "network").resources) == []


def test_redshift_and_cache_subnet_drift_is_repaired(make_stage, call_log) -> None:
    setup = make_stage("dev")
    converge(setup, "network")
    subnets = sorted(private_subnets(setup))
    public = by_name(setup, "subnet", f"{VPC}-public-us-east-1a")["SubnetId"]
    setup.client("redshift").modify_cluster_subnet_group(
        ClusterSubnetGroupName=REDSHIFT, SubnetIds=[subnets[0], public]
    )
    setup.client("elasticache").modify_cache_subnet_group(CacheSubnetGroupName=CACHE, SubnetIds=[public])
    setup.client("elasticache").remove_tags_from_resource(
        ResourceName=setup.client("elasticache").describe_cache_subnet_groups(CacheSubnetGroupName=CACHE)[
            "CacheSubnetGroups"
        ][0]["ARN"],
        TagKeys=["Stage"],
    )

    stage = make_stage("dev", read_only=True, log=call_log)
    preview = converge(stage, "network", dry_run=True)

    resources = {r.name: r for r in preview.resources}
    assert operations([resources[REDSHIFT]]) == ["ModifyClusterSubnetGroup"]
    assert resources[REDSHIFT].steps[0].params == {"ClusterSubnetGroupName": REDSHIFT, "SubnetIds": subnets}
    assert f"-{public}" in resources[REDSHIFT].steps[0].reason
    assert operations([resources[CACHE]]) == ["ModifyCacheSubnetGroup", "AddTagsToResource"]
    assert resources[CACHE].steps[0].params == {"CacheSubnetGroupName": CACHE, "SubnetIds": subnets}
    assert call_log.mutating == []

    converge(setup, "network")

    members = subnet_group_members(setup)
    assert members[REDSHIFT] == members[CACHE] == set(subnets)
    call_log.clear()
    again = converge(make_stage("dev", log=call_log), "network")
    assert changed(again.resources) == []
    assert call_log.mutating == []


def test_s3_gateway_endpoint_serves_the_private_route_tables_and_only_the_buckets_in_use(make_stage) -> None:
    stage = make_stage("dev")
    converge(stage, "network")
    ec2 = stage.client("ec2")

    found = endpoint(stage)
    tables = {by_name(stage, "route table", f"{name}-routes")["RouteTableId"] for name in PRIVATE}
    assert (found["VpcId"], found["VpcEndpointType"]) == (stage_vpc(stage), "Gateway")
    assert set(found["RouteTableIds"]) == tables
    tags = {tag["Key"]: tag["Value"] for tag in found["Tags"]}
    assert (tags["Name"], tags["Stage"]) == (ENDPOINT, "dev")

    policy = json.loads(found["PolicyDocument"])
    resources = [r for statement in policy["Statement"] for r in statement["Resource"]]
    assert "*" not in resources and all(r.startswith("arn:aws:s3:::") for r in resources)
    assert all(s["Effect"] == "Allow" and s["Principal"] == "*" for s in policy["Statement"])
    statements = {s["Sid"]: s for s in policy["Statement"]}
    buckets = stage.config.s3.buckets
    configured = {getattr(buckets, key).name for key in type(buckets).model_fields}
    named = {
        r.removeprefix("arn:aws:s3:::").removesuffix("/*") for r in statements["StageBuckets"]["Resource"]
    }
    assert named == {*configured, f"elasticbeanstalk-us-east-1-{stage.account_id}"}
    assert statements["AwsReadOnly"]["Action"] == "s3:GetObject"
    assert "arn:aws:s3:::prod-us-east-1-starport-layer-bucket/*" in statements["AwsReadOnly"]["Resource"]
    assert "arn:aws:s3:::al2023-repos-us-east-1-de612dc2/*" in statements["AwsReadOnly"]["Resource"]
    assert statements["AwsSignals"]["Action"] == "s3:PutObject"

    # Back to AWS's default policy (everything, any bucket) by hand: one call sets it again.
    full = {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}]}
    ec2.modify_vpc_endpoint(VpcEndpointId=found["VpcEndpointId"], PolicyDocument=json.dumps(full))
    route_table = sorted(tables)[0]
    ec2.modify_vpc_endpoint(VpcEndpointId=found["VpcEndpointId"], RemoveRouteTableIds=[route_table])

    drifted = converge(stage, "network")

    assert changed(drifted.resources) == [ENDPOINT]
    steps = drifted.resources[[r.name for r in drifted.resources].index(ENDPOINT)].steps
    assert [(s.operation, sorted(s.params)) for s in steps] == [
        ("ModifyVpcEndpoint", ["AddRouteTableIds", "VpcEndpointId"]),
        ("ModifyVpcEndpoint", ["PolicyDocument", "VpcEndpointId"]),
    ]
    assert json.loads(endpoint(stage)["PolicyDocument"]) == policy
    assert set(endpoint(stage)["RouteTableIds"]) == tables
    assert changed(converge(stage, "network").resources) == []


def test_the_endpoint_policy_names_buckets_in_the_stage_partition(make_stage, config_copy) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", "region: cn-north-1\n"))
    policy = network.s3_endpoint_policy(stage)
    resources = [r for statement in policy["Statement"] for r in statement["Resource"]]
    assert resources and all(r.startswith("arn:aws-cn:s3:::") for r in resources)
    assert "arn:aws-cn:s3:::prod-cn-north-1-starport-layer-bucket/*" in resources
    assert network.service_name(stage, "s3") == "cn.com.amazonaws.cn-north-1.s3"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("network:\n  vpc_id: vpc-0123456789abcdef0\n", "network", "needs network.subnet_ids"),
        ("network:\n  subnet_ids: [subnet-0123456789abcdef0]\n", "network", "needs network.vpc_id"),
        ("network:\n  cidr: 10.0.0.0/8\n", "network.cidr", "from /16 to /22"),
        ("network:\n  cidr: 8.8.0.0/16\n", "network.cidr", "inside 10.0.0.0/8"),
        ("network:\n  cidr: 10.0.0.1/16\n", "network.cidr", "is not a network"),
        ("network:\n  zones: 1\n", "network.zones", "greater than or equal to 2"),
        ("network:\n  nat: gateway\n", "network.nat", "per_zone"),
        ("network:\n  endpoints: ['not a service']\n", "network.endpoints.0", "pattern"),
    ],
)
def test_bad_network_config_fails_validation(config_copy, text: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config("dev", config_copy("dev", text))
    assert (error.value.path.endswith("dev.yaml"), error.value.key) == (True, key)
    assert problem in error.value.message
    assert "\n" not in str(error.value)


def test_every_stage_gets_its_own_vpc_by_default() -> None:
    for name in ("dev", "stage", "prod", "local"):
        net = load_config(name).network
        assert (net.vpc_id, net.subnet_ids, net.vpc_name) == (None, [], f"iotile-cloud-{name}")
        assert net.nat == ("per_zone" if name == "prod" else "shared")
