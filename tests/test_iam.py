"""IAM against moto: least-privilege documents (parliament finds nothing), converge and repair."""

from __future__ import annotations

import json

import pytest

from deploy import policies
from deploy.areas import iam
from deploy.config import load_config
from deploy.stage import Stage
from tests.conftest import CONFIG
from tests.helpers import changed, converge, operations

pytestmark = pytest.mark.aws_managed_policies

# Actions AWS only grants on "*": the only ones a statement may pair with Resource "*".
NO_RESOURCE_LEVEL = {
    "ecr:GetAuthorizationToken",
    "ecs:DiscoverPollEndpoint",
    "cloudwatch:PutMetricData",
    "cloudwatch:GetMetricData",
    "cloudwatch:ListMetrics",
}
STAGES = ["dev", "stage", "prod", "local"]
# The one wildcard action: the name AWS documents for publishing to an encrypted topic
# (GenerateDataKey and its variants), granted only through SNS.
WILDCARD_ACTIONS = {"kms:GenerateDataKey*"}


@pytest.fixture
def dev(make_stage, call_log) -> Stage:
    return make_stage("dev", log=call_log)


def documents(stage: Stage) -> dict[str, dict]:
    found = {f"policy/{spec.name}": spec.document for spec in iam.policy_specs(stage)}
    for spec in iam.role_specs(stage):
        found[f"trust/{spec.name}"] = spec.trust
    return found


def statements(document: dict) -> list[dict]:
    return document["Statement"]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("stage_name", STAGES)
def test_parliament_finds_nothing_in_any_rendered_document(make_stage, stage_name: str) -> None:
    import parliament

    stage = make_stage(stage_name)
    for name, document in documents(stage).items():
        if name.startswith("trust/"):
            # A trust policy has no Resource element (the role is the resource); give it one so
            # parliament checks everything else in it instead of stopping at that.
            role = iam.role_arn(stage, name.removeprefix("trust/"))
            document = {**document, "Statement": [{**s, "Resource": role} for s in statements(document)]}
        analysed = parliament.analyze_policy_string(json.dumps(document))
        findings = [(f.issue, f.detail) for f in analysed.findings]
        assert findings == [], f"{name}: {findings}"


@pytest.mark.parametrize("stage_name", STAGES)
def test_no_wildcard_actions_and_star_resources_only_where_aws_allows_nothing_else(
    make_stage, stage_name: str
) -> None:
    stage = make_stage(stage_name)
    for spec in iam.policy_specs(stage):
        for statement in statements(spec.document):
            actions = as_list(statement["Action"])
            wild = {action for action in actions if "*" in action}
            assert wild <= WILDCARD_ACTIONS, (spec.name, actions)
            if "*" in as_list(statement["Resource"]):
                assert set(actions) <= NO_RESOURCE_LEVEL, (spec.name, actions)


def test_documents_name_only_their_own_stage(make_stage) -> None:
    dev, prod = make_stage("dev"), make_stage("prod")
    dev_text = json.dumps([spec.document for spec in iam.policy_specs(dev)])
    prod_text = json.dumps([spec.document for spec in iam.policy_specs(prod)])
    assert "iotile-worker-dev" in dev_text and "iotile-worker-prod" not in dev_text
    assert "/iotile-cloud/prod/" in prod_text and "/iotile-cloud/dev" not in prod_text
    assert "iotile-cloud-media/dev/*" in dev_text and "iotile-cloud-media/prod/" not in dev_text
    assert ':deliverystream/iotile-stream-data-dev"' in dev_text


def test_stages_do_not_share_roles_except_the_beanstalk_service_role() -> None:
    names = {s: load_config(s, CONFIG).iam for s in STAGES}
    assert names["prod"].production_role == "IOTileProductionRole"
    assert names["prod"].dev_policy == "IOTileDevPolicy"
    for field in ("dev_group", "production_role", "ecs_instance_role", "eb_ec2_role", "production_policy"):
        assert len({getattr(names[s], field) for s in STAGES}) == len(STAGES), field
    assert len({names[s].eb_service_role for s in STAGES}) == 1


def test_creates_roles_profiles_policies_and_group(dev: Stage) -> None:
    converge(dev, "iam")

    client = dev.client("iam")
    config = dev.config.iam
    role = client.get_role(RoleName=config.production_role)["Role"]
    trust = statements(iam._document(role["AssumeRolePolicyDocument"]))
    assert trust[0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    attached = {
        p["PolicyName"]
        for p in client.list_attached_role_policies(RoleName=config.production_role)["AttachedPolicies"]
    }
    assert attached == {
        config.production_policy,
        config.credentials_policy,
        config.search_policy,
        config.beanstalk_instance_policy,
    }
    for name in (config.production_role, config.ecs_instance_role, config.eb_ec2_role):
        profile = client.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        assert [r["RoleName"] for r in profile["Roles"]] == [name]
    task_trust = iam._document(
        client.get_role(RoleName=config.ecs_task_role)["Role"]["AssumeRolePolicyDocument"]
    )
    assert statements(task_trust)[0]["Condition"]["StringEquals"] == {"aws:SourceAccount": dev.account_id}
    for _, name in config.lambda_roles:
        assert client.get_role(RoleName=name)["Role"]["RoleName"] == name
    group = client.list_attached_group_policies(GroupName=config.dev_group)["AttachedPolicies"]
    assert [p["PolicyName"] for p in group] == [config.dev_policy]
    credentials = client.get_policy(PolicyArn=iam.policy_arn(dev, config.credentials_policy))["Policy"]
    version = client.get_policy_version(
        PolicyArn=credentials["Arn"], VersionId=credentials["DefaultVersionId"]
    )
    resources = statements(iam._document(version["PolicyVersion"]["Document"]))[0]["Resource"]
    assert sorted(resources) == [
        f"arn:aws:ssm:us-east-1:{dev.account_id}:parameter/iotile-cloud/dev/{name}"
        for name in sorted(dev.config.secrets.readers["app"])
    ]


def test_second_run_and_dry_run_make_no_mutating_call(make_stage, call_log) -> None:
    preview = converge(make_stage("dev", read_only=True, log=call_log), "iam", dry_run=True)
    assert operations(preview.resources).count("CreateRole") == len(iam.role_specs(make_stage("dev")))
    assert call_log.mutating == []

    stage = make_stage("dev", log=call_log)
    converge(stage, "iam")
    call_log.clear()
    assert changed(converge(stage, "iam").resources) == []
    assert call_log.mutating == []


def test_changed_document_becomes_a_new_default_version(dev: Stage) -> None:
    converge(dev, "iam")
    client = dev.client("iam")
    arn = iam.policy_arn(dev, dev.config.iam.search_policy)
    wide = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "es:*", "Resource": "*"}]}
    client.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(wide), SetAsDefault=True)

    drifted = converge(dev, "iam")

    assert operations(drifted.resources) == ["CreatePolicyVersion"]
    policy = client.get_policy(PolicyArn=arn)["Policy"]
    document = client.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])
    assert "es:*" not in json.dumps(iam._document(document["PolicyVersion"]["Document"]))
    assert changed(converge(dev, "iam").resources) == []


