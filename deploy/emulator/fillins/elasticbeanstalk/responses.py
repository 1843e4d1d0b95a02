"""Wire format of the Elastic Beanstalk fill-in (query protocol, XML answers) and the operations it
serves: every Beanstalk operation this project calls, so applications, versions and environments
live in one place."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from deploy.emulator.fillins.core import FillinResponse, query_error, query_list, query_params, query_response
from deploy.emulator.fillins.elasticbeanstalk.models import (
    Application,
    BeanstalkError,
    BeanstalkFillin,
    Environment,
    Event,
    Version,
    ensure_storage_bucket,
    fillin_backends,
)

SERVICE = "elasticbeanstalk"
NAMESPACE = "http://elasticbeanstalk.amazonaws.com/docs/2010-12-01/"


def _structures(params: dict[str, str], prefix: str) -> list[dict[str, str]]:
    items, n = [], 1
    while any(k.startswith(f"{prefix}.member.{n}.") for k in params):
        head = f"{prefix}.member.{n}."
        items.append({k[len(head) :]: v for k, v in params.items() if k.startswith(head)})
        n += 1
    return items


def _tags(params: dict[str, str], prefix: str = "Tags") -> dict[str, str]:
    return {item["Key"]: item.get("Value", "") for item in _structures(params, prefix) if "Key" in item}


def _settings(params: dict[str, str], prefix: str) -> dict[tuple[str, str], str]:
    return {
        (item.get("Namespace", ""), item.get("OptionName", "")): item.get("Value", "")
        for item in _structures(params, prefix)
    }


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _xml(value: Any) -> str:
    """Elements for a dict, `<member>`s for a list, text for the rest (as botocore reads them)."""
    if isinstance(value, dict):
        return "".join(f"<{k}>{_xml(v)}</{k}>" for k, v in value.items() if v is not None)
    if isinstance(value, list):
        return "".join(f"<member>{_xml(v)}</member>" for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return escape(str(value))


def application_dict(app: Application) -> dict[str, Any]:
    return {
        "ApplicationArn": app.arn,
        "ApplicationName": app.name,
        "Description": app.description,
        "DateCreated": app.created,
        "DateUpdated": app.created,
        "Versions": sorted(app.versions),
    }


def version_dict(version: Version) -> dict[str, Any]:
    return {
        "ApplicationVersionArn": version.arn,
        "ApplicationName": version.application,
        "VersionLabel": version.label,
        "Description": version.description,
        "SourceBundle": {"S3Bucket": version.bucket, "S3Key": version.key} if version.bucket else None,
        "DateCreated": version.created,
        "DateUpdated": version.created,
        "Status": "UNPROCESSED",
    }


def environment_dict(env: Environment) -> dict[str, Any]:
    described: dict[str, Any] = {
        "EnvironmentName": env.name,
        "EnvironmentId": env.id,
        "ApplicationName": env.application,
        "VersionLabel": env.version,
        "SolutionStackName": env.solution_stack or None,
        "PlatformArn": env.platform_arn or None,
        "EndpointURL": env.endpoint,
        "CNAME": env.cname,
        "DateCreated": env.created,
        "DateUpdated": env.updated,
        "Status": env.status,
        "AbortableOperationInProgress": env.status == "Updating",
        "Health": env.health,
        "HealthStatus": env.health_status,
        "Tier": env.tier,
        "EnvironmentArn": env.arn,
    }
    return described


def event_dict(event: Event) -> dict[str, Any]:
    return {
        "EventDate": event.date,
        "Message": event.message,
        "ApplicationName": event.application,
        "VersionLabel": event.version or None,
        "EnvironmentName": event.environment or None,
        "Severity": event.severity,
    }


def _handler(
    operation: str, serve: Callable[[BeanstalkFillin, dict[str, str]], Any]
) -> Callable[..., FillinResponse]:
    def handle(environ: dict[str, Any], body: bytes) -> FillinResponse:
        backend = fillin_backends.for_request(environ)
        try:
            return query_response(operation, _xml(serve(backend, query_params(environ, body))), NAMESPACE)
        except BeanstalkError as error:
            return query_error(error.code, error.message, error.status)

    return handle


def create_application(backend: BeanstalkFillin, params: dict[str, str]) -> dict[str, Any]:
    app = backend.create_application(
        params.get("ApplicationName", ""), params.get("Description", ""), _tags(params)
    )
    return {"Application": application_dict(app)}


def describe_applications(backend: BeanstalkFillin, params: dict[str, str]) -> dict[str, Any]:
    names = query_list(params, "ApplicationNames.member")
    apps = [a for a in backend.applications.values() if not names or a.name in names]
    return {"Applications": [application_dict(app) for app in apps]}


def create_application_version(backend: BeanstalkFillin, params: dict[str, str]) -> dict[str, Any]:
    version = backend.create_version(
        params.get("ApplicationName", ""),
        params.get("VersionLabel", ""),
        params.get("SourceBundle.S3Bucket", ""),
        params.get("SourceBundle.S3Key", ""),
        params.get("Description", ""),
    )
    return {"ApplicationVersion": version_dict(version)}


def describe_application_versions(backend: BeanstalkFillin, params: dict[str, str]) -> dict[str, Any]:
    found = backend.describe_versions(
        params.get("ApplicationName"), query_list(params, "VersionLabels.member")
    )
    return {"ApplicationVersions": [version_dict(v) for v in found]}


def _tier(params: dict[str, str]) -> dict[str, str] | None:
    tier = {k.removeprefix("Tier."): v for k, v in params.items() if k.startswith("Tier.")}
    return tier or None


def create_environment(backend: BeanstalkFillin, params: dict[str, str]) -> dict[str, Any]:
    env = backend.create_environment(
        {
            "application": params.get("ApplicationName", ""),
            "name": params.get("EnvironmentName", ""),
            "cname_prefix": params.get("CNAMEPrefix"),
            "solution_stack": params.get("SolutionStackName"),
            "platform_arn": params.get("PlatformArn"),
            "version": params.get("VersionLabel"),
            "tier": _tier(params),
            "settings": _settings(params, "OptionSettings"),
            "tags": _tags(params),
        }
    )
    return environment_dict(env)


def describe_environments(backend: BeanstalkFillin, params: dict[str, str]) -> dict[str, Any]:
    found = backend.describe_environments(
        params.get("ApplicationName"),
        query_list(params, "EnvironmentNames.member"),
        params.get("IncludeDeleted", "true") == "true",
    )
    return {"Environments": [environment_dict(env) for env in found]}


def update_environment(backend: BeanstalkFillin, params: dict[str, str]) -> dict[str, Any]:
    remove = [
        (i.get("Namespace", ""), i.get("OptionName", "")) for i in _structures(params, "OptionsToRemove")
    ]
    env = backend.update_environment(
        {
            "name": params.get("EnvironmentName", ""),
            "version": params.get("VersionLabel"),
            "solution_stack": params.get("SolutionStackName"),
            "platform_arn": params.get("PlatformArn"),
            "settings": _settings(params, "OptionSettings"),
            "remove": remove,
        }
    )
    return environment_dict(env)


def terminate_environment(backend: BeanstalkFillin, params: dict[str, str]) -> dict[str, Any]:
    return environment_dict(backend.terminate_environment(params.get("EnvironmentName", "")))


def describe_configuration_settings(backend: BeanstalkFillin, params: dict[str, str]) -> dict[str, Any]:
    backend.application(params.get("ApplicationName", ""))
    env = backend.environment(params.get("EnvironmentName", ""))
    options = [
        {"Namespace": namespace, "OptionName": name, "Value": value}
        for (namespace, name), value in sorted(env.settings.items())
    ]
    described = {
        "SolutionStackName": env.solution_stack or None,
        "PlatformArn": env.platform_arn or None,
        "ApplicationName": env.application,
        "EnvironmentName": env.name,
        "DeploymentStatus": "deployed",
        "DateCreated": env.created,
        "DateUpdated": env.updated,
        "OptionSettings": options,
    }
    return {"ConfigurationSettings": [described]}


def describe_events(backend: BeanstalkFillin, params: dict[str, str]) -> dict[str, Any]:
    found = backend.describe_events(
        {
            "application": params.get("ApplicationName"),
            "environment": params.get("EnvironmentName"),
            "version": params.get("VersionLabel"),
            "start": _time(params.get("StartTime")),
            "severity": params.get("Severity"),
            "max": int(params.get("MaxRecords") or 0),
        }
    )
    return {"Events": [event_dict(event) for event in found]}


def describe_environment_health(backend: BeanstalkFillin, params: dict[str, str]) -> dict[str, Any]:
    env = backend.environment(params.get("EnvironmentName", ""))
    causes = ["Incorrect application version found on all instances."] if env.health == "Red" else []
    count = len(env.instances)
    return {
        "EnvironmentName": env.name,
        "HealthStatus": env.health_status,
        "Status": env.status,
        "Color": env.health,
        "Causes": causes,
        "InstancesHealth": {
            "Ok": count if env.health == "Green" else 0,
            "Severe": count if env.health == "Red" else 0,
        },
        "RefreshedAt": env.updated,
    }


def describe_environment_resources(backend: BeanstalkFillin, params: dict[str, str]) -> dict[str, Any]:
    env = backend.environment(params.get("EnvironmentName", ""))
    return {
        "EnvironmentResources": {
            "EnvironmentName": env.name,
            "Instances": [{"Id": instance} for instance in env.instances],
            "LoadBalancers": [{"Name": env.endpoint}],
        }
    }


def list_tags_for_resource(backend: BeanstalkFillin, params: dict[str, str]) -> dict[str, Any]:
    arn = params.get("ResourceArn", "")
    tags = backend.tags_of(arn)
    return {"ResourceArn": arn, "ResourceTags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]}


def update_tags_for_resource(backend: BeanstalkFillin, params: dict[str, str]) -> dict[str, Any]:
    backend.update_tags(
        params.get("ResourceArn", ""), _tags(params, "TagsToAdd"), query_list(params, "TagsToRemove.member")
    )
    return {}


def create_storage_location(backend: BeanstalkFillin, params: dict[str, str]) -> dict[str, Any]:
    return {"S3Bucket": ensure_storage_bucket(backend.account_id, backend.region)}


OPERATIONS = {
    name: _handler(name, serve)
    for name, serve in {
        "CreateApplication": create_application,
        "DescribeApplications": describe_applications,
        "CreateApplicationVersion": create_application_version,
        "DescribeApplicationVersions": describe_application_versions,
        "CreateEnvironment": create_environment,
        "DescribeEnvironments": describe_environments,
        "UpdateEnvironment": update_environment,
        "TerminateEnvironment": terminate_environment,
        "DescribeConfigurationSettings": describe_configuration_settings,
        "DescribeEvents": describe_events,
        "DescribeEnvironmentHealth": describe_environment_health,
        "DescribeEnvironmentResources": describe_environment_resources,
        "ListTagsForResource": list_tags_for_resource,
        "UpdateTagsForResource": update_tags_for_resource,
        "CreateStorageLocation": create_storage_location,
    }.items()
}
