"""Wire format of the Redshift fill-in (query protocol, XML answers) and the operations it serves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import escape

from deploy.emulator.fillins.core import FillinResponse, query_error, query_list, query_params, query_response
from deploy.emulator.fillins.redshift.models import (
    Integration,
    RedshiftError,
    add_cluster_namespace_arn,
    fillin_backends,
)

SERVICE = "redshift"
NAMESPACE = "http://redshift.amazonaws.com/doc/2012-12-01/"


def _tags(params: dict[str, str]) -> list[dict[str, str]]:
    tags, n = [], 1
    while f"TagList.Tag.{n}.Key" in params:
        key, value = params[f"TagList.Tag.{n}.Key"], params.get(f"TagList.Tag.{n}.Value", "")
        tags.append({"Key": key, "Value": value})
        n += 1
    return tags


def _filters(params: dict[str, str]) -> dict[str, list[str]]:
    filters, n = {}, 1
    base = "Filters.DescribeIntegrationsFilter"
    while f"{base}.{n}.Name" in params:
        filters[params[f"{base}.{n}.Name"]] = query_list(params, f"{base}.{n}.Values.Value")
        n += 1
    return filters


def _element(name: str, value: Any) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def integration_xml(integration: Integration, status: str, errors: list[dict[str, str]]) -> str:
    tags = "".join(
        f"<Tag>{_element('Key', t['Key'])}{_element('Value', t.get('Value', ''))}</Tag>"
        for t in integration.tags
    )
    problems = "".join(
        f"<IntegrationError>{_element('ErrorCode', e['ErrorCode'])}"
        f"{_element('ErrorMessage', e['ErrorMessage'])}</IntegrationError>"
        for e in errors
    )
    return (
        _element("IntegrationArn", integration.arn)
        + _element("IntegrationName", integration.name)
        + _element("SourceArn", integration.source_arn)
        + _element("TargetArn", integration.target_arn)
        + _element("Status", status)
        + f"<Errors>{problems}</Errors>"
        + _element("CreateTime", integration.created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        + _element("Description", integration.description)
        + f"<Tags>{tags}</Tags>"
    )


def _handler(operation: str, serve: Callable[[Any, dict[str, str]], str]) -> Callable[..., FillinResponse]:
    def handle(environ: dict[str, Any], body: bytes) -> FillinResponse:
        backend = fillin_backends.for_request(environ)
        try:
            return query_response(operation, serve(backend, query_params(environ, body)), NAMESPACE)
        except RedshiftError as error:
            return query_error(error.code, error.message, error.status)

    return handle


def _one(backend: Any, integration: Integration) -> str:
    return integration_xml(integration, *backend.status(integration))


def create_integration(backend: Any, params: dict[str, str]) -> str:
    integration = backend.create_integration(
        params.get("IntegrationName", ""),
        params.get("SourceArn", ""),
        params.get("TargetArn", ""),
        params.get("Description", ""),
        _tags(params),
    )
    return _one(backend, integration)


def describe_integrations(backend: Any, params: dict[str, str]) -> str:
    found = backend.describe_integrations(params.get("IntegrationArn"), _filters(params))
    items = "".join(f"<Integration>{_one(backend, integration)}</Integration>" for integration in found)
    return f"<Integrations>{items}</Integrations>"


def modify_integration(backend: Any, params: dict[str, str]) -> str:
    integration = backend.modify_integration(
        params.get("IntegrationArn", ""), params.get("Description"), params.get("IntegrationName")
    )
    return _one(backend, integration)


def delete_integration(backend: Any, params: dict[str, str]) -> str:
    integration = backend.delete_integration(params.get("IntegrationArn", ""))
    return integration_xml(integration, "deleting", [])


def _policy_xml(arn: str, policy: str) -> str:
    return f"<ResourcePolicy>{_element('ResourceArn', arn)}{_element('Policy', policy)}</ResourcePolicy>"


def put_resource_policy(backend: Any, params: dict[str, str]) -> str:
    arn = params.get("ResourceArn", "")
    return _policy_xml(arn, backend.put_resource_policy(arn, params.get("Policy", "")))


def get_resource_policy(backend: Any, params: dict[str, str]) -> str:
    arn = params.get("ResourceArn", "")
    return _policy_xml(arn, backend.get_resource_policy(arn))


OPERATIONS = {
    "CreateIntegration": _handler("CreateIntegration", create_integration),
    "DescribeIntegrations": _handler("DescribeIntegrations", describe_integrations),
    "ModifyIntegration": _handler("ModifyIntegration", modify_integration),
    "DeleteIntegration": _handler("DeleteIntegration", delete_integration),
    "PutResourcePolicy": _handler("PutResourcePolicy", put_resource_policy),
    "GetResourcePolicy": _handler("GetResourcePolicy", get_resource_policy),
}
# What these operations need in moto's own answers: the namespace ARN integrations target.
MOTO_ADDITIONS = (add_cluster_namespace_arn,)
