"""Rules that make moto 5.2.5 as strict as AWS where it is lenient, for the emulator and the unit
tests alike.

The fixes in fixes.py make moto complete; these make it refuse what AWS refuses, or take the time AWS
takes, so code that would fail on a real account fails here first. Each rule is a function named
after what it enforces; its docstring says what AWS does and what moto did instead. `apply()`
installs them all, once per process, with the same checks as the fixes (a moto upgrade that renamed
what a rule wraps fails loudly). Time-bound rules read `clock`, which tests move forward.
"""

from __future__ import annotations

import inspect
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from deploy.emulator.fixes import _wrapped, install_once

_lock = threading.Lock()
_applied: set[str] = set()

# AWS refuses a second UpdateTimeToLive on a table for about an hour after a change.
TTL_CHANGE_INTERVAL_SECONDS = 3600.0
# AWS refuses point-in-time recovery for a while after CreateTable (minutes at most). The emulator
# keeps the window short so `up` on the local stage stays quick, but long enough that code which
# does not retry fails.
PITR_UNAVAILABLE_SECONDS = 1.0
# PostgreSQL versions RDS still creates new instances with (from `aws rds describe-db-engine-versions
# --engine postgres`, late 2026): major -> the oldest minor still offered. A major alone is accepted
# (RDS picks its default minor); an older minor, or a major no longer offered, is refused.
POSTGRES_OLDEST_MINOR = {"14": 17, "15": 12, "16": 8, "17": 4}


class Clock:
    """Wall time, plus however far the tests moved it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def reset(self) -> None:
        self.offset = 0.0


clock = Clock()


# -- SES: identities are verified by DNS, and only verified ones take notification settings ------


def _txt_values(record_set: Any) -> set[str]:
    values = set()
    for record in record_set.records or ():
        value = record.get("Value", "") if isinstance(record, dict) else str(record)
        values.add(value.strip().strip('"'))
    return values


def record_values(account_id: str, record_type: str, name: str) -> Iterator[set[str]]:
    """The values (quotes stripped) of each `record_type` record named `name` in any hosted zone
    of the account: what SES and ACM look for before they verify an identity or a certificate."""
    from moto.route53.models import route53_backends

    wanted = name.rstrip(".").lower()
    for backend in route53_backends[account_id].values():
        for zone in backend.zones.values():
            for record_set in zone.rrsets:
                if record_set.type == record_type and record_set.name.rstrip(".").lower() == wanted:
                    yield _txt_values(record_set)


def ses_record_exists(account_id: str, domain: str, token: str) -> bool:
    """Whether any hosted zone of the account holds `_amazonses.<domain>` TXT with the token."""
    return any(token in values for values in record_values(account_id, "TXT", f"_amazonses.{domain}"))


def _is_verified(backend: Any, identity: str, token: str) -> bool:
    if identity in getattr(backend, "verified_by_control", set()):
        return True
    return "@" not in identity and ses_record_exists(backend.account_id, identity, token)


def mark_verified(backend: Any, identity: str) -> None:
    """The control call: verify an identity without its DNS record (an email address, say)."""
    if not hasattr(backend, "verified_by_control"):
        backend.verified_by_control = set()
    backend.verified_by_control.add(identity)


def _verification_by_dns(original: Callable[..., Any]) -> Callable[..., Any]:
    def get_identity_verification_attributes(self: Any, identities: list[str] | None = None) -> Any:
        result = original(self, identities)
        for identity, attributes in result.items():
            verified = _is_verified(self, identity, attributes.get("VerificationToken", ""))
            attributes["VerificationStatus"] = "Success" if verified else "Pending"
        return result

    return get_identity_verification_attributes


def _verified_only(original: Callable[..., Any]) -> Callable[..., Any]:
    def only_verified(self: Any, identity: str, *args: Any, **kwargs: Any) -> Any:
        from moto.ses.exceptions import InvalidParameterValue

        status = self.get_identity_verification_attributes([identity]).get(identity, {})
        if status.get("VerificationStatus") != "Success":
            raise InvalidParameterValue(
                f"Identity <{identity}> is invalid. Must be a verified email address or domain."
            )
        return original(self, identity, *args, **kwargs)

    return only_verified


def rule_ses_identities_verify_by_dns() -> None:
    """AWS: a domain identity stays `Pending` until SES finds its `_amazonses` TXT record (hours, up
    to 72), and SetIdentityNotificationTopic / SetIdentityFeedbackForwardingEnabled accept only a
    verified identity. moto: every identity is `Success` at once and both calls always pass. Here:
    `Pending` until the record exists in one of the emulator's hosted zones (or mark_verified)."""
    from moto.ses.models import SESBackend

    name = "rule_ses_identities_verify_by_dns"
    _wrapped(SESBackend, "get_identity_verification_attributes", name, _verification_by_dns)
    _wrapped(SESBackend, "set_identity_notification_topic", name, _verified_only)
    _wrapped(SESBackend, "set_identity_feedback_forwarding_enabled", name, _verified_only)


# -- DynamoDB: TTL changes once an hour, point-in-time recovery not right after CreateTable ------


def _validation(message: str) -> Exception:
    from moto.dynamodb.exceptions import MockValidationException

    return MockValidationException(message)


