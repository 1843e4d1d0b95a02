"""Every resource on an emulator, by kind, named so two runs compare and a duplicate shows.

`inventory(endpoint_url)` lists each kind of resource the stack makes, as a sorted list of keys
built from names and tags, never from generated ids (`vpc-0a1b...`), so the inventory of one run
equals another's when both made the same things. A key listed twice is a duplicate: two security
groups of one name in one VPC, two distributions for one origin, a task definition registered
again. `duplicates(found)` names them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import boto3
from botocore.config import Config

REGION = "us-east-1"
Inventory = dict[str, list[str]]
OWN_PARAMETERS = [{"Key": "Name", "Option": "BeginsWith", "Values": ["/iotile"]}]


class Aws:
    """Clients of one emulator, made once each."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url
        self._clients: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service,
                endpoint_url=self.endpoint_url,
                region_name=REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                config=Config(retries={"mode": "standard", "total_max_attempts": 3}),
            )
        return self._clients[service]


def pages(client: Any, operation: str, key: str, **params: Any) -> Iterator[Any]:
    if client.can_paginate(operation):
        for page in client.get_paginator(operation).paginate(**params):
            yield from page.get(key, [])
    else:
        yield from getattr(client, operation)(**params).get(key, [])


def name_tag(tags: list[dict[str, str]] | None, default: str = "-") -> str:
    return next((t["Value"] for t in tags or [] if t["Key"] == "Name"), default)


# -- EC2 and the network --------------------------------------------------------------------------


def _vpc_names(aws: Aws) -> dict[str, str]:
    return {
        v["VpcId"]: name_tag(v.get("Tags"), "default" if v.get("IsDefault") else v["CidrBlock"])
        for v in pages(aws("ec2"), "describe_vpcs", "Vpcs")
    }


