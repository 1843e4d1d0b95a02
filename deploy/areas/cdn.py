"""CloudFront: the statics and media distributions of a stage, their origin access control, and the
bucket policy statements that admit only them."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.cli import area_tasks
from deploy.parallel import call_concurrently
from deploy.plan import Call, Deferred, Resource, Step, Wait, converge, differs, removal, tag_drift

if TYPE_CHECKING:
    from deploy.stage import Stage

AREA = "cdn"
# Needs first: the buckets the distributions serve, the certificate of their aliases.
AFTER: tuple[str, ...] = ("s3", "acm")
# CloudFront takes certificates from this region only, whatever the stage's region.
CLOUDFRONT_REGION = "us-east-1"
LOOKUPS = ("distribution_id", "distribution_domain", "distribution_arn", "bucket_policy_statements")
WHICH = ("statics", "media")
OWNER = "iotile-deploy"
# AWS managed cache policy "CachingOptimized": honours the objects' Cache-Control, compresses.
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
READ_METHODS = ["GET", "HEAD"]
# Legacy cache settings AWS refuses next to a cache policy; moto returns them regardless.
LEGACY_CACHE_KEYS = ("ForwardedValues", "MinTTL", "DefaultTTL", "MaxTTL")
DEPLOYED = frozenset({"Deployed"})


@dataclass
class DistributionState:
    """One distribution as CloudFront has it (found by its Comment), or `id` empty when absent."""

    id: str = ""
    arn: str = ""
    domain: str = ""
    status: str = ""
    etag: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def comment(stage: Stage, which: str) -> str:
    """The distribution's identity: CallerReference cannot be read back by a list, Comment can."""
    return f"{OWNER}:{stage.name}:{which}"


def oac_name(stage: Stage) -> str:
    return f"{OWNER}-{stage.name}"


def bucket_of(stage: Stage, which: str) -> str:
    return getattr(stage.config.s3.buckets, which).name


def statement_sid(stage: Stage) -> str:
    return f"{OWNER}-{stage.name}-cloudfront"


def regional_domain(bucket: str, region: str) -> str:
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{bucket}.s3.{region}.{suffix}"


# -- reading -----------------------------------------------------------------------------------


def _summaries(stage: Stage) -> list[dict[str, Any]]:
    paginator = stage.client("cloudfront").get_paginator("list_distributions")
    # Both distributions, and the lookups of other areas, pick from one listing a run.
    return stage.remember(
        ("cloudfront", "distributions"),
        lambda: [
            item for page in paginator.paginate() for item in page["DistributionList"].get("Items") or []
        ],
    )


def find_summary(stage: Stage, which: str) -> dict[str, Any] | None:
    wanted = comment(stage, which)
    return next((s for s in _summaries(stage) if s.get("Comment") == wanted), None)


def read_distribution(stage: Stage, summary: dict[str, Any] | None) -> DistributionState:
    if summary is None:
        return DistributionState()
    cloudfront = stage.client("cloudfront")
    found, tags = call_concurrently(
        lambda: cloudfront.get_distribution_config(Id=summary["Id"]),
        lambda: cloudfront.list_tags_for_resource(Resource=summary["ARN"])["Tags"].get("Items") or [],
    )
    return DistributionState(
        id=summary["Id"],
        arn=summary["ARN"],
        domain=summary["DomainName"],
        status=summary["Status"],
        etag=found["ETag"],
        config=found["DistributionConfig"],
        tags={t["Key"]: t["Value"] for t in tags},
    )


def read_served(
    stage: Stage, which: str, summary: dict[str, Any] | None
) -> tuple[DistributionState, dict[str, Any]]:
    """The distribution (absent when `summary` is None) and, when it exists, the policy of the
    bucket it serves (which admits it), read side by side."""
    if summary is None:
        return DistributionState(), {}
    state, policy = call_concurrently(
        partial(read_distribution, stage, summary), partial(read_policy, stage, bucket_of(stage, which))
    )
    return state, policy