def test_oldest_version_is_pruned_at_the_limit_of_five(dev: Stage) -> None:
    converge(dev, "iam")
    client = dev.client("iam")
    arn = iam.policy_arn(dev, dev.config.iam.search_policy)
    for n in range(4):
        other = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Deny",
                    "Action": "es:ESHttpGet",
                    "Resource": f"arn:aws:es:us-east-1:123456789012:domain/x{n}/*",
                }
            ],
        }
        client.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(other), SetAsDefault=True)
    assert len(client.list_policy_versions(PolicyArn=arn)["Versions"]) == 5

    drifted = converge(dev, "iam")

    assert operations(drifted.resources) == ["DeletePolicyVersion", "CreatePolicyVersion"]
    delete = drifted.resources[
        [r.name for r in drifted.resources].index(f"policy/{dev.config.iam.search_policy}")
    ].steps[0]
    assert delete.params["VersionId"] == "v1"
    assert len(client.list_policy_versions(PolicyArn=arn)["Versions"]) == 5


def test_hand_made_escalations_are_removed(dev: Stage) -> None:
    converge(dev, "iam")
    client = dev.client("iam")
    role = dev.config.iam.ecs_task_role
    client.attach_role_policy(RoleName=role, PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
    client.put_role_policy(
        RoleName=role,
        PolicyName="quick-fix",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        ),
    )
    open_trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    client.update_assume_role_policy(RoleName=role, PolicyDocument=json.dumps(open_trust))

    drifted = converge(dev, "iam")

    assert sorted(operations(drifted.resources)) == [
        "DeleteRolePolicy",
        "DetachRolePolicy",
        "UpdateAssumeRolePolicy",
    ]
    attached = {
        p["PolicyName"] for p in client.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    }
    assert "AdministratorAccess" not in attached
    assert client.list_role_policies(RoleName=role)["PolicyNames"] == []
    trust = iam._document(client.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"])
    assert statements(trust)[0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}


def test_role_taken_out_of_its_instance_profile_is_put_back(dev: Stage) -> None:
    converge(dev, "iam")
    name = dev.config.iam.ecs_instance_role
    dev.client("iam").remove_role_from_instance_profile(InstanceProfileName=name, RoleName=name)

    drifted = converge(dev, "iam")

    assert operations(drifted.resources) == ["AddRoleToInstanceProfile"]
    roles = dev.client("iam").get_instance_profile(InstanceProfileName=name)["InstanceProfile"]["Roles"]
    assert [r["RoleName"] for r in roles] == [name]


def test_canonical_ignores_spelling() -> None:
    one = {"Statement": [{"Action": "s3:GetObject", "Resource": ["b", "a"]}]}
    two = {"Statement": [{"Action": ["s3:GetObject"], "Resource": ["a", "b"]}]}
    assert policies.canonical(one) == policies.canonical(two)
    assert policies.canonical(one) != policies.canonical(
        {"Statement": [{"Action": "s3:PutObject", "Resource": ["a", "b"]}]}
    )


def test_service_linked_roles_are_made_once_and_a_race_is_no_failure(make_stage, call_log) -> None:
    """On a fresh account CreateDomain in a VPC fails until OpenSearch's service-linked role
    exists: the IAM area (wave 1) makes every one the stack relies on."""
    from deploy.execute import execute_resources
    from deploy.report import Reporter

    stage = make_stage("dev", log=call_log)
    stage.client("iam").create_service_linked_role(AWSServiceName="ecs.amazonaws.com")
    planned = [r for r in iam.plan(stage) if r.kind == "service-linked role"]
    assert [r.name for r in planned if r.steps] == [
        s for s in iam.SERVICE_LINKED_ROLES if s != "ecs.amazonaws.com"
    ]
    # Another run (or AWS itself) makes one between our read and our call: it counts as done.
    stage.client("iam").create_service_linked_role(AWSServiceName="elasticache.amazonaws.com")
    execute_resources(stage, [r for r in planned if r.steps], Reporter(as_json=True))

    assert iam.read_service_linked_roles(stage) >= set(iam.SERVICE_LINKED_ROLES)
    call_log.clear()
    again = [r for r in iam.plan(stage) if r.kind == "service-linked role"]
    assert changed(again) == [] and call_log.mutating == []