def network(aws: Aws) -> Inventory:
    ec2 = aws("ec2")
    vpcs = _vpc_names(aws)
    live = [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    instances = [
        f"{name_tag(i.get('Tags'))}@{vpcs.get(i.get('VpcId', ''), '-')}"
        for r in pages(ec2, "describe_instances", "Reservations", Filters=live)
        for i in r["Instances"]
    ]
    return {
        "vpcs": list(vpcs.values()),
        "subnets": [
            f"{vpcs[s['VpcId']]}/{name_tag(s.get('Tags'), s['CidrBlock'])}"
            for s in pages(ec2, "describe_subnets", "Subnets")
        ],
        "security_groups": [
            f"{vpcs.get(g.get('VpcId', ''), '-')}/{g['GroupName']}"
            for g in pages(ec2, "describe_security_groups", "SecurityGroups")
        ],
        "route_tables": [
            f"{vpcs[t['VpcId']]}/{name_tag(t.get('Tags'), 'main' if _is_main(t) else 'unnamed')}"
            for t in pages(ec2, "describe_route_tables", "RouteTables")
        ],
        "internet_gateways": [
            name_tag(g.get("Tags")) for g in pages(ec2, "describe_internet_gateways", "InternetGateways")
        ],
        "nat_gateways": [
            name_tag(g.get("Tags"))
            for g in pages(ec2, "describe_nat_gateways", "NatGateways")
            if g["State"] not in ("deleted", "deleting")
        ],
        "vpc_endpoints": [
            f"{vpcs.get(e['VpcId'], '-')}/{e['ServiceName']}"
            for e in pages(ec2, "describe_vpc_endpoints", "VpcEndpoints")
        ],
        "instances": instances,
        "launch_templates": [
            t["LaunchTemplateName"] for t in pages(ec2, "describe_launch_templates", "LaunchTemplates")
        ],
        "launch_template_versions": [
            f"{t['LaunchTemplateName']}:{v['VersionNumber']}"
            for t in pages(ec2, "describe_launch_templates", "LaunchTemplates")
            for v in ec2.describe_launch_template_versions(LaunchTemplateId=t["LaunchTemplateId"])[
                "LaunchTemplateVersions"
            ]
        ],
        "auto_scaling_groups": [
            g["AutoScalingGroupName"]
            for g in pages(aws("autoscaling"), "describe_auto_scaling_groups", "AutoScalingGroups")
        ],
    }


def _is_main(table: dict[str, Any]) -> bool:
    return any(a.get("Main") for a in table.get("Associations", []))


# -- compute and front end -------------------------------------------------------------------------


def compute(aws: Aws) -> Inventory:
    eb, ecs, lam = aws("elasticbeanstalk"), aws("ecs"), aws("lambda")
    clusters = list(pages(ecs, "list_clusters", "clusterArns"))
    functions = [f["FunctionName"] for f in pages(lam, "list_functions", "Functions")]
    return {
        "eb_applications": [a["ApplicationName"] for a in eb.describe_applications()["Applications"]],
        "eb_versions": [
            f"{v['ApplicationName']}/{v['VersionLabel']}"
            for v in eb.describe_application_versions()["ApplicationVersions"]
        ],
        "eb_environments": [
            e["EnvironmentName"]
            for e in eb.describe_environments()["Environments"]
            if e.get("Status") != "Terminated"
        ],
        "ecs_clusters": [_last(arn) for arn in clusters],
        "ecs_services": [
            f"{_last(cluster)}/{_last(arn)}"
            for cluster in clusters
            for arn in pages(ecs, "list_services", "serviceArns", cluster=cluster)
        ],
        "ecs_capacity_providers": [
            f"{c['clusterName']}/{name}"
            for c in (ecs.describe_clusters(clusters=clusters)["clusters"] if clusters else [])
            for name in c.get("capacityProviders", [])
        ],
        "task_definition_revisions": [
            _last(arn) for arn in pages(ecs, "list_task_definitions", "taskDefinitionArns", status="ACTIVE")
        ],
        "ecr_repositories": [
            r["repositoryName"] for r in pages(aws("ecr"), "describe_repositories", "repositories")
        ],
        "functions": functions,
        "function_versions": [
            f"{name}:{v['Version']}"
            for name in functions
            for v in pages(lam, "list_versions_by_function", "Versions", FunctionName=name)
        ],
        "event_source_mappings": [
            f"{_last(m['FunctionArn'])}<-{_last(m['EventSourceArn'])}"
            for m in pages(lam, "list_event_source_mappings", "EventSourceMappings")
        ],
        "rules": [r["Name"] for r in pages(aws("events"), "list_rules", "Rules")],
        "rule_targets": [
            f"{r['Name']}->{t['Id']}"
            for r in pages(aws("events"), "list_rules", "Rules")
            for t in aws("events").list_targets_by_rule(Rule=r["Name"])["Targets"]
        ],
        "log_groups": [g["logGroupName"] for g in pages(aws("logs"), "describe_log_groups", "logGroups")],
        **front_end(aws),
    }


def front_end(aws: Aws) -> Inventory:
    cloudfront, route53 = aws("cloudfront"), aws("route53")
    distributions = cloudfront.list_distributions()["DistributionList"].get("Items", [])
    controls = cloudfront.list_origin_access_controls()["OriginAccessControlList"].get("Items", [])
    zones = list(pages(route53, "list_hosted_zones", "HostedZones"))
    return {
        "distributions": [
            "|".join(sorted(d.get("Aliases", {}).get("Items", [])) or [d["Comment"]]) for d in distributions
        ],
        "origin_access_controls": [c["Name"] for c in controls],
        "hosted_zones": [z["Name"] for z in zones],
        "records": [
            f"{r['Name']} {r['Type']}"
            for z in zones
            for r in pages(route53, "list_resource_record_sets", "ResourceRecordSets", HostedZoneId=z["Id"])
        ],
        "certificates": [
            c["DomainName"] for c in pages(aws("acm"), "list_certificates", "CertificateSummaryList")
        ],
    }


# -- messaging, data stores, keys, identities -----------------------------------------------------


def data(aws: Aws) -> Inventory:
    sns = aws("sns")
    return {
        "queues": [_last(url) for url in aws("sqs").list_queues().get("QueueUrls", [])],
        "topics": [_last(t["TopicArn"]) for t in pages(sns, "list_topics", "Topics")],
        "subscriptions": [
            f"{_last(s['TopicArn'])}->{s['Protocol']}:{_last(s['Endpoint'])}"
            for s in pages(sns, "list_subscriptions", "Subscriptions")
        ],
        "tables": list(pages(aws("dynamodb"), "list_tables", "TableNames")),
        "buckets": [b["Name"] for b in aws("s3").list_buckets()["Buckets"]],
        "db_instances": [
            d["DBInstanceIdentifier"] for d in pages(aws("rds"), "describe_db_instances", "DBInstances")
        ],
        "db_subnet_groups": [
            g["DBSubnetGroupName"] for g in pages(aws("rds"), "describe_db_subnet_groups", "DBSubnetGroups")
        ],
        "redshift_clusters": [
            c["ClusterIdentifier"] for c in pages(aws("redshift"), "describe_clusters", "Clusters")
        ],
        "replication_groups": [
            g["ReplicationGroupId"]
            for g in pages(aws("elasticache"), "describe_replication_groups", "ReplicationGroups")
        ],
        "search_domains": [d["DomainName"] for d in aws("opensearch").list_domain_names()["DomainNames"]],
        "delivery_streams": aws("firehose").list_delivery_streams()["DeliveryStreamNames"],
        # The stack's own, not the thousands of public ones under /aws/ that moto lists too.
        "parameters": [
            p["Name"]
            for p in pages(aws("ssm"), "describe_parameters", "Parameters", ParameterFilters=OWN_PARAMETERS)
        ],
        "ses_identities": list(pages(aws("ses"), "list_identities", "Identities")),
    }


def identities(aws: Aws) -> Inventory:
    iam, kms = aws("iam"), aws("kms")
    keys = [k["KeyId"] for k in pages(kms, "list_keys", "Keys")]
    return {
        "keys": [
            kms.describe_key(KeyId=key)["KeyMetadata"].get("Description") or "(no description)"
            for key in keys
            if kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] != "PendingDeletion"
        ],
        "aliases": [a["AliasName"] for a in pages(kms, "list_aliases", "Aliases") if "TargetKeyId" in a],
        "roles": [r["RoleName"] for r in pages(iam, "list_roles", "Roles")],
        "policies": [p["PolicyName"] for p in pages(iam, "list_policies", "Policies", Scope="Local")],
        "policy_versions": [
            f"{p['PolicyName']}:{v['VersionId']}"
            for p in pages(iam, "list_policies", "Policies", Scope="Local")
            for v in iam.list_policy_versions(PolicyArn=p["Arn"])["Versions"]
        ],
        "instance_profiles": [
            p["InstanceProfileName"] for p in pages(iam, "list_instance_profiles", "InstanceProfiles")
        ],
        "groups": [g["GroupName"] for g in pages(iam, "list_groups", "Groups")],
    }


