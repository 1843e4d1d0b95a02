"""ECS: the workers' log group, cluster, EC2 capacity (launch template, Auto Scaling group, capacity
provider with managed scaling), task definition (ecs/task-definition.json.j2) and service."""

from __future__ import annotations

import base64
import json as jsonlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.cli import area_tasks
from deploy.parallel import map_concurrently
from deploy.plan import Call, Deferred, Resource, Step, Wait, converge, removal

if TYPE_CHECKING:
    from deploy.stage import Stage

AREA = "ecs"
# Needs first: the roles and instance profile, the VPC and app group, the image repository, the
# queue, table and topic the workers use (their names go in the task definition).
AFTER: tuple[str, ...] = ("iam", "network", "ecr", "sqs", "dynamodb", "sns")
LOOKUPS = (
    "render_task_definition",
    "latest_task_definition",
    "same_task_definition",
    "current_image",
    "read_service",
    "log_group",
    "capacity_names",
)
TEMPLATE = Path(__file__).resolve().parent.parent.parent / "ecs" / "task-definition.json.j2"
CONTAINER = "worker"
AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id"
# What the service keeps during a deploy, and the breaker that rolls back one whose tasks fail.
DEPLOYMENT = {
    "deploymentCircuitBreaker": {"enable": True, "rollback": True},
    "minimumHealthyPercent": 50,
    "maximumPercent": 200,
}
# Launch template settings the tool owns (moto and AWS add others to what they answer).
TEMPLATE_KEYS = (
    "ImageId",
    "InstanceType",
    "IamInstanceProfile",
    "SecurityGroupIds",
    "MetadataOptions",
    "BlockDeviceMappings",
    "UserData",
)


@dataclass(frozen=True)
class CapacityNames:
    launch_template: str
    group: str
    provider: str


def capacity_names(stage: Stage) -> CapacityNames:
    """The launch template, Auto Scaling group and capacity provider, named after the cluster (a
    capacity provider may not start with aws, ecs or fargate)."""
    cluster = stage.config.ecs.cluster
    return CapacityNames(f"{cluster}-instances", f"{cluster}-workers", f"{cluster}-capacity")


def log_group(stage: Stage) -> str:
    from deploy.policies import log_groups

    return log_groups(stage)["worker"]


# -- the task definition ---------------------------------------------------------------------------


def worker_environment(stage: Stage) -> dict[str, str]:
    """What the worker reads (the contract in server/apps/sqsworker): names, never a secret."""
    from deploy.areas.sns import topic_arn

    config = stage.config
    return {
        "AWS_DEFAULT_REGION": stage.region,
        "AWS_REGION": stage.region,
        "IOTILE_SECRETS_PREFIX": config.secrets.prefix,
        "IOTILE_STAGE": stage.name,
        "STAFF_NOTIFICATIONS_TOPIC_ARN": topic_arn(stage, config.sns.topics.staff_notifications),
        "WORKER_LOG_TABLE": config.dynamodb.tables.worker_logs,
        "WORKER_LOG_TTL_DAYS": str(config.dynamodb.worker_logs_ttl_days),
        "WORKER_QUEUE_NAME": config.sqs.queues.worker,
        "WORKER_WAIT_SECONDS": str(config.ecs.wait_seconds),
        **config.ecs.environment,
    }


def render_task_definition(stage: Stage, image: str) -> dict[str, Any]:
    """The RegisterTaskDefinition parameters for `image` (tags aside)."""
    import jinja2

    from deploy.areas.iam import role_arn
    from deploy.policies import secret_arns

    config = stage.config
    secrets = {arn.rsplit("/", 1)[-1]: arn for arn in secret_arns(stage, "worker_task_definition")}
    text = jinja2.Template(TEMPLATE.read_text(encoding="utf-8"), undefined=jinja2.StrictUndefined).render(
        family=config.ecs.task_definition,
        task_role_arn=role_arn(stage, config.iam.ecs_task_role),
        execution_role_arn=role_arn(stage, config.iam.ecs_execution_role),
        container=CONTAINER,
        image=image,
        cpu=config.ecs.cpu,
        memory=config.ecs.memory,
        environment=sorted(worker_environment(stage).items()),
        secrets=sorted(secrets.items()),
        log_group=log_group(stage),
        region=stage.region,
    )
    return jsonlib.loads(text)


