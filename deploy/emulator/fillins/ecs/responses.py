"""Wire format of the ECS services fill-in (JSON protocol) and the operations it serves: services,
their tasks, and tags on them (other resources' tags stay moto's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deploy.emulator.fillins.core import FillinResponse, json_error, json_params, json_response
from deploy.emulator.fillins.ecs.models import (
    Deployment,
    EcsError,
    EcsServicesFillin,
    Service,
    Task,
    fillin_backends,
)

SERVICE = "ecs"
# Settings a service keeps as they were sent, and answers back.
ECHOED = (
    "launchType",
    "capacityProviderStrategy",
    "platformVersion",
    "deploymentConfiguration",
    "placementConstraints",
    "placementStrategy",
    "networkConfiguration",
    "healthCheckGracePeriodSeconds",
    "schedulingStrategy",
    "deploymentController",
    "enableECSManagedTags",
    "propagateTags",
    "enableExecuteCommand",
    "loadBalancers",
    "serviceRegistries",
)
DEFAULTS = {
    "loadBalancers": [],
    "serviceRegistries": [],
    "schedulingStrategy": "REPLICA",
    "deploymentController": {"type": "ECS"},
    "enableECSManagedTags": False,
    "propagateTags": "NONE",
    "enableExecuteCommand": False,
    "placementConstraints": [],
    "placementStrategy": [],
}


def deployment_dict(service: Service, deployment: Deployment, fillin: EcsServicesFillin) -> dict[str, Any]:
    tasks = fillin._tasks(service, deployment)
    running = sum(1 for t in tasks if t.last_status == "RUNNING")
    described = {
        "id": deployment.id,
        "status": deployment.status,
        "taskDefinition": deployment.task_definition_arn,
        "desiredCount": deployment.desired_count,
        "pendingCount": len(tasks) - running,
        "runningCount": running,
        "failedTasks": deployment.failed_tasks,
        "createdAt": deployment.created,
        "updatedAt": deployment.updated,
        "rolloutState": deployment.rollout_state,
        "rolloutStateReason": deployment.rollout_reason or f"ECS deployment {deployment.id} in progress.",
    }
    for key in ("launchType", "capacityProviderStrategy", "networkConfiguration"):
        if service.settings.get(key):
            described[key] = service.settings[key]
    return described


def service_dict(service: Service, fillin: EcsServicesFillin, tags: bool = False) -> dict[str, Any]:
    tasks = fillin._tasks(service)
    running = sum(1 for t in tasks if t.last_status == "RUNNING")
    described: dict[str, Any] = {
        "serviceArn": service.arn,
        "serviceName": service.name,
        "clusterArn": service.cluster_arn,
        "status": service.status,
        "desiredCount": service.desired_count,
        "runningCount": running,
        "pendingCount": len(tasks) - running,
        "taskDefinition": service.task_definition_arn,
        "deployments": [deployment_dict(service, d, fillin) for d in service.deployments],
        "events": service.events,
        "createdAt": service.created,
        "createdBy": f"arn:aws:iam::{fillin.account_id}:root",
    }
    for key in ECHOED:
        if key in service.settings or key in DEFAULTS:
            described[key] = service.settings.get(key, DEFAULTS.get(key))
    if service.settings.get("role"):
        described["roleArn"] = service.settings["role"]
    described["deploymentConfiguration"] = service.deployment_configuration
    if tags:
        described["tags"] = service.tags
    return described


def task_dict(task: Task) -> dict[str, Any]:
    container: dict[str, Any] = {
        "containerArn": f"{task.arn.replace(':task/', ':container/')}/{task.container_name}",
        "taskArn": task.arn,
        "name": task.container_name,
        "image": task.image,
        "lastStatus": task.last_status,
    }
    if task.exit_code is not None:
        container["exitCode"] = task.exit_code
    if task.stopped_reason and task.stop_code == "EssentialContainerExited":
        container["reason"] = task.stopped_reason
    described: dict[str, Any] = {
        "taskArn": task.arn,
        "clusterArn": task.cluster_arn,
        "taskDefinitionArn": task.task_definition_arn,
        "lastStatus": task.last_status,
        "desiredStatus": task.desired_status,
        "containers": [container],
        "startedBy": task.deployment_id,
        "group": task.group,
        "createdAt": task.created,
        "overrides": {"containerOverrides": []},
        "version": 1,
        "connectivity": "CONNECTED",
    }
    if task.launch_type:
        described["launchType"] = task.launch_type
    if task.capacity_provider:
        described["capacityProviderName"] = task.capacity_provider
    for key, value in (
        ("startedAt", task.started),
        ("stoppingAt", task.stopping),
        ("stoppedAt", task.stopped),
    ):
        if value is not None:
            described[key] = value
    if task.stopped_reason:
        described["stoppedReason"], described["stopCode"] = task.stopped_reason, task.stop_code
    return described


def _handler(
    operation: Callable[[EcsServicesFillin, dict[str, Any]], dict[str, Any]],
) -> Callable[[dict[str, Any], bytes], FillinResponse]:
    def handle(environ: dict[str, Any], body: bytes) -> FillinResponse:
        fillin = fillin_backends.for_request(environ)
        try:
            with fillin.lock:
                return json_response(operation(fillin, json_params(body)))
        except EcsError as exc:
            return json_error(exc.code, exc.message)

    return handle


def create_service(fillin: EcsServicesFillin, params: dict[str, Any]) -> dict[str, Any]:
    return {"service": service_dict(fillin.create_service(params), fillin)}


def update_service(fillin: EcsServicesFillin, params: dict[str, Any]) -> dict[str, Any]:
    return {"service": service_dict(fillin.update_service(params), fillin)}


def delete_service(fillin: EcsServicesFillin, params: dict[str, Any]) -> dict[str, Any]:
    service = fillin.delete_service(
        params.get("cluster"), params.get("service") or "", bool(params.get("force"))
    )
    return {"service": service_dict(service, fillin)}


def describe_services(fillin: EcsServicesFillin, params: dict[str, Any]) -> dict[str, Any]:
    found, failures = fillin.describe_services(params.get("cluster"), params.get("services") or [])
    tags = "TAGS" in (params.get("include") or [])
    return {"services": [service_dict(s, fillin, tags) for s in found], "failures": failures}


def list_services(fillin: EcsServicesFillin, params: dict[str, Any]) -> dict[str, Any]:
    return {"serviceArns": fillin.list_services(params.get("cluster"))}


def list_tasks(fillin: EcsServicesFillin, params: dict[str, Any]) -> dict[str, Any]:
    return {"taskArns": fillin.list_tasks(params)}


def describe_tasks(fillin: EcsServicesFillin, params: dict[str, Any]) -> dict[str, Any]:
    found, failures = fillin.describe_tasks(params.get("cluster"), params.get("tasks") or [])
    return {"tasks": [task_dict(t) for t in found], "failures": failures}


def stop_task(fillin: EcsServicesFillin, params: dict[str, Any]) -> dict[str, Any]:
    task = fillin.stop_task(params.get("cluster"), params.get("task") or "", params.get("reason") or "")
    return {"task": task_dict(task)}


def _tagged_service(fillin: EcsServicesFillin, arn: str) -> Service | None:
    return next((s for s in fillin.services.values() if s.arn == arn), None)


def _moto_tags(fillin: EcsServicesFillin, call: Callable[[Any], Any]) -> Any:
    from moto.core.exceptions import JsonRESTError

    try:
        return call(fillin._moto())
    except JsonRESTError as exc:
        raise EcsError(exc.error_type, exc.message) from None


def tag_resource(fillin: EcsServicesFillin, params: dict[str, Any]) -> dict[str, Any]:
    arn, tags = params.get("resourceArn") or "", params.get("tags") or []
    service = _tagged_service(fillin, arn)
    if service is None:
        _moto_tags(fillin, lambda moto: moto.tag_resource(arn, tags))
        return {}
    merged = {t["key"]: t.get("value", "") for t in [*service.tags, *tags]}
    service.tags = [{"key": k, "value": v} for k, v in merged.items()]
    return {}


def untag_resource(fillin: EcsServicesFillin, params: dict[str, Any]) -> dict[str, Any]:
    arn, keys = params.get("resourceArn") or "", params.get("tagKeys") or []
    service = _tagged_service(fillin, arn)
    if service is None:
        _moto_tags(fillin, lambda moto: moto.untag_resource(arn, keys))
        return {}
    service.tags = [t for t in service.tags if t["key"] not in keys]
    return {}


def list_tags_for_resource(fillin: EcsServicesFillin, params: dict[str, Any]) -> dict[str, Any]:
    arn = params.get("resourceArn") or ""
    service = _tagged_service(fillin, arn)
    if service is None:
        return {"tags": _moto_tags(fillin, lambda moto: moto.list_tags_for_resource(arn))}
    return {"tags": service.tags}


OPERATIONS = {
    "CreateService": _handler(create_service),
    "UpdateService": _handler(update_service),
    "DeleteService": _handler(delete_service),
    "DescribeServices": _handler(describe_services),
    "ListServices": _handler(list_services),
    "ListTasks": _handler(list_tasks),
    "DescribeTasks": _handler(describe_tasks),
    "StopTask": _handler(stop_task),
    "TagResource": _handler(tag_resource),
    "UntagResource": _handler(untag_resource),
    "ListTagsForResource": _handler(list_tags_for_resource),
}