def _last(arn_or_url: str) -> str:
    return arn_or_url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1] if arn_or_url else "-"


READERS: tuple[Callable[[Aws], Inventory], ...] = (network, compute, data, identities)


def inventory(endpoint_url: str) -> Inventory:
    """Every kind of resource on the emulator at `endpoint_url`: kind -> sorted keys."""
    aws = Aws(endpoint_url)
    found: Inventory = {}
    for reader in READERS:
        found.update({kind: sorted(keys) for kind, keys in reader(aws).items()})
    return found


def duplicates(found: Inventory) -> dict[str, list[str]]:
    """The keys listed more than once, by kind (empty when there is no duplicate of any kind)."""
    twice = {kind: sorted(k for k, n in Counter(keys).items() if n > 1) for kind, keys in found.items()}
    return {kind: keys for kind, keys in twice.items() if keys}


def differences(found: Inventory, expected: Inventory) -> dict[str, tuple[list[str], list[str]]]:
    """Per kind: (keys only in `found`, keys only in `expected`), counting repeats."""
    diff = {}
    for kind in sorted(set(found) | set(expected)):
        have, want = Counter(found.get(kind, [])), Counter(expected.get(kind, []))
        extra, missing = sorted((have - want).elements()), sorted((want - have).elements())
        if extra or missing:
            diff[kind] = (extra, missing)
    return diff
