"""Behaviour of the Redshift fill-in: S3 event integrations (CreateIntegration, DescribeIntegrations,
ModifyIntegration, DeleteIntegration) and resource policies (PutResourcePolicy, GetResourcePolicy),
kept per account and region next to moto's clusters and buckets.

What AWS checks and this checks too: an integration's source is an existing bucket and its target
the namespace of an existing cluster; the integration is `active` only while the cluster's
resource policy authorises the bucket (redshift:AuthorizeInboundIntegration for
redshift.amazonaws.com, aws:SourceArn the bucket) and the bucket policy lets redshift.amazonaws.com
read and set the bucket's notifications; otherwise it `needs_attention`, with the reason in Errors.
"""

from __future__ import annotations

import fnmatch
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from deploy.emulator.fillins.core import FillinBackends

NAME_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9]*(-[a-zA-Z0-9]+)*$")
SERVICE_PRINCIPAL = "redshift.amazonaws.com"
# What the bucket policy must let Redshift do for an S3 event integration.
NOTIFICATION_ACTIONS = ("s3:GetBucketNotification", "s3:PutBucketNotification", "s3:GetBucketLocation")
AUTHORIZE_ACTION = "redshift:AuthorizeInboundIntegration"
FIX_NAME = "fillin_redshift_cluster_namespace_arn"


class RedshiftError(Exception):
    """An error answer: AWS's code, message and HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _partition(region: str) -> str:
    from deploy.aws import partition

    return partition(region)


def namespace_arn_of(cluster: Any) -> str:
    """The namespace ARN of a moto cluster: stable for the cluster's life, new if it is made again."""
    region, account = cluster.region, cluster.account_id
    seed = f"{account}/{region}/{cluster.cluster_identifier}/{cluster.unique_cluster_id}"
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, seed)
    return f"arn:{_partition(region)}:redshift:{region}:{account}:namespace:{namespace}"


def add_cluster_namespace_arn() -> None:
    """AWS: DescribeClusters answers each cluster's ClusterNamespaceArn, which integrations and
    resource policies name. moto 5.2.5: no such field. Its serializer reads `cluster_namespace_arn`
    from the model when there is one; this adds it (and fails if moto grew its own)."""
    from moto.redshift.models import Cluster

    from deploy.emulator.fixes import _added

    _added(Cluster, "cluster_namespace_arn", FIX_NAME, _NamespaceArn(namespace_arn_of))


class _NamespaceArn(property):
    """A property that can carry the fixes' mark (a plain property takes no attributes)."""


def _clusters(account_id: str, region: str) -> list[Any]:
    from moto.redshift.models import redshift_backends

    return list(redshift_backends[account_id][region].clusters.values())


def cluster_by_namespace(account_id: str, region: str, arn: str) -> Any | None:
    return next((c for c in _clusters(account_id, region) if namespace_arn_of(c) == arn), None)


def _bucket_policy(account_id: str, region: str, bucket_arn: str) -> dict[str, Any] | None:
    """The bucket's policy ({} when it has none), or None when there is no such bucket."""
    from moto.s3.exceptions import MissingBucket
    from moto.s3.models import s3_backends

    name = bucket_arn.split(":::", 1)[-1]
    try:
        bucket = s3_backends[account_id][_partition(region)].get_bucket(name)
    except MissingBucket:
        return None
    policy = bucket.policy
    return json.loads(policy) if policy else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in _as_list(policy.get("Statement", [])) if isinstance(s, dict)]