def read_oac_id(stage: Stage) -> str | None:
    cloudfront = stage.client("cloudfront")
    marker = ""
    while True:
        page = cloudfront.list_origin_access_controls(Marker=marker)["OriginAccessControlList"]
        for item in page.get("Items") or []:
            if item["Name"] == oac_name(stage):
                return item["Id"]
        marker = page.get("NextMarker") or ""
        if not marker:
            return None


def read_policy(stage: Stage, bucket: str) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    def read() -> str | None:
        try:
            return stage.client("s3").get_bucket_policy(Bucket=bucket)["Policy"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchBucketPolicy", "NoSuchBucket"):
                return None
            raise

    text = stage.remember(("s3", "policy", bucket), read)  # the plan and the lookups read it
    return json.loads(text) if text else {}


# -- lookups -----------------------------------------------------------------------------------


def distribution_id(stage: Stage, which: str) -> str | None:
    summary = find_summary(stage, which)
    return summary["Id"] if summary else None


def distribution_arn(stage: Stage, which: str) -> str | None:
    summary = find_summary(stage, which)
    return summary["ARN"] if summary else None


def distribution_domain(stage: Stage, which: str) -> str | None:
    summary = find_summary(stage, which)
    return summary["DomainName"] if summary else None


def served_folder(stage: Stage, which: str) -> str:
    """The folder of its bucket a distribution reads: its own stage's, never another's (the buckets
    are shared by the stages of an account; statics under cdn.statics.prefix, media under the
    stage's name)."""
    if which == "statics":
        return stage.config.cdn.statics.prefix.strip("/")
    return stage.name


def cloudfront_statement(stage: Stage, which: str, arn: str) -> dict[str, Any]:
    from deploy.aws import partition

    bucket = bucket_of(stage, which)
    folders = [served_folder(stage, w) for w in WHICH if bucket_of(stage, w) == bucket]
    resources = [f"arn:{partition(stage.region)}:s3:::{bucket}/{folder}/*" for folder in sorted(set(folders))]
    return {
        "Sid": statement_sid(stage),
        "Effect": "Allow",
        "Principal": {"Service": "cloudfront.amazonaws.com"},
        "Action": "s3:GetObject",
        "Resource": resources[0] if len(resources) == 1 else resources,
        "Condition": {"StringEquals": {"AWS:SourceArn": arn}},
    }


def bucket_policy_statements(stage: Stage, bucket: str) -> list[dict[str, Any]]:
    """The statement of `bucket`'s policy that lets this stage's distribution read this stage's
    folder of it, once the distribution exists (read live by its Comment). The s3 area writes it;
    a distribution made in the same run is admitted by this area right after it is made."""
    config = stage.config.cdn
    served = [which for which in WHICH if bucket_of(stage, which) == bucket]
    if not config.enabled or not served:
        return []
    arn = distribution_arn(stage, served[0])
    return [cloudfront_statement(stage, served[0], arn)] if arn else []


# -- planning ----------------------------------------------------------------------------------


def certificate_for(stage: Stage) -> str | None:
    """The certificate CloudFront serves the aliases with: cdn.certificate_arn, else the acm
    area's issued certificate in us-east-1 (None until it is issued)."""
    if stage.config.cdn.certificate_arn:
        return stage.config.cdn.certificate_arn
    from deploy.areas.acm import certificate_arn

    return certificate_arn(stage, region=CLOUDFRONT_REGION)


def viewer_certificate(arn: str | None) -> dict[str, Any]:
    if not arn:
        return {"CloudFrontDefaultCertificate": True}
    return {
        "ACMCertificateArn": arn,
        "SSLSupportMethod": "sni-only",
        "MinimumProtocolVersion": "TLSv1.2_2021",
    }


def managed_parts(stage: Stage, which: str, oac_id: Any, certificate: str | None = None) -> dict[str, Any]:
    """Every part of the DistributionConfig this tool decides; the rest is left as found. An alias
    waits for its certificate: CloudFront refuses one without it."""
    bucket = bucket_of(stage, which)
    alias = getattr(stage.config.cdn.aliases, which) if certificate else None
    return {
        "Comment": comment(stage, which),
        "Enabled": True,
        "PriceClass": stage.config.cdn.price_class,
        "DefaultRootObject": "",
        "HttpVersion": "http2and3",
        "IsIPV6Enabled": True,
        "Aliases": {"Quantity": 1, "Items": [alias]} if alias else {"Quantity": 0},
        "ViewerCertificate": viewer_certificate(certificate),
        "Origins": {
            "Quantity": 1,
            "Items": [
                {
                    "Id": f"s3-{bucket}",
                    "DomainName": regional_domain(bucket, stage.region),
                    "OriginPath": "",
                    "S3OriginConfig": {"OriginAccessIdentity": ""},
                    "OriginAccessControlId": oac_id,
                }
            ],
        },
        "DefaultCacheBehavior": {
            "TargetOriginId": f"s3-{bucket}",
            "ViewerProtocolPolicy": "redirect-to-https",
            "Compress": True,
            "CachePolicyId": CACHING_OPTIMIZED,
            "AllowedMethods": {
                "Quantity": 2,
                "Items": READ_METHODS,
                "CachedMethods": {"Quantity": 2, "Items": READ_METHODS},
            },
        },
    }


def _origin_key(origin: dict[str, Any]) -> tuple[Any, ...]:
    return (
        origin.get("Id"),
        origin.get("DomainName"),
        origin.get("OriginPath") or "",
        origin.get("OriginAccessControlId") or "",
        (origin.get("S3OriginConfig") or {}).get("OriginAccessIdentity"),
    )


def _behavior_key(behavior: dict[str, Any]) -> tuple[Any, ...]:
    methods = behavior.get("AllowedMethods") or {}
    cached = methods.get("CachedMethods") or {}
    return (
        behavior.get("TargetOriginId"),
        behavior.get("ViewerProtocolPolicy"),
        bool(behavior.get("Compress")),
        behavior.get("CachePolicyId") or "",
        tuple(sorted(methods.get("Items") or [])),
        tuple(sorted(cached.get("Items") or [])),
    )


def _certificate_key(certificate: dict[str, Any]) -> tuple[Any, ...]:
    arn = certificate.get("ACMCertificateArn") or ""
    if not arn:
        return ("default",)
    return (arn, certificate.get("SSLSupportMethod"), certificate.get("MinimumProtocolVersion"))


def differences(want: dict[str, Any], have: dict[str, Any]) -> list[str]:
    """The managed fields whose value in `have` (a read DistributionConfig) differs from `want`."""
    keyed = {
        "Origins": lambda v: sorted(_origin_key(o) for o in (v or {}).get("Items") or []),
        "DefaultCacheBehavior": lambda v: _behavior_key(v or {}),
        "Aliases": lambda v: sorted((v or {}).get("Items") or []),
        "ViewerCertificate": lambda v: _certificate_key(v or {}),
    }
    plain = lambda v: v  # noqa: E731
    return [key for key in want if keyed.get(key, plain)(want[key]) != keyed.get(key, plain)(have.get(key))]


def updated_config(current: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
    """The whole config to send: AWS replaces the config with what an update sends, so the parts
    this tool does not manage are sent back as read."""
    behavior = {
        k: v for k, v in current.get("DefaultCacheBehavior", {}).items() if k not in LEGACY_CACHE_KEYS
    }
    return {**current, **want, "DefaultCacheBehavior": {**behavior, **want["DefaultCacheBehavior"]}}


def wait_deployed(stage: Stage, which: str) -> Wait:
    def probe(stage: Stage) -> str:
        summary = find_summary(stage, which)
        return summary["Status"] if summary else "missing"

    return Wait(
        f"distribution {comment(stage, which)}",
        "CloudFront deploys a change to every edge location",
        probe,
        DEPLOYED,
        timeout_seconds=stage.config.cdn.wait_minutes * 60,
    )


def distribution_tags(stage: Stage, which: str) -> dict[str, str]:
    return {**stage.tags(), "Name": f"{stage.config.project}-{stage.name}-{which}"}


def plan_distribution(
    stage: Stage, which: str, state: DistributionState, oac_id: str | None, certificate: str | None = None
) -> Resource:
    name = comment(stage, which)
    oac: Any = oac_id or Deferred(f"id of origin access control {oac_name(stage)}", read_oac_id)
    want = managed_parts(stage, which, oac, certificate)
    tags = distribution_tags(stage, which)
    steps: list[Step] = []
    if not state.id:
        config = {**want, "CallerReference": f"{name}:{uuid.uuid4().hex}"}
        params = {
            "DistributionConfigWithTags": {
                "DistributionConfig": config,
                "Tags": {"Items": stage.tag_list(tags)},
            }
        }
        steps += [
            Call("cloudfront", "CreateDistributionWithTags", params, name, "distribution does not exist")
        ]
        steps.append(wait_deployed(stage, which))
        return converge(AREA, "distribution", name, steps, exists=False, depends_on=[oac_name(stage)])
    drifted = differences(want, state.config)
    if drifted:
        params = {
            "Id": state.id,
            "IfMatch": state.etag,
            "DistributionConfig": updated_config(state.config, want),
        }
        reason = "; ".join(differs(key, state.config.get(key), want[key]) for key in drifted)
        steps.append(Call("cloudfront", "UpdateDistribution", params, name, reason))
    if any(state.tags.get(k) != v for k, v in tags.items()):
        params = {"Resource": state.arn, "Tags": {"Items": stage.tag_list(tags)}}
        steps.append(Call("cloudfront", "TagResource", params, name, tag_drift(state.tags, tags)))
    if drifted or state.status not in DEPLOYED:
        steps.append(wait_deployed(stage, which))
    return converge(AREA, "distribution", name, steps, exists=True, detail=f"https://{state.domain}")


def plan_oac(stage: Stage, oac_id: str | None) -> Resource:
    name = oac_name(stage)
    steps = []
    if oac_id is None:
        config = {
            "Name": name,
            "Description": f"{stage.config.project} {stage.name}: CloudFront signs its requests to S3",
            "SigningProtocol": "sigv4",
            "SigningBehavior": "always",
            "OriginAccessControlOriginType": "s3",
        }
        params = {"OriginAccessControlConfig": config}
        steps.append(Call("cloudfront", "CreateOriginAccessControl", params, name, "does not exist"))
    return converge(
        AREA, "origin access control", name, steps, exists=oac_id is not None, detail=oac_id or ""
    )


def policy_with_statement(stage: Stage, bucket: str, statement: dict[str, Any]) -> dict[str, Any]:
    """The bucket's live policy with this stage's CloudFront statement put in, the rest untouched."""
    policy = read_policy(stage, bucket)
    existing = policy.get("Statement", [])
    existing = [existing] if isinstance(existing, dict) else list(existing)
    kept = [s for s in existing if s.get("Sid") != statement["Sid"]]
    return {"Version": policy.get("Version", "2012-10-17"), "Statement": [*kept, statement]}


def _admits_new_distribution(stage: Stage, bucket: str, which: str) -> str:
    arn = distribution_arn(stage, which) or ""
    return json.dumps(policy_with_statement(stage, bucket, cloudfront_statement(stage, which, arn)))


def _same_statement(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def plan_bucket_statement(
    stage: Stage, which: str, state: DistributionState, policy: dict[str, Any]
) -> Resource:
    """The bucket admits the distribution. The s3 area keeps this statement once the distribution
    exists (it runs first); a distribution made in this run is admitted here, as soon as it has
    an ARN, so one `up` converges and the next one finds nothing to do. `policy` is the bucket's
    (read only when the distribution exists)."""
    bucket = bucket_of(stage, which)
    name = f"{bucket} for {which}"
    distribution = comment(stage, which)
    if not state.id:
        policy = Deferred(
            f"policy of {bucket} admitting {distribution}",
            lambda stage: _admits_new_distribution(stage, bucket, which),
        )
        call = Call(
            "s3", "PutBucketPolicy", {"Bucket": bucket, "Policy": policy}, name, "distribution is new"
        )
        return converge(AREA, "bucket statement", name, [call], exists=False, depends_on=[distribution])
    want = cloudfront_statement(stage, which, state.arn)
    statements = policy.get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else statements
    steps = []
    if not any(_same_statement(want, s) for s in statements):
        document = json.dumps(policy_with_statement(stage, bucket, want))
        reason = "bucket policy does not admit the distribution"
        steps.append(Call("s3", "PutBucketPolicy", {"Bucket": bucket, "Policy": document}, name, reason))
    return converge(AREA, "bucket statement", name, steps, exists=True, detail=statement_sid(stage))


def plan(stage: Stage) -> list[Resource]:
    if not stage.config.cdn.enabled:
        return []
    summaries, oac_id = call_concurrently(partial(_summaries, stage), partial(read_oac_id, stage))
    wanted = [comment(stage, which) for which in WHICH]
    found = [next((s for s in summaries if s.get("Comment") == c), None) for c in wanted]
    aliased = stage.config.cdn.aliases.statics or stage.config.cdn.aliases.media
    # Both distributions with their buckets' policies, and the certificate, side by side.
    *served, certificate = call_concurrently(
        *(partial(read_served, stage, which, summary) for which, summary in zip(WHICH, found, strict=True)),
        lambda: certificate_for(stage) if aliased else None,
    )
    resources = [plan_oac(stage, oac_id)]
    for which, (state, policy) in zip(WHICH, served, strict=True):
        resources.append(plan_distribution(stage, which, state, oac_id, certificate))
        resources.append(plan_bucket_statement(stage, which, state, policy))
    return resources


# -- down --------------------------------------------------------------------------------------


def current_etag(distribution: str) -> Deferred:
    """The ETag when the call runs: the disabling update just gave the distribution a new one."""
    return Deferred(
        f"current ETag of distribution {distribution}",
        lambda stage: stage.client("cloudfront").get_distribution_config(Id=distribution)["ETag"],
    )


def teardown_distribution(stage: Stage, which: str, state: DistributionState) -> Resource:
    """AWS deletes only a distribution that is disabled and Deployed, with its current ETag."""
    name = comment(stage, which)
    steps: list[Step] = []
    if state.config.get("Enabled", True):
        params = {
            "Id": state.id,
            "IfMatch": state.etag,
            "DistributionConfig": {**state.config, "Enabled": False},
        }
        steps.append(Call("cloudfront", "UpdateDistribution", params, name, "disabled before it is deleted"))
    steps.append(wait_deployed(stage, which))
    delete = {"Id": state.id, "IfMatch": current_etag(state.id)}
    steps.append(Call("cloudfront", "DeleteDistribution", delete, name, "cdn.remove_on_down is true"))
    return removal(AREA, "distribution", name, steps, detail=f"https://{state.domain}")


def teardown(stage: Stage) -> list[Resource]:
    """What `down` does here: nothing unless cdn.remove_on_down; then both distributions go (the
    buckets, their files and the origin access control stay; `up` makes new distributions, with
    new domain names, and admits them in the bucket policies)."""
    if not stage.config.cdn.remove_on_down:
        return []
    summaries = _summaries(stage)
    found = [next((s for s in summaries if s.get("Comment") == comment(stage, w)), None) for w in WHICH]
    return [
        teardown_distribution(stage, which, read_distribution(stage, summary))
        for which, summary in zip(WHICH, found, strict=True)
        if summary is not None
    ]


# -- tasks -------------------------------------------------------------------------------------


create, status = area_tasks(AREA, "the statics and media distributions", plan)
collection = Collection(AREA, create, status)