def _normal(want: Any, have: Any, key: str = "") -> bool:
    """Whether `have` (as AWS answers) holds `want`: only the keys we set count (AWS adds defaults),
    environment and secrets compare as sets of names."""
    if key in ("environment", "secrets") and isinstance(want, list):
        keyed = {item["name"]: item for item in have or []}
        return len(keyed) == len(want) and all(_normal(i, keyed.get(i["name"])) for i in want)
    if isinstance(want, dict):
        return isinstance(have, dict) and all(_normal(v, have.get(k), k) for k, v in want.items())
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(want) == len(have)
            and all(_normal(w, h) for w, h in zip(want, have, strict=True))
        )
    return want == have


def same_task_definition(wanted: dict[str, Any], live: dict[str, Any] | None) -> bool:
    return live is not None and _normal(wanted, live)


def latest_task_definition(stage: Stage) -> dict[str, Any] | None:
    """The latest ACTIVE revision of the family, None when it has none."""
    from botocore.exceptions import ClientError

    from deploy.errors import error_code

    try:
        found = stage.client("ecs").describe_task_definition(taskDefinition=stage.config.ecs.task_definition)
    except ClientError as exc:
        if error_code(exc) in ("ClientException", "TaskDefinitionNotFoundException"):
            return None
        raise
    definition = found["taskDefinition"]
    return definition if definition.get("status", "ACTIVE") == "ACTIVE" else None


def current_image(stage: Stage, live: dict[str, Any] | None) -> str:
    """The image the latest revision runs; before there is one, the repository's image of the
    current commit (build-docker pushes it)."""
    if live:
        for container in live.get("containerDefinitions", []):
            if container.get("name") == CONTAINER:
                return container["image"]
    from deploy.areas.ecr import repository_uri
    from deploy.ship.bundle import SERVER_DIR, git_commit

    return f"{repository_uri(stage)}:{git_commit(SERVER_DIR) or 'initial'}"


def register_call(stage: Stage, wanted: dict[str, Any], reason: str) -> Call:
    family = wanted["family"]
    tags = [{"key": k, "value": v} for k, v in sorted(stage.tags(family).items())]
    return Call("ecs", "RegisterTaskDefinition", {**wanted, "tags": tags}, family, reason)


def plan_task_definition(stage: Stage, live: dict[str, Any] | None) -> Resource:
    wanted = render_task_definition(stage, current_image(stage, live))
    family = wanted["family"]
    kind = "task definition"
    if live is None:
        return converge(
            AREA, kind, family, [register_call(stage, wanted, "no active revision")], exists=False
        )
    detail = f"revision {live['revision']}, {current_image(stage, live)}"
    if same_task_definition(wanted, live):
        return converge(AREA, kind, family, [], exists=True, detail=detail)
    step = register_call(stage, wanted, "the rendered definition differs from the latest revision")
    return converge(AREA, kind, family, [step], exists=True, detail=detail)


# -- log group and cluster ----------------------------------------------------------------------


def read_log_group(stage: Stage) -> dict[str, Any] | None:
    name = log_group(stage)
    found = stage.client("logs").describe_log_groups(logGroupNamePrefix=name).get("logGroups", [])
    return next((group for group in found if group["logGroupName"] == name), None)


def plan_log_group(stage: Stage, state: dict[str, Any] | None) -> Resource:
    name, days = log_group(stage), stage.config.ecs.log_retention_days
    retention = Call(
        "logs",
        "PutRetentionPolicy",
        {"logGroupName": name, "retentionInDays": days},
        name,
        f"keep {days} days",
    )
    if state is None:
        create = Call(
            "logs",
            "CreateLogGroup",
            {"logGroupName": name, "tags": stage.tags(name)},
            name,
            "log group does not exist",
        )
        return converge(AREA, "log group", name, [create, retention], exists=False)
    steps = [] if state.get("retentionInDays") == days else [retention]
    return converge(
        AREA, "log group", name, steps, exists=True, detail=f"{state.get('retentionInDays')} days"
    )


def read_cluster(stage: Stage) -> dict[str, Any] | None:
    found = stage.client("ecs").describe_clusters(
        clusters=[stage.config.ecs.cluster], include=["SETTINGS", "TAGS"]
    )
    live = [c for c in found.get("clusters", []) if c.get("status") != "INACTIVE"]
    return live[0] if live else None


def _ecs_tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(tags.items())]


