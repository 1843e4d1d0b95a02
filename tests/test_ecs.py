"""The ecr and ecs areas against moto: what they make (an immutable, scanned repository that keeps
the newest images; a launch template with IMDSv2, encrypted volumes and user data joining the stage's
cluster; the group, capacity provider with managed scaling, task definition and service), a second
run that changes nothing, a dry run that calls nothing, drift put back, a revision only when the
rendered definition differs, and secrets only by reference."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import boto3
import pytest

from deploy.areas import ecr, ecs
from deploy.config import load_config
from deploy.errors import ConfigError
from deploy.stage import Stage
from tests.conftest import CallLog
from tests.helpers import changed, converge, operations

FAST = (
    "waits: {poll_seconds: 0.05, timeout_seconds: 30}\necs: {shutdown_timeout_seconds: 20}\n"
    # Point-in-time recovery waits a second after CreateTable (strict.py): not what these tests are about.
    "dynamodb: {point_in_time_recovery: false}\n"
)
AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"


def existing_network(config_copy, extra: str = "") -> Path:
    """A VPC with two private subnets and the app group, made directly (the network area's own VPC
    takes seconds to converge, and these tests are about the workers), named in the config."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.30.{n}.0/24", AvailabilityZone=f"us-east-1{zone}")[
            "Subnet"
        ]["SubnetId"]
        for n, zone in enumerate("ab")
    ]
    ec2.create_security_group(GroupName="iotile-cloud-app-dev", Description="app", VpcId=vpc)
    network = f"network: {{vpc_id: {vpc}, subnet_ids: [{', '.join(subnets)}]}}\n"
    return config_copy("dev", FAST + network + extra)


@pytest.fixture
def network_config(aws: None, config_copy) -> Path:
    return existing_network(config_copy)


@pytest.fixture
def stage(make_stage, network_config: Path) -> Stage:
    return make_stage("dev", config_dir=network_config)


def test_create_then_nothing_to_change_and_a_dry_run_calls_nothing(
    make_stage, stage: Stage, network_config: Path, call_log: CallLog
) -> None:
    preview = make_stage("dev", read_only=True, log=call_log, config_dir=network_config)
    planned = converge(preview, "ecr", "ecs", dry_run=True)
    assert call_log.mutating == []
    assert operations(planned.resources) == [
        "CreateRepository",
        "PutLifecyclePolicy",
        "CreateLogGroup",
        "PutRetentionPolicy",
        "CreateLaunchTemplate",
        "CreateAutoScalingGroup",
        "CreateCapacityProvider",
        "CreateCluster",
        "PutClusterCapacityProviders",
        "RegisterTaskDefinition",
        "CreateService",
    ]

    converge(stage, "ecr")
    made = converge(stage, "ecs")
    assert made.calls == 9
    stage.on_call(call_log)
    call_log.clear()
    again = converge(stage, "ecr", "ecs")

    assert changed(again.resources) == []
    assert call_log.mutating == []
    assert {r.state for r in again.resources} == {"present"}


def test_repository_is_immutable_scanned_and_keeps_the_newest_images(stage: Stage) -> None:
    converge(stage, "ecr")
    client = stage.client("ecr")
    (repo,) = client.describe_repositories(repositoryNames=["iotile-cloud-worker"])["repositories"]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["encryptionConfiguration"]["encryptionType"] == "AES256"
    policy = json.loads(
        client.get_lifecycle_policy(repositoryName="iotile-cloud-worker")["lifecyclePolicyText"]
    )
    assert policy["rules"][0]["selection"]["countNumber"] == stage.config.ecs.keep_images
    assert ecr.repository_uri(stage) == repo["repositoryUri"]

    # Changed by hand: put back.
    client.put_image_tag_mutability(repositoryName="iotile-cloud-worker", imageTagMutability="MUTABLE")
    client.put_image_scanning_configuration(
        repositoryName="iotile-cloud-worker", imageScanningConfiguration={"scanOnPush": False}
    )
    fixed = converge(stage, "ecr")
    assert operations(fixed.resources) == ["PutImageScanningConfiguration", "PutImageTagMutability"]
    assert changed(converge(stage, "ecr").resources) == []