def _ttl_once_an_hour(original: Callable[..., Any]) -> Callable[..., Any]:
    def update_time_to_live(self: Any, table_name: str, ttl_spec: dict[str, Any]) -> None:
        table = self.get_table(table_name)
        changed_at = getattr(table, "ttl_changed_at", None)
        if changed_at is not None and clock.now() - changed_at < TTL_CHANGE_INTERVAL_SECONDS:
            raise _validation("Time to live has been modified multiple times within a fixed interval")
        original(self, table_name, ttl_spec)
        table.ttl_changed_at = clock.now()

    return update_time_to_live


def rule_dynamodb_ttl_once_an_hour() -> None:
    """AWS: after UpdateTimeToLive, another one on the same table is refused (ValidationException)
    for about an hour. moto: any number of changes pass, so disable-then-enable in one run works."""
    from moto.dynamodb.models import DynamoDBBackend

    _wrapped(DynamoDBBackend, "update_time_to_live", "rule_dynamodb_ttl_once_an_hour", _ttl_once_an_hour)


def _remember_creation(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_table(self: Any, name: str, **params: Any) -> Any:
        table = original(self, name, **params)
        table.created_at_clock = clock.now()
        return table

    return create_table


def _pitr_not_yet(original: Callable[..., Any]) -> Callable[..., Any]:
    def update_continuous_backups(self: Any, table_name: str, point_in_time_spec: dict[str, Any]) -> Any:
        from moto.dynamodb.exceptions import DynamodbException

        table = self.get_table(table_name)
        created = getattr(table, "created_at_clock", None)
        enabling = point_in_time_spec.get("PointInTimeRecoveryEnabled")
        if enabling and created is not None and clock.now() - created < PITR_UNAVAILABLE_SECONDS:
            raise DynamodbException(
                "com.amazonaws.dynamodb.v20120810#ContinuousBackupsUnavailableException",
                "Backups are being enabled for the table: try again in a few minutes",
            )
        return original(self, table_name, point_in_time_spec)

    return update_continuous_backups


def rule_dynamodb_pitr_after_create() -> None:
    """AWS: UpdateContinuousBackups right after CreateTable may be refused with
    ContinuousBackupsUnavailableException while backups are being set up. moto: always accepted."""
    from moto.dynamodb.models import DynamoDBBackend

    name = "rule_dynamodb_pitr_after_create"
    _wrapped(DynamoDBBackend, "create_table", name, _remember_creation)
    _wrapped(DynamoDBBackend, "update_continuous_backups", name, _pitr_not_yet)


# -- RDS: only engine versions AWS still offers ----------------------------------------------------


def postgres_version_refusal(version: str | None) -> str | None:
    """Why RDS would refuse to create PostgreSQL `version`, or None when it would accept it."""
    if not version:
        return None
    major, _, minor = version.partition(".")
    offered = ", ".join(f"{m} (from {m}.{n})" for m, n in POSTGRES_OLDEST_MINOR.items())
    if major not in POSTGRES_OLDEST_MINOR:
        return f"Cannot find version {version} for postgres (offered: {offered})"
    if minor and (not minor.isdigit() or int(minor) < POSTGRES_OLDEST_MINOR[major]):
        return f"Cannot find version {version} for postgres (offered: {offered})"
    return None


def _offered_versions_only(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_db_instance(self: Any, db_kwargs: dict[str, Any]) -> Any:
        from moto.rds.exceptions import InvalidParameterCombination

        if db_kwargs.get("engine") == "postgres":
            refusal = postgres_version_refusal(db_kwargs.get("engine_version"))
            if refusal:
                raise InvalidParameterCombination(refusal)
        return original(self, db_kwargs)

    return create_db_instance


def rule_rds_offered_engine_versions() -> None:
    """AWS: CreateDBInstance refuses an engine version it no longer offers for new instances (an
    old minor such as 16.4) with InvalidParameterCombination; a major alone gets the default minor.
    moto: any version string is accepted."""
    from moto.rds.models import RDSBackend

    _wrapped(RDSBackend, "create_db_instance", "rule_rds_offered_engine_versions", _offered_versions_only)


# -- Data stores take time: RDS, Redshift, ElastiCache, OpenSearch ------------------------------

# How long, per store, a new one stays busy: an RDS instance (made or restored) or snapshot
# `creating` and a modified instance `modifying`, a Redshift cluster and an ElastiCache replication
# group `creating`, an OpenSearch domain `Processing`. AWS takes 5 to 40 minutes; moto none. 0 by
# default, so `up` on the local stage stays quick; tests that interrupt a wait, or the slow-store
# benchmark, set them with set_creation_seconds (over HTTP: PUT /_emulator/delays
# {"rds_seconds": n, "redshift_seconds": n, "redis_seconds": n, "search_seconds": n}).
CREATION_SECONDS: dict[str, float] = {"rds": 0.0, "redshift": 0.0, "redis": 0.0, "search": 0.0}
# item -> (when it is done, the attribute that says so, its value then)
_ready_at: weakref.WeakKeyDictionary[Any, tuple[float, str, Any]] = weakref.WeakKeyDictionary()


def set_creation_seconds(seconds: dict[str, float]) -> None:
    """From now on each store named takes its `seconds`; those under way finish no later."""
    for store, value in seconds.items():
        CREATION_SECONDS[store] = max(0.0, float(value))
    latest = clock.now() + max(CREATION_SECONDS.values())
    for item, (due, attribute, ready) in list(_ready_at.items()):
        _ready_at[item] = (min(due, latest), attribute, ready)


def set_rds_creation_seconds(seconds: float) -> None:
    """From now on RDS creations take `seconds`; those under way finish no later than that."""
    set_creation_seconds({"rds": seconds})


def _busy_for_a_while(
    store: str, busy: Any, attribute: str = "status", ready: Any = "available"
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def change(self: Any, *args: Any, **kwargs: Any) -> Any:
            made = original(self, *args, **kwargs)
            if CREATION_SECONDS[store] > 0:
                setattr(made, attribute, busy)
                _ready_at[made] = (clock.now() + CREATION_SECONDS[store], attribute, ready)
            return made

        return change

    return wrap


def _settle(item: Any) -> None:
    entry = _ready_at.get(item)
    if entry is not None and clock.now() >= entry[0]:
        setattr(item, entry[1], entry[2])
        del _ready_at[item]


def _available_when_due(original: Callable[..., Any]) -> Callable[..., Any]:
    def describe(self: Any, *args: Any, **kwargs: Any) -> Any:
        found = original(self, *args, **kwargs)
        for item in found if isinstance(found, list | tuple) else [found]:
            _settle(item)
        return found

    return describe


def rule_rds_creation_takes_time() -> None:
    """AWS: a new DB instance is `creating` (then `backing-up`) for minutes before `available`, a
    modified one `modifying`, and a new or copied snapshot `creating` until done. moto: everything
    is `available` at once, so a wait on it, and an interrupted one, is never exercised."""
    from moto.rds.models import RDSBackend

    rule = "rule_rds_creation_takes_time"
    for name in ("create_db_instance", "restore_db_instance_from_db_snapshot"):
        _wrapped(RDSBackend, name, rule, _busy_for_a_while("rds", "creating"))
    _wrapped(RDSBackend, "modify_db_instance", rule, _busy_for_a_while("rds", "modifying"))
    for name in ("create_db_snapshot", "copy_db_snapshot"):
        _wrapped(RDSBackend, name, rule, _busy_for_a_while("rds", "creating"))
    for name in ("describe_db_instances", "describe_db_snapshots"):
        _wrapped(RDSBackend, name, rule, _available_when_due)


def rule_other_stores_take_time() -> None:
    """AWS: a new Redshift cluster and ElastiCache replication group are `creating`, and a new
    OpenSearch domain `Processing`, for 10 to 40 minutes. moto: ready at once, so `up` never shows
    whether it awaits the slow stores together or one after another."""
    from moto.elasticache.models import ElastiCacheBackend
    from moto.opensearch.models import OpenSearchServiceBackend
    from moto.redshift.models import RedshiftBackend

    rule = "rule_other_stores_take_time"
    _wrapped(RedshiftBackend, "create_cluster", rule, _busy_for_a_while("redshift", "creating"))
    _wrapped(RedshiftBackend, "describe_clusters", rule, _available_when_due)
    busy = _busy_for_a_while("redis", "creating")
    _wrapped(ElastiCacheBackend, "create_replication_group", rule, busy)
    _wrapped(ElastiCacheBackend, "describe_replication_groups", rule, _available_when_due)
    busy = _busy_for_a_while("search", True, attribute="processing", ready=False)
    _wrapped(OpenSearchServiceBackend, "create_domain", rule, busy)
    for name in ("describe_domain", "describe_domains"):
        _wrapped(OpenSearchServiceBackend, name, rule, _available_when_due)


# -- Firehose: no delivery into a Redshift cluster it cannot reach ----------------------------


def _jdbc_host(url: str) -> str:
    """The host of `jdbc:redshift://host:port/database`."""
    address = url.partition("://")[2].partition("/")[0]
    return address.rpartition(":")[0].lower() if ":" in address else address.lower()


def _redshift_cluster_at(account_id: str, region: str, host: str) -> Any | None:
    from moto.redshift.models import redshift_backends

    clusters = redshift_backends[account_id][region].clusters.values()
    return next((cluster for cluster in clusters if cluster.address.lower() == host), None)


def firehose_redshift_refusal(cluster: Any) -> str | None:
    """Why Firehose would refuse to deliver into `cluster` (a moto cluster), or None."""
    why = []
    if not cluster.publicly_accessible:
        why.append("is not publicly accessible")
    if cluster.enhanced_vpc_routing:
        why.append("has enhanced VPC routing enabled")
    if not why:
        return None
    return (
        f"Firehose cannot deliver to Amazon Redshift cluster {cluster.cluster_identifier}: the cluster "
        f"{' and '.join(why)}. Firehose reaches Redshift only through a publicly accessible endpoint "
        "without enhanced VPC routing."
    )


def _refuse_unreachable_cluster(account_id: str, region: str, url: str | None) -> None:
    from moto.firehose.exceptions import InvalidArgumentException

    cluster = _redshift_cluster_at(account_id, region, _jdbc_host(url)) if url else None
    refusal = firehose_redshift_refusal(cluster) if cluster is not None else None
    if refusal:
        raise InvalidArgumentException(refusal)


def _reachable_redshift_on_create(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    def create_delivery_stream(self: Any, *args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(self, *args, **kwargs).arguments
        redshift = arguments.get("redshift_destination_configuration") or {}
        _refuse_unreachable_cluster(self.account_id, self.region_name, redshift.get("ClusterJDBCURL"))
        return original(self, *args, **kwargs)

    return create_delivery_stream


def _reachable_redshift_on_update(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    def update_destination(self: Any, *args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(self, *args, **kwargs).arguments
        update = arguments.get("redshift_destination_update")
        if update:
            url = update.get("ClusterJDBCURL")
            stream = self.delivery_streams.get(arguments.get("delivery_stream_name"))
            if url is None and stream is not None:
                # An update that keeps the URL delivers to the cluster the stream has now.
                current = [d.get("Redshift", {}) for d in stream.destinations]
                url = next((d["ClusterJDBCURL"] for d in current if d.get("ClusterJDBCURL")), None)
            _refuse_unreachable_cluster(self.account_id, self.region_name, url)
        return original(self, *args, **kwargs)

    return update_destination


def rule_firehose_redshift_needs_a_reachable_cluster() -> None:
    """AWS: Firehose delivers into Redshift over the cluster's public endpoint and cannot use a
    cluster with enhanced VPC routing, so a Redshift destination on a private cluster, or on one
    with enhanced VPC routing, is refused (InvalidArgumentException). moto: any ClusterJDBCURL is
    accepted. Here: CreateDeliveryStream and UpdateDestination with a Redshift destination whose
    JDBC URL names one of the emulator's clusters are refused when that cluster is not publicly
    accessible or has enhanced VPC routing (a URL naming no emulated cluster passes, as before)."""
    from moto.firehose.models import FirehoseBackend

    name = "rule_firehose_redshift_needs_a_reachable_cluster"
    _wrapped(FirehoseBackend, "create_delivery_stream", name, _reachable_redshift_on_create)
    _wrapped(FirehoseBackend, "update_destination", name, _reachable_redshift_on_update)


# -- ElastiCache, OpenSearch, IAM: what a fresh account or an encrypted topic refuses -------------


def _topic_is_encrypted(account_id: str, region: str, topic_arn: str) -> bool:
    from moto.sns.models import sns_backends

    topic = sns_backends[account_id][region].topics.get(topic_arn)
    return bool(topic is not None and getattr(topic, "kms_master_key_id", None))


def _plain_topic_only(original: Callable[..., Any]) -> Callable[..., Any]:
    def refuse_encrypted_topic(self: Any, *args: Any, **kwargs: Any) -> Any:
        from moto.elasticache.exceptions import InvalidParameterValueException

        topic = kwargs.get("notification_topic_arn")
        if topic and _topic_is_encrypted(self.account_id, self.region_name, topic):
            raise InvalidParameterValueException(
                f"SNS topic {topic} is encrypted with KMS: ElastiCache cannot publish to it"
            )
        return original(self, *args, **kwargs)

    return refuse_encrypted_topic


def _plain_topic_only_response(original: Callable[..., Any]) -> Callable[..., Any]:
    def modify_replication_group(self: Any) -> Any:
        from moto.elasticache.exceptions import InvalidParameterValueException

        topic = self._get_param("NotificationTopicArn")
        if topic and _topic_is_encrypted(self.current_account, self.region, topic):
            raise InvalidParameterValueException(
                f"SNS topic {topic} is encrypted with KMS: ElastiCache cannot publish to it"
            )
        return original(self)

    return modify_replication_group


def rule_elasticache_refuses_encrypted_topics() -> None:
    """AWS: ElastiCache cannot publish to an SNS topic encrypted with KMS; the topic attaches, turns
    `inactive`, and events are silently lost. moto: any topic works. Here: refused at once, so a
    plan that points ElastiCache at an encrypted topic fails in the tests."""
    from moto.elasticache.models import ElastiCacheBackend
    from moto.elasticache.responses import ElastiCacheResponse

    name = "rule_elasticache_refuses_encrypted_topics"
    _wrapped(ElastiCacheBackend, "create_replication_group", name, _plain_topic_only)
    _wrapped(ElastiCacheResponse, "modify_replication_group", name, _plain_topic_only_response)


def _service_linked_role_exists(account_id: str, service: str) -> bool:
    from moto.iam.models import iam_backends

    backend = iam_backends[account_id]["global"]
    return any(role.path == f"/aws-service-role/{service}/" for role in backend.roles.values())


def _vpc_needs_service_role(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_domain(self: Any, *args: Any, **kwargs: Any) -> Any:
        from moto.core.exceptions import JsonRESTError

        if kwargs.get("vpc_options") and not _service_linked_role_exists(
            self.account_id, "opensearchservice.amazonaws.com"
        ):
            raise JsonRESTError(
                "ValidationException",
                "Before you can proceed, you must enable a service-linked role to give Amazon "
                "OpenSearch Service permissions to access your VPC.",
            )
        return original(self, *args, **kwargs)

    return create_domain


def rule_opensearch_vpc_needs_service_linked_role() -> None:
    """AWS: CreateDomain with VPC options fails on an account without the service-linked role
    AWSServiceRoleForAmazonOpenSearchService. moto: it passes."""
    from moto.opensearch.models import OpenSearchServiceBackend

    name = "rule_opensearch_vpc_needs_service_linked_role"
    _wrapped(OpenSearchServiceBackend, "create_domain", name, _vpc_needs_service_role)


def _taken_is_invalid_input(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_service_linked_role(self: Any, service_name: str, description: str, suffix: str) -> Any:
        from moto.iam.exceptions import InvalidInput

        if not suffix and _service_linked_role_exists(self.account_id, service_name):
            raise InvalidInput(
                f"Service role name for {service_name} has been taken in this account, please try "
                "a different suffix."
            )
        return original(self, service_name, description, suffix)

    return create_service_linked_role


def rule_iam_service_linked_role_taken() -> None:
    """AWS: CreateServiceLinkedRole for a service whose role exists answers InvalidInput ("has been
    taken in this account"). moto: EntityAlreadyExists."""
    from moto.iam.models import IAMBackend

    name = "rule_iam_service_linked_role_taken"
    _wrapped(IAMBackend, "create_service_linked_role", name, _taken_is_invalid_input)


# -- CloudFront: updates carry the current ETag; S3 origins keep their origin access control ------


def _current_etag_only(original: Callable[..., Any]) -> Callable[..., Any]:
    def update_distribution(self: Any, dist_config: dict[str, Any], _id: str, if_match: Any) -> Any:
        from moto.cloudfront.exceptions import CloudFrontException

        current = self.distributions.get(_id)
        if current is not None and if_match and if_match != current.etag:
            raise CloudFrontException(
                "PreconditionFailed", "The If-Match version is missing or not valid for the resource."
            )
        dist, location, _ = original(self, dist_config, _id, if_match)
        from moto.cloudfront.models import random_id

        dist.etag = random_id()
        return dist, location, dist.etag

    return update_distribution


def rule_cloudfront_update_needs_current_etag() -> None:
    """AWS: UpdateDistribution with an IfMatch other than the distribution's current ETag fails
    PreconditionFailed, and every update gives the distribution a new ETag. moto: any IfMatch
    passes and the ETag never changes, so code that sends a stale ETag works only here."""
    from moto.cloudfront.models import CloudFrontBackend

    name = "rule_cloudfront_update_needs_current_etag"
    _wrapped(CloudFrontBackend, "update_distribution", name, _current_etag_only)


def _deletes_only_disabled(original: Callable[..., Any]) -> Callable[..., Any]:
    def delete_distribution(self: Any, distribution_id: str, if_match: Any) -> None:
        from moto.cloudfront.exceptions import CloudFrontException

        current = self.distributions.get(distribution_id)
        if current is not None:
            enabled = getattr(current.distribution_config, "Enabled", True)
            if str(enabled).lower() == "true" or current.status != "Deployed":
                raise CloudFrontException(
                    "DistributionNotDisabled",
                    "The distribution you are trying to delete has not been disabled.",
                )
            if if_match and if_match != current.etag:
                raise CloudFrontException(
                    "PreconditionFailed", "The If-Match version is missing or not valid for the resource."
                )
        return original(self, distribution_id, if_match)

    return delete_distribution


def rule_cloudfront_deletes_only_disabled_distributions() -> None:
    """AWS: DeleteDistribution fails DistributionNotDisabled unless the distribution is disabled
    and that change is Deployed, and PreconditionFailed with an ETag other than its current one
    (the one the disabling update returned). moto: deletes an enabled one with any ETag."""
    from moto.cloudfront.models import CloudFrontBackend

    name = "rule_cloudfront_deletes_only_disabled_distributions"
    _wrapped(CloudFrontBackend, "delete_distribution", name, _deletes_only_disabled)


def _origin_keeps_access_control(original: Callable[..., Any]) -> Callable[..., Any]:
    def __init__(self: Any, origin: dict[str, Any]) -> None:
        original(self, origin)
        if "S3OriginConfig" in origin:
            self.s3_origin_config = {"OriginAccessIdentity": self.s3_access_identity or ""}
        self.origin_access_control_id = origin.get("OriginAccessControlId") or ""

    return __init__


def rule_cloudfront_origins_keep_access_control() -> None:
    """AWS: GetDistributionConfig returns each origin's OriginAccessControlId and S3OriginConfig
    as they were set. moto: drops both, so a distribution made with origin access control reads
    back as one without (and a planner would "repair" it forever). Strictly a completion of
    moto, kept here with the CloudFront rule above it depends on."""
    from moto.cloudfront.models import Origin

    name = "rule_cloudfront_origins_keep_access_control"
    _wrapped(Origin, "__init__", name, _origin_keeps_access_control)


# -- ACM: a DNS-validated certificate is issued once its validation records exist -------------

# AWS validates minutes after the records appear; the emulator keeps it short so a local run stays
# quick, but long enough that code which does not wait for ISSUED fails.
ACM_VALIDATION_SECONDS = 1.0


def _cname_exists(account_id: str, name: str, value: str) -> bool:
    wanted = value.rstrip(".").lower()
    return any(
        wanted in {v.rstrip(".").lower() for v in values}
        for values in record_values(account_id, "CNAME", name)
    )


def acm_records_exist(bundle: Any) -> bool:
    """Whether every validation CNAME of the certificate is in one of the account's hosted zones."""
    account_id = bundle.arn.split(":")[4]
    options = bundle.describe()["Certificate"].get("DomainValidationOptions", [])
    return bool(options) and all(
        "ResourceRecord" in o
        and _cname_exists(account_id, o["ResourceRecord"]["Name"], o["ResourceRecord"]["Value"])
        for o in options
    )


def _issued_by_dns(original: Callable[..., Any]) -> Callable[..., None]:
    def check(self: Any) -> None:
        if self.type != "AMAZON_ISSUED" or self.status != "PENDING_VALIDATION":
            original(self)
            return
        if not acm_records_exist(self):
            self.records_seen_at = None
            return
        if getattr(self, "records_seen_at", None) is None:
            self.records_seen_at = clock.now()
        if clock.now() - self.records_seen_at >= ACM_VALIDATION_SECONDS:
            self.status = "ISSUED"

    return check


def rule_acm_validates_by_dns() -> None:
    """AWS: a certificate requested with DNS validation stays PENDING_VALIDATION until ACM finds
    its validation CNAME records (minutes after they appear; VALIDATION_TIMED_OUT after 72 hours).
    moto: every requested certificate turns ISSUED 60 seconds after the request, records or not.
    Here: PENDING_VALIDATION until every validation record is in one of the emulator's hosted
    zones, then ISSUED ACM_VALIDATION_SECONDS (on `clock`) later."""
    from moto.acm.models import CertBundle

    _wrapped(CertBundle, "check", "rule_acm_validates_by_dns", _issued_by_dns)


def _request_as_aws_reads_it(original: Callable[..., Any]) -> Callable[..., Any]:
    def request_certificate(self: Any) -> Any:
        from moto.acm.exceptions import AWSValidationException

        token = self._get_param("IdempotencyToken")
        if token is not None and not re.fullmatch(r"\w{1,32}", token):
            raise AWSValidationException(
                f"1 validation error detected: Value '{token}' at 'idempotencyToken' failed to satisfy "
                "constraint: Member must satisfy regular expression pattern: \\w+ and length <= 32"
            )
        result = original(self)
        if self._get_param("CertificateAuthorityArn") is None:
            bundle = self.acm_backend.get_certificate(result.result["CertificateArn"])
            bundle.validation_method = self._get_param("ValidationMethod") or "EMAIL"
        return result

    return request_certificate


def _validation_as_requested(original: Callable[..., Any]) -> Callable[..., Any]:
    def describe(self: Any) -> dict[str, Any]:
        result = original(self)
        if getattr(self, "validation_method", "DNS") != "DNS":
            for option in result["Certificate"].get("DomainValidationOptions", []):
                option["ValidationMethod"] = self.validation_method
                option.pop("ResourceRecord", None)
        return result

    return describe


def rule_acm_request_as_aws_reads_it() -> None:
    """AWS: RequestCertificate without ValidationMethod validates by EMAIL (no CNAME record to
    write, and nothing is issued until someone answers the mail), and refuses an
    IdempotencyToken that is not \\w{1,32} (ValidationException). moto: ignores ValidationMethod
    (every certificate shows DNS records) and takes any token."""
    from moto.acm.models import CertBundle
    from moto.acm.responses import AWSCertificateManagerResponse

    name = "rule_acm_request_as_aws_reads_it"
    _wrapped(AWSCertificateManagerResponse, "request_certificate", name, _request_as_aws_reads_it)
    _wrapped(CertBundle, "describe", name, _validation_as_requested)


# -- S3: a denial of plain HTTP denies plain HTTP only --------------------------------------------

PLAIN_HTTP_ONLY = {"Bool": {"aws:SecureTransport": "false"}}


def _tls_denial_on_plain_http_only(original: Callable[..., Any]) -> Callable[..., Any]:
    def get_permission(self: Any, action: str, resource: str) -> Any:
        import json

        from moto.iam.access_control import IAMPolicy, PermissionResult

        if self.policy is None:
            return original(self, action, resource)
        document = json.loads(self.policy)
        statements = document.get("Statement", [])
        statements = [statements] if isinstance(statements, dict) else statements
        # Requests reach moto as the stand-in for the HTTPS endpoint: they count as over TLS.
        kept = [s for s in statements if s.get("Condition") != PLAIN_HTTP_ONLY]
        if not kept:
            return PermissionResult.NEUTRAL
        return IAMPolicy(json.dumps({**document, "Statement": kept})).is_action_permitted(action, resource)

    return get_permission


def rule_s3_tls_denial_applies_to_plain_http_only() -> None:
    """AWS: a bucket policy statement denying requests where aws:SecureTransport is false refuses
    plain HTTP only; over HTTPS the bucket's objects can be read and written. moto: ignores the
    condition and refuses every object request on such a bucket (every bucket this tool makes).
    Strictly a completion of moto, kept here beside the rules whose buckets need it."""
    from moto.s3.models import FakeBucket

    name = "rule_s3_tls_denial_applies_to_plain_http_only"
    _wrapped(FakeBucket, "get_permission", name, _tls_denial_on_plain_http_only)


# -- S3: an upload is checked against the Content-MD5 it carries ----------------------------------


def _md5_checked(original: Callable[..., Any]) -> Callable[..., Any]:
    def put_object(self: Any) -> Any:
        import base64
        import binascii
        import hashlib

        from moto.s3.exceptions import S3ClientError

        sent = self.headers.get("Content-MD5")
        if sent is not None:
            body = self.body.encode() if isinstance(self.body, str) else self.body or b""
            try:
                digest = base64.b64decode(sent, validate=True)
            except (binascii.Error, ValueError):
                digest = b""
            if len(digest) != 16:
                raise S3ClientError("InvalidDigest", "The Content-MD5 you specified was invalid.")
            if digest != hashlib.md5(body, usedforsecurity=False).digest():
                mismatch = "The Content-MD5 you specified did not match what we received."
                raise S3ClientError("BadDigest", mismatch)
        return original(self)

    return put_object


def rule_s3_put_object_checks_content_md5() -> None:
    """AWS: PutObject with a Content-MD5 header that is not a base64 MD5 answers InvalidDigest, and
    one that does not match the body BadDigest; nothing is stored. moto: ignores the header and
    stores the object, so code that sends a wrong digest works only here."""
    from moto.s3.responses import S3Response

    _wrapped(S3Response, "put_object", "rule_s3_put_object_checks_content_md5", _md5_checked)


# -- S3 and Lambda: a bucket notifies a function only with its permission ------------------------


def _s3_may_invoke(function: Any, bucket: str) -> bool:
    """Whether the function's resource policy lets S3 invoke it for `bucket` (any account's check
    is left to AWS: the source account condition is not tested here)."""
    for statement in getattr(function.policy, "statements", []):
        principal = statement.get("Principal", {})
        service = principal.get("Service") if isinstance(principal, dict) else principal
        if statement.get("Effect", "Allow") != "Allow" or service != "s3.amazonaws.com":
            continue
        source = statement.get("Condition", {}).get("ArnLike", {}).get("AWS:SourceArn")
        if source is None or source.split(":::", 1)[-1] == bucket:
            return True
    return False


def _function_destinations_checked(original: Callable[..., Any]) -> Callable[..., Any]:
    def put_bucket_notification_configuration(self: Any, bucket_name: str, notification_config: Any) -> None:
        from moto.awslambda.utils import get_backend
        from moto.s3.exceptions import S3ClientError

        refused = []
        for entry in (notification_config or {}).get("CloudFunctionConfiguration", []) or []:
            arn = entry.get("CloudFunction", "")
            parts = arn.split(":")
            try:
                function = get_backend(parts[4], parts[3]).get_function(arn)
            except Exception:  # any lookup failure: an unreachable destination
                function = None
            if function is None or not _s3_may_invoke(function, bucket_name):
                refused.append(arn)
        if refused:
            raise S3ClientError(
                "InvalidArgument",
                f"Unable to validate the following destination configurations: {', '.join(refused)}",
            )
        return original(self, bucket_name, notification_config)

    return put_bucket_notification_configuration


def rule_s3_notifies_a_function_only_with_its_permission() -> None:
    """AWS: PutBucketNotificationConfiguration tests each Lambda destination and refuses the whole
    document (InvalidArgument, "Unable to validate the following destination configurations") when
    the function does not exist or its resource policy does not let s3.amazonaws.com invoke it
    for that bucket. moto: stores any function ARN, so a missing AddPermission went unnoticed."""
    from moto.s3.models import S3Backend

    name = "rule_s3_notifies_a_function_only_with_its_permission"
    _wrapped(S3Backend, "put_bucket_notification_configuration", name, _function_destinations_checked)


def _unique_statement_ids(original: Callable[..., Any]) -> Callable[..., Any]:
    def add_statement(self: Any, raw: str, qualifier: str | None = None) -> Any:
        import json

        from moto.awslambda.exceptions import LambdaClientError

        sid = json.loads(raw).get("StatementId")
        if sid and any(statement.get("Sid") == sid for statement in self.statements):
            error = LambdaClientError(
                "ResourceConflictException",
                f"The statement id ({sid}) provided already exists. Please provide a new statement "
                "id, or remove the existing statement.",
            )
            error.code = 409
            raise error
        return original(self, raw, qualifier)

    return add_statement


def rule_lambda_statement_ids_are_unique() -> None:
    """AWS: AddPermission with a StatementId the function's policy already holds answers
    ResourceConflictException. moto: appends a second statement with the same id."""
    from moto.awslambda.policy import Policy

    _wrapped(Policy, "add_statement", "rule_lambda_statement_ids_are_unique", _unique_statement_ids)


# -- EventBridge: schedule expressions as AWS parses them -----------------------------------------

RATE_EXPRESSION = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
CRON_EXPRESSION = re.compile(r"^cron\(([^()]+)\)$")


def schedule_expression_valid(expression: str) -> bool:
    """AWS's reading: rate(N unit) with the unit singular for 1 only; cron with 6 fields, one of
    day-of-month and day-of-week `?`."""
    rate = RATE_EXPRESSION.match(expression)
    if rate:
        value = int(rate.group(1))
        return value >= 1 and (value == 1) != rate.group(2).endswith("s")
    cron = CRON_EXPRESSION.match(expression)
    if not cron:
        return False
    fields = cron.group(1).split()
    return len(fields) == 6 and (fields[2] == "?") != (fields[4] == "?")


def _schedule_checked(original: Callable[..., Any]) -> Callable[..., Any]:
    def put_rule(self: Any, name: str, **kwargs: Any) -> Any:
        from moto.events.exceptions import ValidationException

        expression = kwargs.get("scheduled_expression")
        if expression and not schedule_expression_valid(expression):
            raise ValidationException("Parameter ScheduleExpression is not valid.")
        return original(self, name, **kwargs)

    return put_rule


def rule_events_schedule_expressions_as_aws_reads_them() -> None:
    """AWS: PutRule refuses `rate(1 hours)`, `rate(5 minute)`, `rate(0 minutes)`, a cron expression
    without six fields or with both day fields set (ValidationException "Parameter
    ScheduleExpression is not valid."). moto: any `cron(...)` and any `rate(N unit)` pass."""
    from moto.events.models import EventsBackend

    name = "rule_events_schedule_expressions_as_aws_reads_them"
    _wrapped(EventsBackend, "put_rule", name, _schedule_checked)


# -- ECS and ECR (the workers): capacity providers, service strategies, lifecycle policies --------
# (One block for the workers' rules, kept together.)

RESERVED_CAPACITY_PROVIDER_PREFIXES = ("aws", "ecs", "fargate")


def _capacity_provider_name_allowed(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_capacity_provider(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        from moto.ecs.exceptions import EcsClientException

        if name.lower().startswith(RESERVED_CAPACITY_PROVIDER_PREFIXES):
            raise EcsClientException(
                f"The specified capacity provider name is invalid: {name} can't be prefixed with "
                '"aws", "ecs", or "fargate". Specify a different name and try again.'
            )
        return original(self, name, *args, **kwargs)

    return create_capacity_provider


def rule_ecs_capacity_provider_names() -> None:
    """AWS: CreateCapacityProvider refuses a name that starts with aws, ecs or fargate (in any
    case). moto: takes any name."""
    from moto.ecs.models import EC2ContainerServiceBackend

    name = "rule_ecs_capacity_provider_names"
    _wrapped(EC2ContainerServiceBackend, "create_capacity_provider", name, _capacity_provider_name_allowed)


def _strategy_of_the_cluster_only(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_service(self: Any) -> Any:
        from moto.ecs.exceptions import InvalidParameterException

        strategy = self._get_param("capacityProviderStrategy") or []
        if strategy:
            cluster = self.ecs_backend._get_cluster(self._get_param("cluster", "default"))
            associated = set(cluster.capacity_providers or [])
            if any(item.get("capacityProvider") not in associated for item in strategy):
                raise InvalidParameterException(
                    "The specified capacity provider strategy cannot contain a capacity provider that "
                    "is not associated with the cluster. Associate the capacity provider with the "
                    "cluster or specify a valid capacity provider and try again."
                )
        return original(self)

    return create_service


def rule_ecs_service_strategy_needs_cluster_providers() -> None:
    """AWS: CreateService with a capacity provider strategy refuses a provider that is not associated
    with the cluster (PutClusterCapacityProviders first). moto: ignores the strategy altogether, so
    a service made before its cluster has the provider works only here."""
    from moto.ecs.responses import EC2ContainerServiceResponse

    name = "rule_ecs_service_strategy_needs_cluster_providers"
    _wrapped(EC2ContainerServiceResponse, "create_service", name, _strategy_of_the_cluster_only)


def ecr_lifecycle_refusal(text: str) -> str | None:
    """What AWS's lifecycle policy validation says of `text` that moto's does not, or None."""
    import json as jsonlib

    for rule in jsonlib.loads(text).get("rules", []):
        selection = rule.get("selection", {})
        tagged = selection.get("tagStatus") == "tagged"
        if tagged and not (selection.get("tagPrefixList") or selection.get("tagPatternList")):
            return "tagPrefixList or tagPatternList is required when tagStatus is tagged"
        if selection.get("countType") == "sinceImagePushed" and selection.get("countUnit") != "days":
            return "countUnit days is required when countType is sinceImagePushed"
        if selection.get("countType") == "imageCountMoreThan" and "countUnit" in selection:
            return "countUnit is not allowed when countType is imageCountMoreThan"
    return None


def _lifecycle_policy_as_aws_reads_it(original: Callable[..., Any]) -> Callable[..., Any]:
    def put_lifecycle_policy(
        self: Any, registry_id: Any, repository_name: str, lifecycle_policy_text: str
    ) -> Any:
        from moto.ecr.exceptions import InvalidParameterException

        problem = ecr_lifecycle_refusal(lifecycle_policy_text)
        if problem:
            raise InvalidParameterException(
                "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
                f"'Lifecycle policy validation failure: {problem}'"
            )
        return original(self, registry_id, repository_name, lifecycle_policy_text)

    return put_lifecycle_policy


def rule_ecr_lifecycle_policy_as_aws_reads_it() -> None:
    """AWS: PutLifecyclePolicy refuses a rule selecting `tagged` images without a tag prefix or
    pattern list, a `sinceImagePushed` count without `countUnit: days`, and a `countUnit` on an
    `imageCountMoreThan` count. moto: checks the schema's names only and stores those policies."""
    from moto.ecr.models import ECRBackend

    name = "rule_ecr_lifecycle_policy_as_aws_reads_it"
    _wrapped(ECRBackend, "put_lifecycle_policy", name, _lifecycle_policy_as_aws_reads_it)


RULES: tuple[Callable[[], None], ...] = (
    rule_ses_identities_verify_by_dns,
    rule_dynamodb_ttl_once_an_hour,
    rule_dynamodb_pitr_after_create,
    rule_rds_offered_engine_versions,
    rule_rds_creation_takes_time,
    rule_other_stores_take_time,
    rule_firehose_redshift_needs_a_reachable_cluster,
    rule_elasticache_refuses_encrypted_topics,
    rule_opensearch_vpc_needs_service_linked_role,
    rule_iam_service_linked_role_taken,
    rule_cloudfront_update_needs_current_etag,
    rule_cloudfront_origins_keep_access_control,
    rule_cloudfront_deletes_only_disabled_distributions,
    rule_s3_tls_denial_applies_to_plain_http_only,
    rule_acm_validates_by_dns,
    rule_acm_request_as_aws_reads_it,
    rule_s3_put_object_checks_content_md5,
    rule_s3_notifies_a_function_only_with_its_permission,
    rule_lambda_statement_ids_are_unique,
    rule_events_schedule_expressions_as_aws_reads_them,
    rule_ecs_capacity_provider_names,
    rule_ecs_service_strategy_needs_cluster_providers,
    rule_ecr_lifecycle_policy_as_aws_reads_it,
)


def apply() -> None:
    """Install every rule; a second call changes nothing."""
    install_once(RULES, _applied, _lock)


def applied() -> list[str]:
    return sorted(_applied)