def plan_cluster(stage: Stage, state: dict[str, Any] | None) -> Resource:
    name = stage.config.ecs.cluster
    provider = capacity_names(stage).provider
    strategy = [{"capacityProvider": provider, "weight": 1, "base": 0}]
    attach = Call(
        "ecs",
        "PutClusterCapacityProviders",
        {"cluster": name, "capacityProviders": [provider], "defaultCapacityProviderStrategy": strategy},
        name,
        f"capacity from {provider}",
    )
    settings = [{"name": "containerInsights", "value": "enabled"}]
    after = (provider,)
    if state is None:
        params = {"clusterName": name, "settings": settings, "tags": _ecs_tags(stage.tags(name))}
        create = Call("ecs", "CreateCluster", params, name, "cluster does not exist")
        return converge(AREA, "cluster", name, [create, attach], exists=False, depends_on=after)
    steps: list[Call] = []
    if state.get("settings") and state["settings"] != settings:
        steps.append(
            Call(
                "ecs",
                "UpdateCluster",
                {"cluster": name, "settings": settings},
                name,
                "Container Insights off",
            )
        )
    if state.get("capacityProviders") != [provider]:
        steps.append(attach)
    tags = {t["key"]: t["value"] for t in state.get("tags", [])}
    if any(tags.get(k) != v for k, v in stage.tags(name).items()):
        params = {"resourceArn": state["clusterArn"], "tags": _ecs_tags(stage.tags(name))}
        steps.append(Call("ecs", "TagResource", params, name, "tags differ from config"))
    instances, tasks = state.get("registeredContainerInstancesCount", 0), state.get("runningTasksCount", 0)
    detail = f"{instances} instance(s), {tasks} task(s)"
    return converge(AREA, "cluster", name, steps, exists=True, detail=detail, depends_on=after)


# -- EC2 capacity -----------------------------------------------------------------------------------


def user_data(stage: Stage) -> str:
    """Joins the stage's cluster; the agent gets the task metadata endpoint and IAM roles for tasks."""
    script = (
        "#!/bin/bash\n"
        f"echo ECS_CLUSTER={stage.config.ecs.cluster} >> /etc/ecs/ecs.config\n"
        "echo ECS_ENABLE_TASK_IAM_ROLE=true >> /etc/ecs/ecs.config\n"
        "echo ECS_CONTAINER_STOP_TIMEOUT=120s >> /etc/ecs/ecs.config\n"
    )
    return base64.b64encode(script.encode()).decode()


def launch_template_data(stage: Stage, ami: str, group: Any) -> dict[str, Any]:
    ecs = stage.config.ecs
    return {
        "ImageId": ami,
        "InstanceType": ecs.instance_type,
        "IamInstanceProfile": {"Name": stage.config.iam.ecs_instance_role},
        "SecurityGroupIds": [group],
        # IMDSv2 only; hop limit 2 so the containers of bridge-mode tasks reach it through docker0.
        "MetadataOptions": {
            "HttpTokens": "required",
            "HttpEndpoint": "enabled",
            "HttpPutResponseHopLimit": 2,
        },
        "BlockDeviceMappings": [
            {
                "DeviceName": "/dev/xvda",
                "Ebs": {
                    "VolumeSize": ecs.volume_gb,
                    "VolumeType": "gp3",
                    "Encrypted": True,
                    "DeleteOnTermination": True,
                },
            }
        ],
        "UserData": user_data(stage),
    }


def read_ami(stage: Stage) -> str:
    return stage.client("ssm").get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]


def read_launch_template(stage: Stage) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    from deploy.errors import error_code

    name = capacity_names(stage).launch_template
    try:
        found = stage.client("ec2").describe_launch_template_versions(
            LaunchTemplateName=name, Versions=["$Default"]
        )
    except ClientError as exc:
        if error_code(exc) in (
            "InvalidLaunchTemplateName.NotFoundException",
            "InvalidLaunchTemplateId.NotFound",
        ):
            return None
        raise
    versions = found.get("LaunchTemplateVersions", [])
    return versions[0] if versions else None