def _allows(statement: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> bool:
    """Whether an Allow statement grants the Redshift service `action` on `resource` in `context`
    (the StringEquals and StringLike conditions an integration's policies use; anything else
    counts as not granted, so a policy the emulator cannot judge fails loudly)."""
    if statement.get("Effect") != "Allow":
        return False
    principal = statement.get("Principal", {})
    if not isinstance(principal, dict) or SERVICE_PRINCIPAL not in _as_list(principal.get("Service", [])):
        return False
    if not any(fnmatch.fnmatchcase(action, pattern) for pattern in _as_list(statement.get("Action", []))):
        return False
    if not any(fnmatch.fnmatchcase(resource, pattern) for pattern in _as_list(statement.get("Resource", []))):
        return False
    for operator, tests in (statement.get("Condition") or {}).items():
        if operator not in ("StringEquals", "StringLike", "ArnLike", "ArnEquals"):
            return False
        for key, wanted in tests.items():
            have = context.get(key)
            exact = operator in ("StringEquals", "ArnEquals")
            matches = [have == w if exact else fnmatch.fnmatchcase(have or "", w) for w in _as_list(wanted)]
            if have is None or not any(matches):
                return False
    return True


@dataclass
class Integration:
    arn: str
    name: str
    source_arn: str
    target_arn: str
    description: str
    tags: list[dict[str, str]]
    created: datetime = field(default_factory=lambda: datetime.now(UTC))


class RedshiftFillin:
    """The integrations and resource policies of one account and region."""

    def __init__(self, account_id: str, region: str) -> None:
        self.account_id, self.region = account_id, region
        self.integrations: dict[str, Integration] = {}
        self.policies: dict[str, str] = {}

    # -- resource policies

    def _namespace(self, arn: str) -> Any:
        cluster = cluster_by_namespace(self.account_id, self.region, arn)
        if cluster is None:
            raise RedshiftError("ResourceNotFoundFault", f"The resource {arn} could not be found.", 404)
        return cluster

    def put_resource_policy(self, arn: str, policy: str) -> str:
        self._namespace(arn)
        try:
            document = json.loads(policy)
        except ValueError:
            raise RedshiftError("InvalidPolicyFault", "The resource policy isn't valid JSON.") from None
        if not _statements(document):
            raise RedshiftError("InvalidPolicyFault", "The resource policy has no statement.")
        self.policies[arn] = policy
        return policy

    def get_resource_policy(self, arn: str) -> str:
        self._namespace(arn)
        if arn not in self.policies:
            raise RedshiftError("ResourceNotFoundFault", f"No resource policy found for {arn}.", 404)
        return self.policies[arn]

    # -- integrations

    def create_integration(
        self, name: str, source_arn: str, target_arn: str, description: str, tags: list[dict[str, str]]
    ) -> Integration:
        if not NAME_PATTERN.match(name) or len(name) > 63:
            raise RedshiftError("InvalidParameterValue", f"Invalid integration name {name!r}.")
        if any(i.name == name for i in self.integrations.values()):
            raise RedshiftError("IntegrationAlreadyExistsFault", f"Integration {name} already exists.")
        if not source_arn.startswith(f"arn:{_partition(self.region)}:s3:::"):
            message = f"SourceArn {source_arn} is not an Amazon S3 bucket."
            raise RedshiftError("InvalidParameterValue", message)
        if _bucket_policy(self.account_id, self.region, source_arn) is None:
            raise RedshiftError("IntegrationSourceNotFoundFault", f"Source {source_arn} not found.", 404)
        if cluster_by_namespace(self.account_id, self.region, target_arn) is None:
            raise RedshiftError("IntegrationTargetNotFoundFault", f"Target {target_arn} not found.", 404)
        where = f"{_partition(self.region)}:redshift:{self.region}:{self.account_id}"
        arn = f"arn:{where}:integration:{uuid.uuid4()}"
        integration = Integration(arn, name, source_arn, target_arn, description, tags)
        self.integrations[arn] = integration
        return integration

    def get(self, arn: str) -> Integration:
        if arn not in self.integrations:
            raise RedshiftError("IntegrationNotFoundFault", f"Integration {arn} not found.", 404)
        return self.integrations[arn]

    def describe_integrations(self, arn: str | None, filters: dict[str, list[str]]) -> list[Integration]:
        found = [self.get(arn)] if arn else list(self.integrations.values())
        by = {
            "integration-arn": lambda i: i.arn,
            "source-arn": lambda i: i.source_arn,
            "source-types": lambda i: "s3",
            "status": lambda i: self.status(i)[0],
        }
        for name, values in filters.items():
            if name not in by:
                raise RedshiftError("InvalidParameterValue", f"Unknown filter {name}.")
            found = [i for i in found if by[name](i) in values]
        return sorted(found, key=lambda i: i.created)

    def modify_integration(self, arn: str, description: str | None, name: str | None) -> Integration:
        integration = self.get(arn)
        if name is not None and name != integration.name:
            if not NAME_PATTERN.match(name) or any(i.name == name for i in self.integrations.values()):
                raise RedshiftError("IntegrationAlreadyExistsFault", f"Integration {name} already exists.")
            integration.name = name
        if description is not None:
            integration.description = description
        return integration

    def delete_integration(self, arn: str) -> Integration:
        return self.integrations.pop(self.get(arn).arn)

    def status(self, integration: Integration) -> tuple[str, list[dict[str, str]]]:
        """`active`, or `needs_attention` with what is missing (as AWS reports a lost grant)."""
        errors = []
        cluster = cluster_by_namespace(self.account_id, self.region, integration.target_arn)
        policy = json.loads(self.policies.get(integration.target_arn, "{}"))
        context = {"aws:SourceArn": integration.source_arn}
        authorised = any(
            _allows(s, AUTHORIZE_ACTION, integration.target_arn, context) for s in _statements(policy)
        )
        if cluster is None:
            message = "The target cluster no longer exists."
            errors.append({"ErrorCode": "TargetNotFound", "ErrorMessage": message})
        elif not authorised:
            target, source = integration.target_arn, integration.source_arn
            message = f"The resource policy of {target} does not authorise {source}."
            errors.append({"ErrorCode": "UnauthorizedSource", "ErrorMessage": message})
        bucket = _bucket_policy(self.account_id, self.region, integration.source_arn) or {}
        context = {"aws:SourceArn": integration.arn, "aws:SourceAccount": self.account_id}
        missing = [
            action
            for action in NOTIFICATION_ACTIONS
            if not any(_allows(s, action, integration.source_arn, context) for s in _statements(bucket))
        ]
        if missing:
            actions = ", ".join(missing)
            message = (
                f"The bucket policy of {integration.source_arn} does not allow {SERVICE_PRINCIPAL} {actions}."
            )
            errors.append({"ErrorCode": "BucketPolicyMissingPermissions", "ErrorMessage": message})
        return ("needs_attention" if errors else "active"), errors


fillin_backends: FillinBackends[RedshiftFillin] = FillinBackends(RedshiftFillin)
