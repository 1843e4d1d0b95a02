"""Corrections to moto 5.2.5 where it departs from AWS, for the emulator and the unit tests alike.

Each fix is a small function named after what it corrects; its docstring says what AWS does and
what moto 5.2.5 did instead. The code they install is laid out like moto's, so each could be
offered upstream as it stands: backend methods (behaviour, `moto/<service>/models.py`) apart from
response methods (wire format, `moto/<service>/responses.py`, where an action name maps to a method
through `camelcase_to_underscores`). `apply()` installs them all, once per process; it checks that
what it patches exists (and that what it adds does not), so a moto upgrade that fixed or renamed
something fails loudly instead of being patched over silently.
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape, quoteattr

if TYPE_CHECKING:
    from moto.core.responses import ActionResult

MOTO_VERSION = "5.2.5"
# Set on every function a fix installs, so a second apply() can tell its own work from moto's.
FIX_MARK = "__moto_fix__"

_lock = threading.Lock()
_applied: set[str] = set()


class MotoFixError(RuntimeError):
    """Moto no longer looks the way a fix expects: review the fix against the new moto."""


def _require(owner: type | ModuleType, *names: str, fix: str) -> None:
    """Fail unless moto still has `owner.name` for each name (a method, property or class attribute)."""
    for name in names:
        if not hasattr(owner, name):
            raise _gone(owner, name, fix)


def _gone(owner: type | ModuleType, name: str, fix: str) -> MotoFixError:
    return MotoFixError(
        f"{fix}: moto has no {_where(owner)}.{name} any more (moto "
        f"{_installed_moto()}, fix written for {MOTO_VERSION}); check whether the fix is still needed"
    )


def _where(owner: type | ModuleType) -> str:
    return owner.__name__ if isinstance(owner, ModuleType) else f"{owner.__module__}.{owner.__name__}"


def _is_ours(function: object, fix: str) -> bool:
    return getattr(function, FIX_MARK, None) == fix


def _install(owner: type | ModuleType, name: str, fix: str, function: Callable[..., Any]) -> None:
    setattr(function, FIX_MARK, fix)
    setattr(owner, name, function)


def _replaced(owner: type, name: str, fix: str, function: Callable[..., Any]) -> None:
    """Replace moto's `owner.name` (which must be defined on owner itself) with `function`; once."""
    current = owner.__dict__.get(name)
    if _is_ours(current, fix):
        return
    if current is None:
        raise _gone(owner, name, fix)
    _install(owner, name, fix, function)