def plan_launch_template(stage: Stage, state: dict[str, Any] | None, data: dict[str, Any]) -> Resource:
    name = capacity_names(stage).launch_template
    if state is None:
        tags = [{"ResourceType": "launch-template", "Tags": stage.tag_list(stage.tags(name))}]
        params = {"LaunchTemplateName": name, "LaunchTemplateData": data, "TagSpecifications": tags}
        create = Call("ec2", "CreateLaunchTemplate", params, name, "launch template does not exist")
        return converge(AREA, "launch template", name, [create], exists=False)
    have = state.get("LaunchTemplateData", {})
    known = all(isinstance(group, str) for group in data["SecurityGroupIds"])
    keys = [key for key in TEMPLATE_KEYS if known or key != "SecurityGroupIds"]
    drifted = sorted(key for key in keys if have.get(key) != data[key])
    detail = f"version {state.get('VersionNumber')}, {have.get('ImageId', '-')}"
    if not drifted:
        return converge(AREA, "launch template", name, [], exists=True, detail=detail)
    version = {"LaunchTemplateName": name, "LaunchTemplateData": data, "VersionDescription": "iotile-deploy"}
    reason = f"{', '.join(drifted)} differ from config"
    steps = [
        Call("ec2", "CreateLaunchTemplateVersion", {**version, "SourceVersion": "$Default"}, name, reason),
        Call(
            "ec2",
            "ModifyLaunchTemplate",
            {"LaunchTemplateName": name, "DefaultVersion": "$Latest"},
            name,
            reason,
        ),
    ]
    return converge(AREA, "launch template", name, steps, exists=True, detail=detail)


def read_group(stage: Stage) -> dict[str, Any] | None:
    name = capacity_names(stage).group
    found = stage.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    return next(iter(found.get("AutoScalingGroups", [])), None)


def _subnets(values: list[Any]) -> str | Deferred:
    if all(isinstance(v, str) for v in values):
        return ",".join(sorted(values))
    from deploy.plan import resolve_deferred

    return Deferred(
        ",".join(str(v) for v in values), lambda stage: ",".join(sorted(resolve_deferred(values, stage)))
    )


def plan_group(stage: Stage, state: dict[str, Any] | None, subnets: str | Deferred) -> Resource:
    names, ecs = capacity_names(stage), stage.config.ecs
    template = {"LaunchTemplateName": names.launch_template, "Version": "$Default"}
    sizes = {"MinSize": ecs.min_instances, "MaxSize": ecs.max_instances}
    after = (names.launch_template,)
    if state is None:
        tags = [
            {"Key": k, "Value": v, "PropagateAtLaunch": True}
            for k, v in sorted(stage.tags(names.group).items())
        ]
        params = {
            "AutoScalingGroupName": names.group,
            "LaunchTemplate": template,
            **sizes,
            "DesiredCapacity": ecs.min_instances,
            "VPCZoneIdentifier": subnets,
            "NewInstancesProtectedFromScaleIn": False,
            "Tags": tags,
        }
        create = Call("autoscaling", "CreateAutoScalingGroup", params, names.group, "group does not exist")
        return converge(AREA, "Auto Scaling group", names.group, [create], exists=False, depends_on=after)
    changes: dict[str, Any] = {k: v for k, v in sizes.items() if state.get(k) != v}
    have_subnets = ",".join(sorted(filter(None, state.get("VPCZoneIdentifier", "").split(","))))
    if isinstance(subnets, str) and have_subnets != subnets:
        changes["VPCZoneIdentifier"] = subnets
    if state.get("LaunchTemplate", {}).get("LaunchTemplateName") != names.launch_template:
        changes["LaunchTemplate"] = template
    detail = f"{len(state.get('Instances', []))} instance(s), desired {state.get('DesiredCapacity')}"
    steps = []
    if changes:
        params = {"AutoScalingGroupName": names.group, **changes}
        reason = f"{', '.join(sorted(changes))} differ from config"
        steps.append(Call("autoscaling", "UpdateAutoScalingGroup", params, names.group, reason))
    return converge(
        AREA, "Auto Scaling group", names.group, steps, exists=True, detail=detail, depends_on=after
    )


def group_arn_when_created(name: str) -> Deferred:
    def resolve(stage: Stage) -> str:
        found = read_group(stage)
        if found is None:
            from deploy.errors import AwsError

            raise AwsError(
                "AutoScalingGroupNotFound", f"{name} does not exist", "Rerun the task: it makes it first."
            )
        return found["AutoScalingGroupARN"]

    return Deferred(f"ARN of Auto Scaling group {name}", resolve)


def read_provider(stage: Stage) -> dict[str, Any] | None:
    name = capacity_names(stage).provider
    found = stage.client("ecs").describe_capacity_providers(capacityProviders=[name])
    live = [p for p in found.get("capacityProviders", []) if p.get("status") == "ACTIVE"]
    return live[0] if live else None


def managed_scaling(stage: Stage) -> dict[str, Any]:
    target = stage.config.ecs.target_capacity
    return {
        "status": "ENABLED",
        "targetCapacity": target,
        "minimumScalingStepSize": 1,
        "maximumScalingStepSize": 10,
    }


