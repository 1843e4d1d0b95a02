"""Search planner against moto: an encrypted, HTTPS-only OpenSearch domain in the VPC that admits
only the roles holding the search policy; drift repaired by one update; busy domains only awaited."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from deploy.areas import network, search
from deploy.plan import Wait
from deploy.policies import normalised
from deploy.stage import Stage
from tests.helpers import changed, converge, operations

DOMAIN = "iotile-search-dev"


def domain(stage: Stage) -> dict[str, Any]:
    return stage.client("opensearch").describe_domain(DomainName=stage.config.search.domain)["DomainStatus"]


def moto_domain(stage: Stage) -> Any:
    from moto.opensearch.models import opensearch_backends

    return opensearch_backends[stage.account_id][stage.region].domains[stage.config.search.domain]


def principals(document: str) -> list[str]:
    (statement,) = json.loads(document)["Statement"]
    found = statement["Principal"]["AWS"]
    return sorted([found] if isinstance(found, str) else found)


def attached(stage: Stage, role: str) -> set[str]:
    found = stage.client("iam").list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    return {policy["PolicyArn"] for policy in found}


def ready(stage: Stage) -> None:
    """What the search domain needs from wave 1: the network, and the service-linked role the
    IAM area makes (AWS refuses a domain in a VPC without it, and so does the emulator)."""
    converge(stage, "network")
    stage.client("iam").create_service_linked_role(AWSServiceName="opensearchservice.amazonaws.com")


@pytest.fixture
def dev(make_stage) -> Stage:
    stage = make_stage("dev")
    ready(stage)
    return stage


@pytest.mark.aws_managed_policies
def test_creates_an_encrypted_https_only_domain_in_the_vpc_for_the_search_roles(make_stage) -> None:
    stage = make_stage("dev")
    converge(stage, "iam", "network")

    outcome = converge(stage, "search")

    assert [(r.name, r.state) for r in outcome.resources] == [(DOMAIN, "missing")]
    found, config = domain(stage), stage.config.search
    assert found["EngineVersion"] == config.engine_version
    assert found["EncryptionAtRestOptions"]["Enabled"] is True
    assert found["NodeToNodeEncryptionOptions"] == {"Enabled": True}
    assert found["DomainEndpointOptions"]["EnforceHTTPS"] is True
    assert found["DomainEndpointOptions"]["TLSSecurityPolicy"] == "Policy-Min-TLS-1-2-2019-07"
    cluster = found["ClusterConfig"]
    assert (cluster["InstanceType"], cluster["InstanceCount"]) == (config.instance_type, config.instances)
    assert cluster["ZoneAwarenessEnabled"] is True
    assert cluster["ZoneAwarenessConfig"] == {"AvailabilityZoneCount": 2}
    assert found["EBSOptions"] == {"EBSEnabled": True, "VolumeType": "gp3", "VolumeSize": config.volume_gb}

    data_group = network.security_group_id(stage, stage.config.network.data_security_group)
    assert found["VPCOptions"]["SecurityGroupIds"] == [data_group]
    subnets = found["VPCOptions"]["SubnetIds"]
    zones = network.subnet_zones(stage, network.vpc_id(stage))
    assert len(subnets) == 2 and len({zones[s] for s in subnets}) == 2
    assert "Endpoint" not in found, "a VPC domain has no public endpoint"

    # The principals are exactly the roles IAM now has with the search policy attached.
    iam = stage.client("iam")
    policy = f"arn:aws:iam::{stage.account_id}:policy/{stage.config.iam.search_policy}"
    holders = sorted(
        role["Arn"] for role in iam.list_roles()["Roles"] if policy in attached(stage, role["RoleName"])
    )
    assert holders == sorted(
        f"arn:aws:iam::{stage.account_id}:role/{name}"
        for name in (stage.config.iam.production_role, stage.config.iam.ecs_task_role)
    )
    assert principals(found["AccessPolicies"]) == holders
    (statement,) = json.loads(found["AccessPolicies"])["Statement"]
    assert statement["Effect"] == "Allow" and statement["Action"] == "es:ESHttp*"
    assert statement["Resource"] == f"{found['ARN']}/*"

    tags = stage.client("opensearch").list_tags(ARN=found["ARN"])["TagList"]
    assert {t["Key"]: t["Value"] for t in tags}["Stage"] == "dev"
    assert search.endpoint(stage) == found["Endpoints"]["vpc"]
    assert [r.detail for r in search.plan(stage)] == [f"{found['Endpoints']['vpc']}:443"]


def test_second_run_and_dry_run_make_no_mutating_call(make_stage, call_log) -> None:
    preview = converge(make_stage("dev", read_only=True, log=call_log), "search", dry_run=True)
    (resource,) = preview.resources
    assert operations(preview.resources) == ["CreateDomain"]
    assert isinstance(resource.steps[-1], Wait)
    vpc = resource.steps[0].shown_params()["VPCOptions"]
    assert vpc["SecurityGroupIds"] == ["<id of security group iotile-cloud-data-dev>"]
    assert call_log.mutating == []

    stage = make_stage("dev", log=call_log)
    ready(stage)
    converge(stage, "search")
    call_log.clear()
    again = converge(stage, "search")
    assert changed(again.resources) == []
    assert [r.state for r in again.resources] == ["present"]
    assert call_log.mutating == []


def test_access_policy_opened_to_everyone_and_http_allowed_are_set_back_by_one_update(
    dev: Stage, call_log
) -> None:
    converge(dev, "search")
    wanted = domain(dev)["AccessPolicies"]
    opened = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "es:*", "Resource": "*"}],
    }
    dev.client("opensearch").update_domain_config(
        DomainName=DOMAIN,
        AccessPolicies=json.dumps(opened),
        DomainEndpointOptions={"EnforceHTTPS": False, "TLSSecurityPolicy": "Policy-Min-TLS-1-0-2019-07"},
    )
    dev.on_call(call_log)

    drifted = converge(dev, "search")

    (resource,) = drifted.resources
    assert resource.state == "drifted"
    (update,) = resource.calls
    assert update.operation == "UpdateDomainConfig"
    assert set(update.params) == {"DomainName", "AccessPolicies", "DomainEndpointOptions"}
    assert call_log.mutating == [("opensearch", "UpdateDomainConfig")]
    found = domain(dev)
    assert normalised(json.loads(found["AccessPolicies"])) == normalised(json.loads(wanted))
    assert found["DomainEndpointOptions"]["EnforceHTTPS"] is True
    assert changed(converge(dev, "search").resources) == []


def test_smaller_cluster_and_lost_tag_are_set_back(dev: Stage) -> None:
    converge(dev, "search")
    client = dev.client("opensearch")
    client.update_domain_config(
        DomainName=DOMAIN,
        ClusterConfig={"InstanceType": "t3.small.search", "InstanceCount": 1, "ZoneAwarenessEnabled": False},
        EBSOptions={"EBSEnabled": True, "VolumeType": "gp2", "VolumeSize": 10},
    )
    client.remove_tags(ARN=domain(dev)["ARN"], TagKeys=["Stage"])

    drifted = converge(dev, "search")

    assert operations(drifted.resources) == ["UpdateDomainConfig", "AddTags"]
    update = drifted.resources[0].calls[0]
    assert set(update.params) == {"DomainName", "ClusterConfig", "EBSOptions"}
    found = domain(dev)
    assert (found["ClusterConfig"]["InstanceCount"], found["EBSOptions"]["VolumeType"]) == (2, "gp3")
    tags = client.list_tags(ARN=found["ARN"])["TagList"]
    assert {"Key": "Stage", "Value": "dev"} in tags


def test_a_processing_domain_is_only_awaited(dev: Stage) -> None:
    converge(dev, "search")
    moto_domain(dev).processing = True
    moto_domain(dev).access_policies = ""  # a change AWS is still applying

    (resource,) = search.plan(dev)

    assert resource.state == "pending"
    (wait,) = resource.steps
    assert isinstance(wait, Wait)
    assert wait.ready == {"active"} and "deleted" in wait.failed
    assert wait.timeout_seconds == dev.config.search.wait_minutes * 60
    assert wait.probe(dev) == "processing"
    moto_domain(dev).processing = False
    assert wait.probe(dev) == "active"


def test_one_instance_and_a_kms_key_from_config(make_stage, config_copy) -> None:
    small = config_copy("dev", "search:\n  instances: 1\n  kms_key: alias/iotile-search\n")
    stage = make_stage("dev", config_dir=small)
    ready(stage)
    kms = stage.client("kms")
    key = kms.create_key(Description="search")["KeyMetadata"]
    kms.create_alias(AliasName="alias/iotile-search", TargetKeyId=key["KeyId"])

    converge(stage, "search")

    found = domain(stage)
    assert found["ClusterConfig"]["ZoneAwarenessEnabled"] is False
    assert len(found["VPCOptions"]["SubnetIds"]) == 1
    assert found["EncryptionAtRestOptions"] == {"Enabled": True, "KmsKeyId": "alias/iotile-search"}
    moto_domain(stage).encryption_at_rest_options["KmsKeyId"] = key["Arn"]  # AWS reports the ARN
    assert [r.state for r in search.plan(stage)] == ["present"]
    moto_domain(stage).encryption_at_rest_options["KmsKeyId"] = "arn:aws:kms:us-east-1:123456789012:key/x"
    (resource,) = search.plan(stage)
    assert resource.state == "drifted" and resource.steps == ()
    assert any(reason.startswith("recreate needed: encrypted with") for reason in resource.drift)


def test_a_public_domain_is_reported_and_its_encryption_turned_on(dev: Stage) -> None:
    dev.client("opensearch").create_domain(
        DomainName=DOMAIN,
        EngineVersion="OpenSearch_2.13",
        ClusterConfig=search.cluster_config(search.domain_spec(dev)),
        EBSOptions={"EBSEnabled": True, "VolumeType": "gp3", "VolumeSize": 20},
    )

    (resource,) = search.plan(dev)

    assert resource.state == "drifted"
    assert "recreate needed: public endpoint, not in the VPC" in resource.drift
    assert operations([resource]) == ["UpdateDomainConfig", "AddTags"]
    update = resource.calls[0]
    assert update.params["NodeToNodeEncryptionOptions"] == {"Enabled": True}
    assert update.params["EncryptionAtRestOptions"] == {"Enabled": True}
    assert update.params["DomainEndpointOptions"]["EnforceHTTPS"] is True
    assert "AccessPolicies" in update.params
    assert "VPCOptions" not in update.params, "a public domain cannot be moved into a VPC"


def test_principals_follow_the_roles_iam_gives_the_search_policy(make_stage, monkeypatch) -> None:
    from deploy.areas import iam

    stage = make_stage("dev", read_only=True)
    roles = iam.role_specs(stage)
    assert search.search_principals(stage) == tuple(
        sorted(
            f"arn:aws:iam::{stage.account_id}:role/{name}"
            for name in (stage.config.iam.production_role, stage.config.iam.ecs_task_role)
        )
    )
    worker_only = [
        replace(role, customer_policies=()) if role.name == stage.config.iam.production_role else role
        for role in roles
    ]
    monkeypatch.setattr(iam, "role_specs", lambda _: worker_only)
    assert search.search_principals(stage) == (
        f"arn:aws:iam::{stage.account_id}:role/{stage.config.iam.ecs_task_role}",
    )


def test_old_elasticsearch_without_encryption_needs_a_new_domain(make_stage) -> None:
    stage = make_stage("dev", read_only=True)
    spec = search.domain_spec(stage)
    placement = search.Placement("sg-data", {"subnet-a": "us-east-1a", "subnet-b": "us-east-1b"})
    state = search.SearchState(
        True,
        status="active",
        arn=f"arn:aws:es:us-east-1:123456789012:domain/{DOMAIN}",
        engine_version="Elasticsearch_6.3",
        cluster=search.cluster_config(spec),
        ebs=search.ebs_options(spec),
        access_policy=search.access_policy(stage, spec),
        endpoint_options=search.endpoint_options(),
        vpc={"SubnetIds": ["subnet-a", "subnet-b"], "SecurityGroupIds": ["sg-data"]},
        tags=spec.tags,
    )

    resource = search.plan_domain(stage, spec, state, placement)

    assert resource.steps == ()
    assert "recreate needed: not encrypted at rest (Elasticsearch_6.3)" in resource.drift
    assert "recreate needed: no node-to-node encryption (Elasticsearch_6.3)" in resource.drift
    assert any(reason.startswith("engine Elasticsearch_6.3") for reason in resource.drift)
    current = replace(state, engine_version=spec.engine_version, node_to_node=True, at_rest={"Enabled": True})
    assert search.plan_domain(stage, spec, current, placement).state == "present"
    moved = replace(current, vpc={"SubnetIds": ["subnet-a"], "SecurityGroupIds": ["sg-data", "sg-x"]})
    (update,) = search.plan_domain(stage, spec, moved, placement).calls
    assert update.params["VPCOptions"] == {
        "SubnetIds": ["subnet-a", "subnet-b"],
        "SecurityGroupIds": ["sg-data"],
    }