def test_instances_need_imdsv2_encrypted_volumes_and_join_the_stage_cluster(stage: Stage) -> None:
    converge(stage, "ecr", "ecs")
    ec2 = stage.client("ec2")
    names = ecs.capacity_names(stage)
    (version,) = ec2.describe_launch_template_versions(
        LaunchTemplateName=names.launch_template, Versions=["$Default"]
    )["LaunchTemplateVersions"]
    data = version["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert all(m["Ebs"]["Encrypted"] for m in data["BlockDeviceMappings"])
    assert data["IamInstanceProfile"] == {"Name": stage.config.iam.ecs_instance_role}
    ami = stage.client("ssm").get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]
    assert data["ImageId"] == ami
    script = base64.b64decode(data["UserData"]).decode()
    assert "ECS_CLUSTER=iotile-cloud-cluster-dev" in script
    (group_id,) = data["SecurityGroupIds"]
    found = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    assert found["GroupName"] == "iotile-cloud-app-dev"

    group = ecs.read_group(stage)
    assert (group["MinSize"], group["MaxSize"]) == (1, 3)
    assert group["LaunchTemplate"]["LaunchTemplateName"] == names.launch_template
    provider = ecs.read_provider(stage)["autoScalingGroupProvider"]
    assert provider["autoScalingGroupArn"] == group["AutoScalingGroupARN"]
    assert provider["managedScaling"]["status"] == "ENABLED"
    cluster = ecs.read_cluster(stage)
    assert cluster["capacityProviders"] == [names.provider]


def test_service_has_the_configured_workers_and_the_circuit_breaker(stage: Stage) -> None:
    planned = converge(stage, "ecr", "ecs", dry_run=False)
    (create,) = [
        step for resource in planned.resources for step in resource.calls if step.operation == "CreateService"
    ]
    assert create.params["desiredCount"] == 3
    assert create.params["deploymentConfiguration"] == {
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        "minimumHealthyPercent": 50,
        "maximumPercent": 200,
    }
    assert (
        create.params["capacityProviderStrategy"][0]["capacityProvider"] == ecs.capacity_names(stage).provider
    )
    service = ecs.read_service(stage)
    assert service["desiredCount"] == 3
    assert service["taskDefinition"].endswith("task-definition/iotile-cloud-sqs-worker-task-dev:1")

    # A count changed by hand is drift.
    stage.client("ecs").update_service(
        cluster="iotile-cloud-cluster-dev", service=service["serviceName"], desiredCount=7
    )
    assert operations(converge(stage, "ecs").resources) == ["UpdateService"]
    assert ecs.read_service(stage)["desiredCount"] == 3


def test_a_new_revision_only_when_the_rendered_definition_differs(
    make_stage, aws: None, config_copy, network_config: Path
) -> None:
    stage = make_stage("dev", config_dir=network_config)
    converge(stage, "ecr", "ecs")
    live = ecs.latest_task_definition(stage)
    same = ecs.render_task_definition(stage, ecs.current_image(stage, live))
    assert ecs.same_task_definition(same, live), "what AWS adds (defaults, revision, status) is no difference"
    shuffled = {**same, "containerDefinitions": [{**same["containerDefinitions"][0]}]}
    shuffled["containerDefinitions"][0]["environment"] = list(
        reversed(same["containerDefinitions"][0]["environment"])
    )
    assert ecs.same_task_definition(shuffled, live), "the order of the environment does not count"

    bigger = make_stage("dev", config_dir=config_copy("dev", "ecs: {memory: 1024}\n"))
    steps = converge(bigger, "ecs")
    assert operations(steps.resources) == ["RegisterTaskDefinition", "UpdateService"]
    service = ecs.read_service(bigger)
    assert service["taskDefinition"].endswith(":2")
    assert changed(converge(bigger, "ecs").resources) == []