def plan_provider(stage: Stage, state: dict[str, Any] | None, group: dict[str, Any] | None) -> Resource:
    names = capacity_names(stage)
    scaling = managed_scaling(stage)
    after = (names.group,)
    if state is None:
        arn = group["AutoScalingGroupARN"] if group else group_arn_when_created(names.group)
        provider = {
            "autoScalingGroupArn": arn,
            "managedScaling": scaling,
            "managedTerminationProtection": "DISABLED",
        }
        params = {
            "name": names.provider,
            "autoScalingGroupProvider": provider,
            "tags": _ecs_tags(stage.tags(names.provider)),
        }
        create = Call(
            "ecs", "CreateCapacityProvider", params, names.provider, "capacity provider does not exist"
        )
        return converge(AREA, "capacity provider", names.provider, [create], exists=False, depends_on=after)
    have = state.get("autoScalingGroupProvider", {}).get("managedScaling", {})
    steps = []
    if any(have.get(k) != v for k, v in scaling.items()):
        params = {"name": names.provider, "autoScalingGroupProvider": {"managedScaling": scaling}}
        steps.append(
            Call(
                "ecs", "UpdateCapacityProvider", params, names.provider, "managed scaling differs from config"
            )
        )
    return converge(AREA, "capacity provider", names.provider, steps, exists=True, depends_on=after)


# -- the service --------------------------------------------------------------------------------------


def read_service(stage: Stage) -> dict[str, Any] | None:
    """The worker service as DescribeServices answers it, None when there is none (or it is gone)."""
    from botocore.exceptions import ClientError

    from deploy.errors import error_code

    ecs = stage.config.ecs
    try:
        found = stage.client("ecs").describe_services(cluster=ecs.cluster, services=[ecs.service])
    except ClientError as exc:
        if error_code(exc) == "ClusterNotFoundException":
            return None
        raise
    live = [s for s in found.get("services", []) if s.get("status") == "ACTIVE"]
    return live[0] if live else None


def latest_revision_arn(family: str) -> Deferred:
    def resolve(stage: Stage) -> str:
        found = stage.client("ecs").describe_task_definition(taskDefinition=family)
        return found["taskDefinition"]["taskDefinitionArn"]

    return Deferred(f"latest revision of {family}", resolve)


def plan_service(
    stage: Stage, state: dict[str, Any] | None, definition: Resource, live: dict[str, Any] | None
) -> Resource:
    ecs = stage.config.ecs
    provider = capacity_names(stage).provider
    family = ecs.task_definition
    revision: Any = (
        live["taskDefinitionArn"] if live and not definition.steps else latest_revision_arn(family)
    )
    after = (family, ecs.cluster)
    if state is None:
        params = {
            "cluster": ecs.cluster,
            "serviceName": ecs.service,
            "taskDefinition": revision,
            "desiredCount": ecs.workers,
            "capacityProviderStrategy": [{"capacityProvider": provider, "weight": 1, "base": 0}],
            "deploymentConfiguration": DEPLOYMENT,
            "placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"}],
            "schedulingStrategy": "REPLICA",
            "enableECSManagedTags": True,
            "propagateTags": "SERVICE",
            "tags": _ecs_tags(stage.tags(ecs.service)),
        }
        create = Call("ecs", "CreateService", params, ecs.service, "service does not exist")
        return converge(AREA, "service", ecs.service, [create], exists=False, depends_on=after)
    changes: dict[str, Any] = {}
    if definition.steps or (live and state.get("taskDefinition") != live["taskDefinitionArn"]):
        changes["taskDefinition"] = revision
    if state.get("desiredCount") != ecs.workers:
        changes["desiredCount"] = ecs.workers
    # moto drops deploymentConfiguration on CreateService; AWS always answers it.
    have = state.get("deploymentConfiguration")
    if have is not None and not _normal(DEPLOYMENT, have):
        changes["deploymentConfiguration"] = DEPLOYMENT
    revision_name = str(state.get("taskDefinition", "-")).rsplit("/", 1)[-1]
    detail = f"{state.get('runningCount', 0)}/{state.get('desiredCount', 0)} running, {revision_name}"
    steps = []
    if changes:
        params = {"cluster": ecs.cluster, "service": ecs.service, **changes}
        steps.append(
            Call(
                "ecs",
                "UpdateService",
                params,
                ecs.service,
                f"{', '.join(sorted(changes))} differ from config",
            )
        )
    return converge(AREA, "service", ecs.service, steps, exists=True, detail=detail, depends_on=after)