def _wrapped(
    owner: type | ModuleType, name: str, fix: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> None:
    """Replace moto's `owner.name` (a class's or a module's) with `wrap(moto's function)`; once."""
    current = owner.__dict__.get(name)
    if _is_ours(current, fix):
        return
    if current is None:
        raise _gone(owner, name, fix)
    _install(owner, name, fix, wrap(current))


def _added(owner: type, name: str, fix: str, function: Callable[..., Any]) -> None:
    """Add `owner.name`, which moto must still lack; once."""
    current = getattr(owner, name, None)
    if _is_ours(current, fix):
        return
    if current is not None:
        raise MotoFixError(
            f"{fix}: moto now has {owner.__module__}.{owner.__name__}.{name} (moto {_installed_moto()}, "
            f"fix written for {MOTO_VERSION}); drop the fix if moto's own does what AWS does"
        )
    _install(owner, name, fix, function)


def _overridden(
    owner: type, name: str, fix: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> None:
    """Give `owner` its own `name`: wrap(the method it inherits), which owner must not define; once."""
    current = owner.__dict__.get(name)
    if _is_ours(current, fix):
        return
    if current is not None:
        raise MotoFixError(
            f"{fix}: moto now defines {owner.__module__}.{owner.__name__}.{name} itself (moto "
            f"{_installed_moto()}, fix written for {MOTO_VERSION}); review the fix against it"
        )
    _require(owner, name, fix=fix)
    _install(owner, name, fix, wrap(getattr(owner, name)))


def _installed_moto() -> str:
    from importlib.metadata import version

    return version("moto")


# -- RDS ---------------------------------------------------------------------------------------


def rds_modify_db_subnet_group(
    self: Any, subnet_name: str, description: str | None, subnets: list[Any]
) -> Any:
    """RDSBackend.modify_db_subnet_group: the group keeps its name, gets the new subnets."""
    from moto.rds.exceptions import DBSubnetGroupNotFoundError

    subnet_group = self.subnet_groups.get(subnet_name)
    if subnet_group is None:
        raise DBSubnetGroupNotFoundError(subnet_name)
    subnet_group.subnets = subnets
    if description is not None:
        subnet_group.description = description
    return subnet_group


def fix_rds_modify_db_subnet_group_keeps_group() -> None:
    """AWS ModifyDBSubnetGroup keeps the group, with the new subnets (and description if given),
    and answers DBSubnetGroupNotFoundFault for an unknown name. moto 5.2.5's
    `RDSBackend.modify_db_subnet_group` pops the group from the backend and never puts it back, so
    the group is gone afterwards (and an unknown name raises KeyError, a 500)."""
    from moto.rds.models import RDSBackend

    fix = "rds_modify_db_subnet_group_keeps_group"
    _replaced(RDSBackend, "modify_db_subnet_group", fix, rds_modify_db_subnet_group)


# -- Redshift ----------------------------------------------------------------------------------


def redshift_modify_cluster_subnet_group(
    self: Any, cluster_subnet_group_name: str, description: str | None, subnet_ids: list[str]
) -> Any:
    """RedshiftBackend.modify_cluster_subnet_group: new subnets (one VPC), description if given."""
    from moto.redshift.exceptions import ClusterSubnetGroupNotFoundError, InvalidSubnetError

    subnet_group = self.subnet_groups.get(cluster_subnet_group_name)
    if subnet_group is None:
        raise ClusterSubnetGroupNotFoundError(cluster_subnet_group_name)
    found = self.ec2_backend.describe_subnets(filters={"subnet-id": subnet_ids})
    if not subnet_ids or len(found) != len(set(subnet_ids)) or len({s.vpc_id for s in found}) > 1:
        raise InvalidSubnetError(subnet_ids)
    subnet_group.subnet_ids = subnet_ids
    if description is not None:
        subnet_group.description = description
    return subnet_group


def redshift_modify_cluster_subnet_group_response(self: Any) -> ActionResult:
    """RedshiftResponse.modify_cluster_subnet_group: answers like CreateClusterSubnetGroup."""
    from moto.core.responses import ActionResult

    subnet_group = self.redshift_backend.modify_cluster_subnet_group(
        cluster_subnet_group_name=self._get_param("ClusterSubnetGroupName"),
        description=self._get_param("Description"),
        subnet_ids=self._get_param("SubnetIds", []),
    )
    return ActionResult({"ClusterSubnetGroup": subnet_group})


def fix_redshift_modify_cluster_subnet_group() -> None:
    """AWS ModifyClusterSubnetGroup (ClusterSubnetGroupName, SubnetIds, optional Description)
    replaces the group's subnets and returns the ClusterSubnetGroup as CreateClusterSubnetGroup
    does; an unknown name is ClusterSubnetGroupNotFoundFault. moto 5.2.5 does not implement it."""
    from moto.redshift.models import RedshiftBackend
    from moto.redshift.responses import RedshiftResponse

    fix = "redshift_modify_cluster_subnet_group"
    _added(RedshiftBackend, "modify_cluster_subnet_group", fix, redshift_modify_cluster_subnet_group)
    _added(
        RedshiftResponse, "modify_cluster_subnet_group", fix, redshift_modify_cluster_subnet_group_response
    )


def redshift_modify_cluster_iam_roles(
    self: Any,
    cluster_identifier: str,
    add_iam_roles: list[str] | None = None,
    remove_iam_roles: list[str] | None = None,
) -> Any:
    """RedshiftBackend.modify_cluster_iam_roles, as AWS: add and remove role ARNs."""
    cluster = self.describe_clusters(cluster_identifier)[0]
    kept = [arn for arn in cluster.iam_roles_arn if arn not in (remove_iam_roles or [])]
    cluster.iam_roles_arn = kept + [arn for arn in (add_iam_roles or []) if arn not in kept]
    return cluster


def redshift_modify_cluster_iam_roles_response(self: Any) -> ActionResult:
    """RedshiftResponse.modify_cluster_iam_roles: the wire format of ModifyClusterIamRoles."""
    from moto.core.responses import ActionResult

    cluster = self.redshift_backend.modify_cluster_iam_roles(
        self._get_param("ClusterIdentifier"),
        self._get_param("AddIamRoles", []),
        self._get_param("RemoveIamRoles", []),
    )
    return ActionResult({"Cluster": cluster})


def fix_redshift_modify_cluster_iam_roles() -> None:
    """AWS ModifyClusterIamRoles (ClusterIdentifier, AddIamRoles, RemoveIamRoles) changes the roles
    a cluster may assume (for COPY) and returns the Cluster. moto 5.2.5 does not implement it."""
    from moto.redshift.models import RedshiftBackend
    from moto.redshift.responses import RedshiftResponse

    fix = "redshift_modify_cluster_iam_roles"
    _added(RedshiftBackend, "modify_cluster_iam_roles", fix, redshift_modify_cluster_iam_roles)
    _added(RedshiftResponse, "modify_cluster_iam_roles", fix, redshift_modify_cluster_iam_roles_response)


# -- ElastiCache -------------------------------------------------------------------------------


def elasticache_modify_cache_subnet_group(
    self: Any,
    cache_subnet_group_name: str,
    cache_subnet_group_description: str | None,
    subnet_ids: list[str] | None,
) -> Any:
    """ElastiCacheBackend.modify_cache_subnet_group: new subnets and/or description, same ARN and tags."""
    from moto.elasticache.exceptions import CacheSubnetGroupNotFound
    from moto.elasticache.models import CacheSubnetGroup

    existing = self.cache_subnet_groups.get(cache_subnet_group_name)
    if existing is None:
        raise CacheSubnetGroupNotFound(cache_subnet_group_name)
    # The constructor checks the subnets and derives their zones, VPC and network types, as on create.
    updated = CacheSubnetGroup(
        account_id=self.account_id,
        region_name=self.region_name,
        cache_subnet_group_name=cache_subnet_group_name,
        cache_subnet_group_description=(
            existing.cache_subnet_group_description
            if cache_subnet_group_description is None
            else cache_subnet_group_description
        ),
        subnet_ids=subnet_ids or existing.subnet_ids,
        tags=existing.tags,
    )
    self.cache_subnet_groups[cache_subnet_group_name] = updated
    return updated


def elasticache_modify_cache_subnet_group_response(self: Any) -> ActionResult:
    """ElastiCacheResponse.modify_cache_subnet_group: answers like CreateCacheSubnetGroup."""
    from moto.core.responses import ActionResult

    cache_subnet_group = self.elasticache_backend.modify_cache_subnet_group(
        cache_subnet_group_name=self._get_param("CacheSubnetGroupName"),
        cache_subnet_group_description=self._get_param("CacheSubnetGroupDescription"),
        subnet_ids=self._get_param("SubnetIds"),
    )
    return ActionResult({"CacheSubnetGroup": cache_subnet_group})


def fix_elasticache_modify_cache_subnet_group() -> None:
    """AWS ModifyCacheSubnetGroup (CacheSubnetGroupName, optional CacheSubnetGroupDescription and
    SubnetIds) updates the group and returns the CacheSubnetGroup; an unknown name is
    CacheSubnetGroupNotFoundFault. moto 5.2.5 does not implement it."""
    from moto.elasticache.models import ElastiCacheBackend
    from moto.elasticache.responses import ElastiCacheResponse

    fix = "elasticache_modify_cache_subnet_group"
    _added(ElastiCacheBackend, "modify_cache_subnet_group", fix, elasticache_modify_cache_subnet_group)
    _added(
        ElastiCacheResponse, "modify_cache_subnet_group", fix, elasticache_modify_cache_subnet_group_response
    )


def _elasticache_num_cache_clusters(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def _set_node_members_clusters_disabled(
        self: Any, *, num_cache_clusters: int, replicas_per_node_group: int, **kwargs: Any
    ) -> None:
        """ReplicationGroup members, as AWS: NumCacheClusters = 1 primary + replicas."""
        replicas = replicas_per_node_group or max((num_cache_clusters or 1) - 1, 0)
        original(self, num_cache_clusters=num_cache_clusters, replicas_per_node_group=replicas, **kwargs)

    return _set_node_members_clusters_disabled


def fix_elasticache_num_cache_clusters() -> None:
    """AWS CreateReplicationGroup with NumCacheClusters (cluster mode disabled) makes that many
    clusters: one primary and the rest replicas. moto 5.2.5 ignores NumCacheClusters and makes the
    primary alone unless ReplicasPerNodeGroup is given."""
    from moto.elasticache.models import ReplicationGroup

    fix = "elasticache_num_cache_clusters"
    _wrapped(ReplicationGroup, "_set_node_members_clusters_disabled", fix, _elasticache_num_cache_clusters)


# -- DynamoDB ----------------------------------------------------------------------------------


def dynamodb_update_table_sse(self: Any, name: str, sse_specification: dict[str, Any]) -> Any:
    """DynamoDBBackend.update_table_sse: KMS with the given key (reported by ARN) or the AWS
    managed key; Enabled false goes back to the AWS owned key, which DescribeTable does not show."""
    table = self.get_table(name)
    if not sse_specification.get("Enabled"):
        table.sse_specification = None
        return table
    key = sse_specification.get("KMSMasterKeyId")
    table.sse_specification = {
        "Enabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": (
            _kms_key_arn(self.account_id, self.region_name, key)
            if key
            else table._get_default_encryption_key(self.account_id, self.region_name)
        ),
    }
    return table


def _kms_key_arn(account_id: str, region: str, key: str) -> str:
    """The ARN of a KMS key named by id, ARN, alias or alias ARN; the name itself if moto has no such key
    (moto's CreateTable keeps an unknown key as given too)."""
    from moto.kms import kms_backends

    kms = kms_backends[account_id][region]
    alias = kms.get_alias_name(key)
    key_id = kms.get_key_id_from_alias(alias) if alias.startswith("alias/") else kms.get_key_id(key)
    found = kms.keys.get(key_id) if key_id else None
    return found.arn if found is not None else key


def _dynamodb_update_table_response(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @functools.wraps(original)
    def update_table(self: Any) -> Any:
        """DynamoHandler.update_table, also applying SSESpecification."""
        from moto.dynamodb.responses import DynamoResult

        result = original(self)
        sse_specification = self.body.get("SSESpecification")
        if sse_specification is None:
            return result
        table = self.dynamodb_backend.update_table_sse(self.body["TableName"], sse_specification)
        return DynamoResult(table.describe())

    return update_table


def fix_dynamodb_update_table_sse() -> None:
    """AWS UpdateTable applies SSESpecification (Enabled, SSEType KMS, KMSMasterKeyId): afterwards
    DescribeTable's SSEDescription shows KMS and the key's ARN. moto 5.2.5's UpdateTable ignores
    SSESpecification, so a table created without encryption never shows any."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoHandler

    fix = "dynamodb_update_table_sse"
    _require(Table, "_get_default_encryption_key", "describe", fix=fix)
    _require(DynamoHandler, "dynamodb_backend", fix=fix)
    _added(DynamoDBBackend, "update_table_sse", fix, dynamodb_update_table_sse)
    _wrapped(DynamoHandler, "update_table", fix, _dynamodb_update_table_response)


# -- SQS ---------------------------------------------------------------------------------------


def _sqs_set_attributes(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def _set_attributes(self: Any, attributes: dict[str, Any], now: float | None = None) -> None:
        """Queue._set_attributes, leaving Policy alone unless named; an empty RedriveAllowPolicy clears it."""
        # Absent on the first call, from Queue.__init__ (which always names Policy).
        kept_policy = None if "Policy" in attributes else getattr(self, "_policy_json", None)
        original(self, attributes, now)
        if kept_policy is not None:
            self._policy_json = kept_policy
        if attributes.get("RedriveAllowPolicy") == "":
            self.redrive_allow_policy = None

    return _set_attributes


def fix_sqs_queue_attributes() -> None:
    """AWS SetQueueAttributes changes only the attributes it names, and GetQueueAttributes returns
    RedriveAllowPolicy (by name or with All) once set. moto 5.2.5's `Queue._set_attributes` sets
    `self.policy = attributes.get("Policy")`, so any SetQueueAttributes without Policy wipes the
    queue policy; and RedriveAllowPolicy, accepted on CreateQueue/SetQueueAttributes, is never
    returned (asking for it by name is even InvalidAttributeName)."""
    from moto.sqs.models import Queue

    fix = "sqs_queue_attributes"
    _require(Queue, "BASE_ATTRIBUTES", "attributes", "policy", fix=fix)
    if _is_ours(Queue.__dict__.get("_set_attributes"), fix):
        return
    if "RedriveAllowPolicy" in Queue.BASE_ATTRIBUTES:
        raise MotoFixError(
            f"{fix}: moto now returns RedriveAllowPolicy; check whether the fix is still needed"
        )
    # Queue.attributes reads each base attribute by its snake_case name; None means not returned.
    Queue.redrive_allow_policy = None
    Queue.BASE_ATTRIBUTES.append("RedriveAllowPolicy")
    _wrapped(Queue, "_set_attributes", fix, _sqs_set_attributes)


# -- SES ---------------------------------------------------------------------------------------

SES_NOTIFICATION_TYPES = ("Bounce", "Complaint", "Delivery")


def _ses_notification_attributes(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def get_identity_notification_attributes(self: Any, identities: list[str]) -> dict[str, dict[str, Any]]:
        """SESBackend.get_identity_notification_attributes, with each identity's topics."""
        result = original(self, identities)
        for identity, attributes in result.items():
            topics = self.sns_topics.get(identity, {})
            for kind in SES_NOTIFICATION_TYPES:
                if topics.get(kind):
                    attributes[f"{kind}Topic"] = topics[kind]
        return result

    return get_identity_notification_attributes


def fix_ses_identity_notification_topics() -> None:
    """AWS GetIdentityNotificationAttributes returns BounceTopic, ComplaintTopic and DeliveryTopic
    for the topics SetIdentityNotificationTopic set. moto 5.2.5 stores them (`SESBackend.sns_topics`)
    but leaves them out of the answer, so a topic once set never reads back."""
    from moto.ses.models import SESBackend

    fix = "ses_identity_notification_topics"
    _require(SESBackend, "set_identity_notification_topic", fix=fix)
    _wrapped(SESBackend, "get_identity_notification_attributes", fix, _ses_notification_attributes)


# -- EC2 ---------------------------------------------------------------------------------------


def _ec2_default_vpc_internet_gateway(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def create_default_vpc(self: Any) -> Any:
        """VPCBackend.create_default_vpc, with the internet gateway and the route to it."""
        vpc = original(self)
        gateway = self.create_internet_gateway()
        self.attach_internet_gateway(gateway.id, vpc.id)
        (main,) = [t for t in self.route_tables.values() if t.vpc_id == vpc.id and t.main_association_id]
        self.create_route(main.id, "0.0.0.0/0", gateway_id=gateway.id)
        return vpc

    return create_default_vpc


def fix_ec2_default_vpc_internet_gateway() -> None:
    """AWS's default VPC has an internet gateway attached and, in its main route table, a route
    sending 0.0.0.0/0 to it: its subnets are public (instances there get public addresses and
    reach the internet). moto 5.2.5 makes the default VPC and its subnets with neither, so they
    look private to anything that reads their routes."""
    from moto.ec2.models.internet_gateways import InternetGatewayBackend
    from moto.ec2.models.route_tables import RouteBackend
    from moto.ec2.models.vpcs import VPCBackend

    fix = "ec2_default_vpc_internet_gateway"
    _require(InternetGatewayBackend, "create_internet_gateway", "attach_internet_gateway", fix=fix)
    _require(RouteBackend, "create_route", fix=fix)
    _wrapped(VPCBackend, "create_default_vpc", fix, _ec2_default_vpc_internet_gateway)


# The tag filters every EC2 Describe call takes, besides `tag:<key>`.
TAG_FILTERS = ("tag-key", "tag-value")


def _ec2_nat_gateway_tag_filters(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def describe_nat_gateways(self: Any, filters: Any, nat_gateway_ids: list[str] | None) -> Any:
        """NatGatewayBackend.describe_nat_gateways, also applying tag:<key>, tag-key and tag-value."""
        from moto.ec2.utils import generic_filter

        found = original(self, filters, nat_gateway_ids)
        tagged = {k: v for k, v in (filters or {}).items() if k.startswith("tag:") or k in TAG_FILTERS}
        return generic_filter(tagged, found)

    return describe_nat_gateways


def fix_ec2_nat_gateway_tag_filters() -> None:
    """AWS DescribeNatGateways takes the tag filters (`tag:<key>`, `tag-key`, `tag-value`) as every
    EC2 Describe call does: a NAT gateway is found by its Name tag. moto 5.2.5 applies only
    nat-gateway-id, vpc-id, subnet-id and state, and silently ignores the others, so a tag filter
    returns every NAT gateway of the region."""
    from moto.ec2.models.nat_gateways import NatGateway, NatGatewayBackend

    fix = "ec2_nat_gateway_tag_filters"
    _require(NatGateway, "get_filter_value", fix=fix)
    _wrapped(NatGatewayBackend, "describe_nat_gateways", fix, _ec2_nat_gateway_tag_filters)


# -- concurrency -------------------------------------------------------------------------------
_moto_lock = threading.RLock()


def fix_serialize_in_process_requests() -> None:
    """AWS serves concurrent requests safely. moto's backends are plain dicts changed without locks,
    so requests from several threads at once (the executor converges resources side by side) can
    fail inside moto with "dictionary changed size during iteration". Under mock_aws, requests
    reach moto through BotocoreStubber.__call__: take one lock there. (The emulator's server takes
    the same kind of lock in EmulatorApp.)"""
    from moto.core.botocore_stubber import BotocoreStubber

    fix = "serialize_in_process_requests"

    def serialized(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
            with _moto_lock:
                return original(self, *args, **kwargs)

        return __call__

    _wrapped(BotocoreStubber, "__call__", fix, serialized)


# -- speed -------------------------------------------------------------------------------------


def _fast_timestamps(original: Callable[..., str]) -> Callable[..., str]:
    from datetime import UTC, datetime

    @functools.wraps(original)
    def _convert_timestamp_to_str(self: Any, value: Any, timestamp_format: str) -> str:
        if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T":
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                return original(self, value, timestamp_format)
            aware = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
            return getattr(self, f"_timestamp_{timestamp_format.lower()}")(aware)
        return original(self, value, timestamp_format)

    return _convert_timestamp_to_str


def fix_serialize_timestamps_fast() -> None:
    """moto keeps many timestamps as ISO-8601 strings and parses each back with dateutil when it
    writes a response: most of the emulator's time on a listing of 1,000 objects (0.13 s a page,
    where S3 answers in tens of milliseconds). Parse the ISO-8601 ones with the standard library
    instead; the answer is the same string."""
    from moto.core.serialize import TimestampSerializer

    _wrapped(TimestampSerializer, "_convert_timestamp_to_str", "serialize_timestamps_fast", _fast_timestamps)


LISTING_FIELDS = frozenset(
    {
        "Name",
        "Prefix",
        "MaxKeys",
        "EncodingType",
        "KeyCount",
        "IsTruncated",
        "Contents",
        "NextContinuationToken",
    }
)
OBJECT_FIELDS = ("Key", "LastModified", "ETag", "ChecksumAlgorithm", "Size", "StorageClass")
S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"


def _xml_text(value: Any) -> str:
    from xml.sax.saxutils import escape

    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


def _listing_xml(result: dict[str, Any]) -> bytes:
    """moto's own ListObjectsV2 document, byte for byte, for a listing without delimiter or owners
    (tests/test_moto_fixes.py compares the two)."""
    out = ['<?xml version="1.0" encoding="utf-8"?>\n', f'<ListBucketResult xmlns="{S3_NAMESPACE}">']
    out.append(f"<IsTruncated>{_xml_text(result['IsTruncated'])}</IsTruncated>")
    for item in result["Contents"]:
        out.append("<Contents>")
        for name in OBJECT_FIELDS:
            if name == "ChecksumAlgorithm":
                out.extend(f"<{name}>{_xml_text(v)}</{name}>" for v in item.get(name, ()))
            elif name in item:
                out.append(f"<{name}>{_xml_text(item[name])}</{name}>")
        out.append("</Contents>")
    for name in ("Name", "Prefix", "MaxKeys", "EncodingType", "KeyCount", "NextContinuationToken"):
        if name in result:
            text = _xml_text(result[name])
            out.append(f"<{name}>{text}</{name}>" if text else f"<{name}/>")
    out.append("</ListBucketResult>")
    return "".join(out).encode()


def _is_plain_listing(result: Any) -> bool:
    return (
        isinstance(result, dict)
        and set(result) <= LISTING_FIELDS
        and all(set(item) <= set(OBJECT_FIELDS) for item in result.get("Contents", ()))
    )


def _fast_listing(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def serialized(self: Any, action_result: Any) -> Any:
        result = getattr(action_result, "result", None)
        if self.data.get("Action") != "ListObjectsV2" or not _is_plain_listing(result):
            return original(self, action_result)
        headers = {"Content-Type": "application/xml", **self.response_headers}
        return 200, headers, _listing_xml(result)

    return serialized


def fix_s3_listing_fast() -> None:
    """moto writes a listing through its generic, model-driven serializer: about 90 ms for a page
    of 1,000 objects, where S3 answers in tens of milliseconds, so a sync of a few thousand files
    spends its time waiting on the emulator. Write the common listing (no delimiter, no
    owners) directly; anything else still goes through moto."""
    from moto.s3.responses import S3Response

    _overridden(S3Response, "serialized", "s3_listing_fast", _fast_listing)


# Hosts a server app has resolved to a backend, at most this many (they are few: a host is named
# after a service and a region).
BACKEND_HOSTS_KEPT = 1024


def _backend_for_host_cached(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def get_backend_for_host(self: Any, host: str | None) -> Any:
        known = self.__dict__.setdefault("_backend_of_host", {})
        backend = known.get(host)
        if backend is None:
            backend = original(self, host)
            # Found or not depends on the host alone: moto's folders and its URL patterns. Only a
            # found one is kept, so an unknown host still gets moto's message every time.
            if backend is not None and len(known) < BACKEND_HOSTS_KEPT:
                known[host] = backend
        return backend

    return get_backend_for_host


def fix_server_backend_for_host_cached() -> None:
    """moto's server finds the backend of every request's host by listing its own package folders
    (`list_of_moto_modules`: a listdir and ~200 isdir calls) and then trying ~300 URL patterns,
    all under the dispatcher's lock: a few percent of the emulator's CPU per request. The answer
    for a host never changes: remember it per host."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    fix = "server_backend_for_host_cached"
    _wrapped(DomainDispatcherApplication, "get_backend_for_host", fix, _backend_for_host_cached)


def has_function(clazz: type, name: str) -> bool:
    """Whether `name` is among `moto.core.utils.method_names_from_class(clazz)` (the names that
    `inspect.getmembers(clazz, inspect.isfunction)` gives), from that one name alone."""
    for klass in clazz.__mro__:
        if name in klass.__dict__:
            break
    else:
        return False  # not in dir(clazz)
    try:
        value = getattr(clazz, name)
    except AttributeError:
        value = klass.__dict__[name]  # as getmembers falls back to, for a descriptor that refuses
    return inspect.isfunction(value)


class FunctionNames(Sequence[str]):
    """moto's `method_names_from_class(clazz)`, a list made only if it is read as one: `name in`
    asks the class about that name alone."""

    def __init__(self, clazz: type, names_of: Callable[[type], list[str]]) -> None:
        self._clazz = clazz
        self._names_of = names_of
        self._names: list[str] | None = None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and has_function(self._clazz, name)

    def _all(self) -> list[str]:
        if self._names is None:
            self._names = self._names_of(self._clazz)
        return self._names

    def __getitem__(self, index: Any) -> Any:
        return self._all()[index]

    def __len__(self) -> int:
        return len(self._all())

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        return self._all() == other

    __hash__ = None  # type: ignore[assignment]  # a list is not hashable either

    def __repr__(self) -> str:
        return repr(self._all())


def _lazy_method_names(original: Callable[[Any], list[str]]) -> Callable[[Any], Sequence[str]]:
    @functools.wraps(original)
    def method_names_from_class(clazz: Any) -> Sequence[str]:
        if not isinstance(clazz, type) or any(type(klass) is not type for klass in clazz.__mro__):
            return original(clazz)  # a metaclass may list its members its own way
        return FunctionNames(clazz, original)

    return method_names_from_class


def fix_action_lookup_by_name() -> None:
    """moto's BaseResponse.call_action asks whether the request's action is a method of the
    response class with `action in method_names_from_class(cls)`: `inspect.getmembers` over the
    class's ~100-300 attributes, sorted, on every request (a few percent of the emulator's CPU).
    Answer that membership from the class's own attributes for that one name; the list is still
    made if anything reads it as a list."""
    import moto.core.responses

    fix = "action_lookup_by_name"
    _require(moto.core.responses.BaseResponse, "call_action", fix=fix)
    _wrapped(moto.core.responses, "method_names_from_class", fix, _lazy_method_names)


def _plain_headers_environ(original: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
    @functools.wraps(original)
    def make_environ(self: Any) -> dict[str, Any]:
        from moto.core.request import PRESERVED_HEADER_NAMES_ENVIRON_KEY
        from moto.moto_server.werkzeug_app import MotoRequestHandler

        if any("_" in name for name in self.headers):
            return original(self)
        # No name to preserve (moto keeps only names with an underscore): werkzeug's environ, as
        # moto's own would leave it.
        environ = super(MotoRequestHandler, self).make_environ()
        environ[PRESERVED_HEADER_NAMES_ENVIRON_KEY] = {}
        return environ

    return make_environ


def fix_server_environ_of_plain_headers() -> None:
    """moto's server request handler rebuilds the environ key of every header and checks every
    header name, to keep the spelling of S3 metadata names with underscores: work for nothing
    on a request whose header names have no underscore (nearly all). Skip it for those."""
    from moto.core.request import should_preserve_original_header_name
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    fix = "server_environ_of_plain_headers"
    if should_preserve_original_header_name("x-amz-meta-dashed-only"):
        raise MotoFixError(f"{fix}: moto now keeps header names without an underscore; review the fix")
    _wrapped(MotoRequestHandler, "make_environ", fix, _plain_headers_environ)


XML_NAMES_KEPT = 10_000


def _validated_names(original: Callable[[Any, str], None]) -> Callable[[Any, str], None]:
    valid: set[tuple[str, str]] = set()

    @functools.wraps(original)
    def _validate_name(value: Any, kind: str) -> None:
        if type(value) is not str or (value, kind) not in valid:
            original(value, kind)  # raises for a name that is not valid
            if type(value) is str and len(valid) < XML_NAMES_KEPT:
                valid.add((value, kind))

    return _validate_name


def fix_xml_names_validated_once() -> None:
    """moto writes XML answers with xmltodict.unparse, which checks every element name character
    by character, on every element of every answer (a tenth of the XML writing). The names come
    from the service models, a few hundred: check each once."""
    import xmltodict

    _require(xmltodict, "unparse", "_emit", fix="xml_names_validated_once")
    _wrapped(xmltodict, "_validate_name", "xml_names_validated_once", _validated_names)


class _NotPlain(Exception):
    """A document with what the plain XML writer leaves to xmltodict (comments)."""


class _XmlWriter:
    """xmltodict's XML generator (xml.sax.saxutils.XMLGenerator), writing into a list."""

    __slots__ = ("out", "pending", "short")

    def __init__(self, short_empty_elements: bool) -> None:
        self.out: list[str] = []
        self.pending = False
        self.short = short_empty_elements

    def start(self, name: str, attrs: dict[str, str]) -> None:
        if self.pending:
            self.out.append(">")
            self.pending = False
        self.out.append("<" + name)
        for attr, value in attrs.items():
            self.out.append(f" {attr}={quoteattr(value)}")
        if self.short:
            self.pending = True
        else:
            self.out.append(">")

    def characters(self, content: str) -> None:
        if content:
            if self.pending:
                self.out.append(">")
                self.pending = False
            self.out.append(escape(content))

    def end(self, name: str) -> None:
        if self.pending:
            self.out.append("/>")
            self.pending = False
        else:
            self.out.append(f"</{name}>")


def _emit_plain(key: Any, value: Any, writer: _XmlWriter, depth: int, full_document: bool) -> None:
    """xmltodict._emit with its defaults (no namespaces, preprocessor, pretty printing or
    expand_iter), element by element in the same order, so the same names fail the same way."""
    xmltodict = sys.modules["xmltodict"]
    if isinstance(key, str) and key == "#comment":
        raise _NotPlain
    xmltodict._validate_name(key, "element")
    if not hasattr(value, "__iter__") or isinstance(value, str | bytes | bytearray | memoryview | dict):
        value = [value]
    text = xmltodict._convert_value_to_string
    for index, item in enumerate(value):
        if full_document and depth == 0 and index > 0:
            raise ValueError("document with multiple roots")
        if item is None:
            item = {}
        elif not isinstance(item, dict | str):
            item = text(item)
        if isinstance(item, str):
            item = {"#text": item}
        cdata = None
        attrs: dict[str, str] = {}
        children = []
        for child_key, child in item.items():
            if child_key == "#text":
                cdata = None if child is None else text(child)
                continue
            if isinstance(child_key, str) and child_key.startswith("@"):
                if child_key == "@xmlns" and isinstance(child, dict):
                    for prefix, uri in child.items():
                        xmltodict._validate_name(prefix, "attribute")
                        attrs["xmlns{}".format(f":{prefix}" if prefix else "")] = (
                            "" if uri is None else text(uri)
                        )
                    continue
                if child is None:
                    child = ""
                elif not isinstance(child, str):
                    child = text(child)
                name = child_key[1:]
                xmltodict._validate_name(name, "attribute")
                attrs[name] = child
                continue
            if isinstance(child, list) and not child:
                continue
            children.append((child_key, child))
        writer.start(key, attrs)
        for child_key, child in children:
            _emit_plain(child_key, child, writer, depth + 1, True)
        if cdata is not None:
            writer.characters(cdata)
        writer.end(key)


def _plain_unparse(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def unparse(
        input_dict: Any,
        output: Any = None,
        encoding: str = "utf-8",
        full_document: bool = True,
        short_empty_elements: bool = False,
        comment_key: str = "#comment",
        **kwargs: Any,
    ) -> Any:
        plain = (
            type(input_dict) is dict
            and output is None
            and encoding == "utf-8"
            and comment_key == "#comment"
            and set(kwargs) <= {"pretty"}
            and not kwargs.get("pretty")
        )
        if plain:
            try:
                return _unparse_plain(input_dict, full_document, short_empty_elements)
            except _NotPlain:
                pass
        return original(
            input_dict, output, encoding, full_document, short_empty_elements, comment_key, **kwargs
        )

    return unparse


def _unparse_plain(document: dict[Any, Any], full_document: bool, short_empty_elements: bool) -> str:
    """xmltodict.unparse(document, full_document=..., short_empty_elements=...) into a string."""
    writer = _XmlWriter(short_empty_elements)
    if full_document:
        writer.out.append('<?xml version="1.0" encoding="utf-8"?>\n')
    seen_root = False
    for key, value in document.items():
        if key != "#comment" and full_document and seen_root:
            raise ValueError("Document must have exactly one root.")
        _emit_plain(key, value, writer, 0, full_document)
        if key != "#comment":
            seen_root = True
    if full_document and not seen_root:
        raise ValueError("Document must have exactly one root.")
    return "".join(writer.out)


def fix_xml_written_plainly() -> None:
    """moto writes every XML answer with xmltodict.unparse: a SAX generator called per element
    and per piece of text, fourteen keyword arguments passed down each level of a recursion.
    Write the same document directly into a list (tests/test_moto_fixes.py compares the two on
    many documents, odd ones included); anything but the plain options goes to xmltodict."""
    import xmltodict

    fix = "xml_written_plainly"
    _require(xmltodict, "_emit", "_convert_value_to_string", "_validate_name", fix=fix)
    _wrapped(xmltodict, "unparse", fix, _plain_unparse)


# How many times moto's BackendDict.reset has run: a backend dict registered since the last reset
# is still in BackendDict._instances (only a reset takes any out).
_resets = [0]


def _counted_reset(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def reset(cls: Any) -> None:
        try:
            original.__func__(cls)
        finally:
            _resets[0] += 1

    return classmethod(reset)  # type: ignore[return-value]


def _known_account(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def __getitem__(self: Any, account_id: str) -> Any:
        if self.__dict__.get("_registered_since") == _resets[0] and dict.__contains__(self, account_id):
            # What moto's would do: nothing to create, nothing to register; then the lookup.
            return dict.__getitem__(self, account_id)
        since = _resets[0]
        found = original(self, account_id)  # creates the account's backends, registers self
        self._registered_since = since
        return found

    return __getitem__


def fix_backend_lookup_of_a_known_account() -> None:
    """Every lookup of a service's backends (sqs_backends[account]) takes moto's backend lock,
    lists the dict's keys and looks for the dict among all registered ones by equality (a
    Python __eq__ per registered service), to register it for reset: several times a request.
    Once the account is there and the dict registered since the last reset, that is all done:
    look the account up directly."""
    from moto.core.base_backend import BackendDict

    fix = "backend_lookup_of_a_known_account"
    _require(BackendDict, "_create_account_specific_backend", "_instances", fix=fix)
    current = BackendDict.__dict__.get("reset")
    if not _is_ours(current, fix):
        if not isinstance(current, classmethod):
            raise _gone(BackendDict, "reset", fix)
        _install(BackendDict, "reset", fix, _counted_reset(current))
    _wrapped(BackendDict, "__getitem__", fix, _known_account)


def _random_string(original: Callable[..., str]) -> Callable[..., str]:
    import string

    @functools.wraps(original)
    def get_random_string(
        self: Any, length: int = 20, include_digits: bool = True, lower_case: bool = False
    ) -> str:
        pool = string.ascii_letters + string.digits if include_digits else string.ascii_letters
        # Random.choice(pool) for each character, inline: the same draws, so a seeded moto still
        # gives the same identifiers after it.
        size = len(pool)
        bits = size.bit_length()
        getrandbits = self.getrandbits
        chosen = []
        for _ in range(length):
            drawn = getrandbits(bits)
            while drawn >= size:
                drawn = getrandbits(bits)
            chosen.append(pool[drawn])
        text = "".join(chosen)
        return text.lower() if lower_case else text

    return get_random_string


def fix_random_strings_fast() -> None:
    """moto draws every request id (52 characters) with random.choice per character, two Python
    calls a character: a few percent of the emulator's CPU per request. Draw the same characters
    with the same random bits in one loop."""
    import random

    from moto.moto_api._internal.moto_random import MotoRandom

    fix = "random_strings_fast"
    same_draws = (
        MotoRandom.choice is random.Random.choice
        and MotoRandom._randbelow is random.Random._randbelow_with_getrandbits
    )
    if not same_draws:
        raise MotoFixError(f"{fix}: moto or Python now draws random choices differently; review the fix")
    _wrapped(MotoRandom, "get_random_string", fix, _random_string)


# Action names converted to method names, at most this many (a service has a few hundred actions).
ACTION_NAMES_KEPT = 10_000


def _converted_once(original: Callable[[str], str]) -> Callable[[str], str]:
    converted: dict[str, str] = {}

    @functools.wraps(original)
    def camelcase_to_underscores(argument: str) -> str:
        if type(argument) is not str:
            return original(argument)
        name = converted.get(argument)
        if name is None:
            name = original(argument)
            if len(converted) < ACTION_NAMES_KEPT:
                converted[argument] = name
        return name

    return camelcase_to_underscores


def fix_action_names_converted_once() -> None:
    """moto's call_action turns the request's action (DescribeVpcs) into its method name
    (describe_vpcs) character by character, with string concatenation, on every request. The
    answer depends on the name alone: convert each once."""
    import moto.core.responses

    _wrapped(moto.core.responses, "camelcase_to_underscores", "action_names_converted_once", _converted_once)


# Candidate attribute names the serializer has worked out, at most this many (one per member of
# a shape the emulator has answered with, and class of the object it was read from).
PICKED_KEYS_KEPT = 50_000


def _remembered_keys(original: Callable[..., Any]) -> Callable[..., Any]:
    import moto.core.serialize as serialize

    known_providers = list(serialize.DEFAULT_ALIAS_PROVIDERS)
    pickers = (serialize.AttributePicker, serialize.XFormedAttributePicker)
    remembered: dict[tuple[Any, ...], list[str]] = {}

    @functools.wraps(original)
    def get_value(self: Any, value: Any, key: str, shape: Any) -> Any:
        picker = self._value_picker
        if type(picker) not in pickers or shape is None or picker.alias_providers != known_providers:
            return original(self, value, key, shape)
        try:
            # Everything the default alias providers read: the key; the shape, its parent (a
            # structure's members are its own) and so its names and serialization; the class name
            # of the object; the object's explicit alias for the key (Meta.serialization_aliases).
            missing = serialize.MISSING
            meta = getattr(value, "Meta", missing)
            aliases = getattr(meta, "serialization_aliases", missing) if meta is not missing else missing
            explicit = aliases[key] if aliases is not missing and key in aliases else missing
            parent = getattr(shape, "parent", missing)
            asked = (type(picker), key, shape, parent, value.__class__.__name__, explicit)
            keys = remembered.get(asked)
        except Exception:
            return original(self, value, key, shape)
        if keys is None:
            context = serialize.AttributePickerContext(
                obj=value,
                key=key,
                shape=shape,
                operation_model=self.operation_model,
                service_model=self.operation_model.service_model,
                key_path=".".join(self.path),
            )
            try:
                keys = list(picker.get_possible_keys(context))
            except Exception:
                return original(self, value, key, shape)
            if len(remembered) < PICKED_KEYS_KEPT:
                remembered[asked] = keys
        # AttributePicker.__call__, with those keys.
        for possible_key in keys:
            found = serialize.get_value(value, possible_key, serialize.MISSING)
            if found is not serialize.MISSING:
                break
        else:
            found = None
        if picker.response_transformers:
            key_path = f"{'.'.join(self.path)}.{key}"
            for transform_path, transform in picker.response_transformers.items():
                if key_path.endswith(transform_path):
                    return transform(found)
        return found

    return get_value


def fix_serializer_remembers_attribute_names() -> None:
    """moto's response serializer finds each member's value on the backend object by trying the
    names six alias providers suggest (an object of each made per member, per object, per
    answer): most of the time it spends walking a result. The names depend only on the member's
    shape, the object's class and its explicit aliases: work them out once for each, and read
    the value as moto does. A picker with other providers still goes through moto."""
    import moto.core.serialize as serialize

    fix = "serializer_remembers_attribute_names"
    _require(serialize.AttributePicker, "get_possible_keys", fix=fix)
    _require(serialize, "AttributePickerContext", "DEFAULT_ALIAS_PROVIDERS", "MISSING", "get_value", fix=fix)
    expected = [
        "ExplicitAlias",
        "ShapeNameAlias",
        "NoAlias",
        "ShapePrefixAlias",
        "ClassPrefixAlias",
        "ModelAlias",
    ]
    if [provider.__name__ for provider in serialize.DEFAULT_ALIAS_PROVIDERS] != expected:
        raise MotoFixError(
            f"{fix}: moto's alias providers changed; check what they read before keeping the fix"
        )
    _wrapped(serialize.ResponseSerializer, "get_value", fix, _remembered_keys)


FIXES: tuple[Callable[[], None], ...] = (
    fix_rds_modify_db_subnet_group_keeps_group,
    fix_redshift_modify_cluster_subnet_group,
    fix_elasticache_modify_cache_subnet_group,
    fix_dynamodb_update_table_sse,
    fix_sqs_queue_attributes,
    fix_ses_identity_notification_topics,
    fix_redshift_modify_cluster_iam_roles,
    fix_elasticache_num_cache_clusters,
    fix_ec2_default_vpc_internet_gateway,
    fix_ec2_nat_gateway_tag_filters,
    fix_serialize_in_process_requests,
    fix_serialize_timestamps_fast,
    fix_s3_listing_fast,
    fix_server_backend_for_host_cached,
    fix_action_lookup_by_name,
    fix_server_environ_of_plain_headers,
    fix_xml_names_validated_once,
    fix_random_strings_fast,
    fix_serializer_remembers_attribute_names,
    fix_action_names_converted_once,
    fix_xml_written_plainly,
    fix_backend_lookup_of_a_known_account,
)


def install_once(installers: Sequence[Callable[[], None]], done: set[str], lock: threading.Lock) -> None:
    """Run each installer not yet in `done` (by name), under `lock`: once per process, from any thread."""
    with lock:
        for install in installers:
            if install.__name__ not in done:
                install()
                done.add(install.__name__)


def apply() -> None:
    """Install every fix into moto, once per process; safe to call again (and from any thread)."""
    install_once(FIXES, _applied, _lock)


def applied() -> list[str]:
    """Names of the fixes installed in this process."""
    with _lock:
        return sorted(_applied)