def test_the_task_definition_reads_secrets_by_reference_and_names_what_the_worker_uses(
    stage: Stage, config_copy
) -> None:
    stage.client("ssm").put_parameter(
        Name="/iotile-cloud/dev/SECRET_KEY", Value="s3cr3t", Type="SecureString"
    )
    with_secret = Stage(
        "dev",
        load_config(
            "dev",
            existing_network(config_copy, "secrets: {readers: {worker_task_definition: [SECRET_KEY]}}\n"),
        ),
    )
    rendered = ecs.render_task_definition(with_secret, "repo/worker:abc")
    (container,) = rendered["containerDefinitions"]
    assert container["secrets"] == [
        {
            "name": "SECRET_KEY",
            "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/iotile-cloud/dev/SECRET_KEY",
        }
    ]
    assert "s3cr3t" not in json.dumps(rendered)
    environment = {item["name"]: item["value"] for item in container["environment"]}
    assert environment["WORKER_QUEUE_NAME"] == "iotile-worker-dev"
    assert environment["WORKER_LOG_TABLE"] == "iotile-worker-logs-dev"
    assert environment["STAFF_NOTIFICATIONS_TOPIC_ARN"].endswith(":StaffNotifications")
    assert environment["IOTILE_STAGE"] == "dev"
    assert (container["cpu"], container["memory"]) == (256, 512)
    options = container["logConfiguration"]["options"]
    assert (container["logConfiguration"]["logDriver"], options["awslogs-group"]) == (
        "awslogs",
        "/ecs/iotile-cloud-worker-dev",
    )
    assert rendered["taskRoleArn"].endswith(":role/iotile-ecs-task-dev")
    assert rendered["executionRoleArn"].endswith(":role/iotile-ecs-execution-dev")


def test_log_group_keeps_the_configured_days(stage: Stage) -> None:
    converge(stage, "ecs")
    logs = stage.client("logs")
    logs.put_retention_policy(logGroupName="/ecs/iotile-cloud-worker-dev", retentionInDays=1)
    assert operations(converge(stage, "ecs").resources) == ["PutRetentionPolicy"]
    (group,) = logs.describe_log_groups(logGroupNamePrefix="/ecs/iotile-cloud-worker-dev")["logGroups"]
    assert group["retentionInDays"] == 30


def test_more_instances_at_least_than_at_most_is_bad_input(config_copy) -> None:
    folder = config_copy("dev", "ecs: {min_instances: 5, max_instances: 2}\n")
    with pytest.raises(ConfigError, match="ecs"):
        load_config("dev", folder)


# -- the emulator's strict rules for what the workers call (deploy/emulator/strict.py) ------------


def test_aws_refuses_a_capacity_provider_named_like_its_own(stage: Stage) -> None:
    from botocore.exceptions import ClientError

    arn = "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:x:autoScalingGroupName/g"
    with pytest.raises(ClientError, match="can't be prefixed"):
        stage.client("ecs").create_capacity_provider(
            name="ECS-workers", autoScalingGroupProvider={"autoScalingGroupArn": arn}
        )
    assert not ecs.capacity_names(stage).provider.lower().startswith(("aws", "ecs", "fargate"))


def test_a_service_strategy_needs_the_provider_on_the_cluster(stage: Stage) -> None:
    from botocore.exceptions import ClientError

    client = stage.client("ecs")
    client.create_cluster(clusterName="bare")
    client.register_task_definition(
        family="f", containerDefinitions=[{"name": "w", "image": "x", "memory": 128}]
    )
    strategy = [{"capacityProvider": "somewhere", "weight": 1}]
    with pytest.raises(ClientError, match="not associated with the cluster"):
        client.create_service(
            cluster="bare",
            serviceName="s",
            taskDefinition="f",
            desiredCount=1,
            capacityProviderStrategy=strategy,
        )
    # The area associates its provider first: the service that follows is accepted.
    converge(stage, "ecr", "ecs")
    assert ecs.read_service(stage) is not None


def test_aws_reads_a_lifecycle_policy_more_strictly_than_moto(stage: Stage) -> None:
    from botocore.exceptions import ClientError

    converge(stage, "ecr")
    tagged = {"tagStatus": "tagged", "countType": "imageCountMoreThan", "countNumber": 5}
    policy = {"rules": [{"rulePriority": 1, "selection": tagged, "action": {"type": "expire"}}]}
    with pytest.raises(ClientError, match="tagPrefixList or tagPatternList"):
        stage.client("ecr").put_lifecycle_policy(
            repositoryName="iotile-cloud-worker", lifecyclePolicyText=json.dumps(policy)
        )
    assert ecr_refusal(ecr.lifecycle_policy(20)) is None


def ecr_refusal(policy: dict) -> str | None:
    from deploy.emulator.strict import ecr_lifecycle_refusal

    return ecr_lifecycle_refusal(json.dumps(policy))