# -- the area ----------------------------------------------------------------------------------------


def read_placement(stage: Stage) -> tuple[Any, str | Deferred]:
    """The app security group and the private subnets (Deferred while the network area makes them)."""
    from deploy.areas.network import group_id_when_created, security_group_id, subnet_zones, vpc_id

    name = stage.config.network.app_security_group
    vpc = vpc_id(stage)
    group = security_group_id(stage, name, vpc=vpc) or group_id_when_created(name)
    return group, _subnets(sorted(subnet_zones(stage, vpc), key=str))


def plan(stage: Stage) -> list[Resource]:
    reads = [
        partial(read_log_group, stage),
        partial(read_cluster, stage),
        partial(read_ami, stage),
        partial(read_launch_template, stage),
        partial(read_group, stage),
        partial(read_provider, stage),
        partial(latest_task_definition, stage),
        partial(read_service, stage),
        partial(read_placement, stage),
    ]
    logs, cluster, ami, template, group, provider, live, service, placement = map_concurrently(
        lambda read: read(), reads
    )
    security_group, subnets = placement
    definition = plan_task_definition(stage, live)
    return [
        plan_log_group(stage, logs),
        plan_launch_template(stage, template, launch_template_data(stage, ami, security_group)),
        plan_group(stage, group, subnets),
        plan_provider(stage, provider, group),
        plan_cluster(stage, cluster),
        definition,
        plan_service(stage, service, definition, live),
    ]


# -- down ------------------------------------------------------------------------------------------


def service_status(stage: Stage) -> str:
    """The worker service's status (ACTIVE, DRAINING, INACTIVE), "missing" when there is none."""
    from botocore.exceptions import ClientError

    from deploy.errors import error_code

    ecs = stage.config.ecs
    try:
        found = stage.client("ecs").describe_services(cluster=ecs.cluster, services=[ecs.service])
    except ClientError as exc:
        if error_code(exc) == "ClusterNotFoundException":
            return "missing"
        raise
    statuses = [s.get("status", "") for s in found.get("services", [])]
    return next((s for s in statuses if s != "INACTIVE"), "INACTIVE" if statuses else "missing")


def teardown_service(stage: Stage) -> Resource | None:
    ecs = stage.config.ecs
    status = service_status(stage)
    if status in ("INACTIVE", "missing"):
        return None
    steps: list[Step] = []
    if status == "ACTIVE":
        service = read_service(stage) or {}
        at = {"cluster": ecs.cluster, "service": ecs.service}
        if service.get("desiredCount", 0):
            # AWS refuses to delete a service scaled above zero (without force).
            steps.append(Call("ecs", "UpdateService", {**at, "desiredCount": 0}, ecs.service, "workers stop"))
        steps.append(Call("ecs", "DeleteService", at, ecs.service, "compute goes on down"))
    steps.append(
        Wait(
            ecs.service,
            "ECS stops the tasks and retires the service",
            service_status,
            frozenset({"INACTIVE", "missing"}),
        )
    )
    return removal(AREA, "service", ecs.service, steps, detail=status)


def teardown_group(stage: Stage) -> Resource | None:
    """The instances go, the group stays at 0/0 (with its launch template and capacity provider, so
    nothing needs detaching); `up` raises MinSize again and AWS then raises DesiredCapacity to it."""
    group = read_group(stage)
    if group is None or (group["MinSize"], group["DesiredCapacity"]) == (0, 0):
        return None
    name = group["AutoScalingGroupName"]
    params = {"AutoScalingGroupName": name, "MinSize": 0, "DesiredCapacity": 0}
    call = Call("autoscaling", "UpdateAutoScalingGroup", params, name, "capacity to 0/0 on down")
    detail = f"{len(group.get('Instances', []))} instance(s), desired {group['DesiredCapacity']}"
    return removal(
        AREA, "Auto Scaling group", name, [call], detail=detail, depends_on=[stage.config.ecs.service]
    )


def teardown(stage: Stage) -> list[Resource]:
    """What `down` does here: the service to zero, deleted and awaited until INACTIVE, then the
    group's capacity to 0/0. Cluster, task definitions, log group and repository stay."""
    service = teardown_service(stage)
    group = teardown_group(stage)
    return [r for r in (service, group) if r is not None]


create, status = area_tasks(AREA, "the worker cluster, its EC2 capacity, task definition and service", plan)
collection = Collection(AREA, create, status)
