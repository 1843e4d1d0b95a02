"""S3: the buckets all stages share: encrypted, private, TLS-only, versioned where they hold data,
with lifecycle rules and CORS for browser uploads. No stage ever deletes one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.cli import area_tasks
from deploy.owned import merge_owned
from deploy.parallel import call_concurrently, map_concurrently
from deploy.plan import Call, Resource, converge, tag_drift

if TYPE_CHECKING:
    from collections.abc import Callable

    from deploy.stage import Stage

AREA = "s3"
# Needs first: the buckets' SSE-KMS key.
AFTER: tuple[str, ...] = ("kms",)
# What other areas may call here: the settings every private bucket of the stack has.
LOOKUPS = ("PRIVATE", "TLS_ONLY_SID", "tls_only_statement")
OWNER = "iotile-deploy"
ABORT_RULE = f"{OWNER}-abort-multipart"
TLS_ONLY_SID = f"{OWNER}-deny-insecure-transport"
PRIVATE = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
UPLOAD_METHODS = ["GET", "HEAD", "POST", "PUT"]


@dataclass(frozen=True)
class BucketSpec:
    """One bucket as config wants it."""

    name: str
    versioning: bool
    kms_key: str | None
    tags: dict[str, str]
    lifecycle: tuple[dict[str, Any], ...]
    cors: tuple[dict[str, Any], ...]


@dataclass
class BucketState:
    """One bucket as S3 has it; empty fields where the setting is absent."""

    exists: bool
    encryption: dict[str, Any] = field(default_factory=dict)
    public_access: dict[str, bool] = field(default_factory=dict)
    ownership: str = ""
    versioning: str = ""
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    cors: list[dict[str, Any]] = field(default_factory=list)
    policy: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def owns_rule(stage: Stage) -> Any:
    mine = f"{OWNER}-{stage.name}-"
    return lambda rule_id: rule_id == ABORT_RULE or rule_id.startswith(mine)


def lifecycle_rules(stage: Stage, expire_errors: bool, versioned: bool) -> list[dict[str, Any]]:
    s3 = stage.config.s3
    rules: list[dict[str, Any]] = [
        {
            "ID": ABORT_RULE,
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": s3.abort_multipart_days},
        }
    ]
    if expire_errors:
        rule: dict[str, Any] = {
            "ID": f"{OWNER}-{stage.name}-expire-errors",
            "Status": "Enabled",
            "Filter": {"Prefix": f"{stage.name}/errors/"},
            "Expiration": {"Days": s3.errors_expire_days},
        }
        if versioned:
            rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": s3.errors_expire_days}
        rules.append(rule)
    return rules


def cors_rules(stage: Stage, enabled: bool) -> list[dict[str, Any]]:
    origins = stage.config.s3.cors_origins
    if not enabled or not origins:
        return []
    return [
        {
            "ID": f"{OWNER}-{stage.name}-uploads",
            "AllowedOrigins": sorted(origins),
            "AllowedMethods": UPLOAD_METHODS,
            "AllowedHeaders": ["*"],
            "ExposeHeaders": ["ETag"],
            "MaxAgeSeconds": 3000,
        }
    ]


def bucket_specs(stage: Stage) -> list[BucketSpec]:
    s3 = stage.config.s3
    return [
        BucketSpec(
            name=bucket.name,
            versioning=bucket.versioning,
            kms_key=s3.kms_key,
            tags=stage.tags(bucket.name),
            lifecycle=tuple(lifecycle_rules(stage, bucket.expire_errors, bucket.versioning)),
            cors=tuple(cors_rules(stage, bucket.cors)),
        )
        for _, bucket in s3.buckets
    ]


# -- reading -----------------------------------------------------------------------------------


def _unless_absent(call: Any, *absent_codes: str) -> Any:
    from botocore.exceptions import ClientError

    try:
        return call()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in absent_codes:
            return None
        raise


def bucket_exists(stage: Stage, name: str) -> bool:
    from botocore.exceptions import ClientError

    from deploy.errors import AwsError

    try:
        stage.client("s3").head_bucket(Bucket=name)
        return True
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("404", "NoSuchBucket", "NotFound"):
            return False
        if code in ("403", "AccessDenied", "Forbidden"):
            raise AwsError(
                "BucketNotOwned",
                f"bucket {name} exists but these credentials cannot use it",
                "Bucket names are global: if another account owns it, rename it in config "
                "(s3.buckets.*.name); else check the IAM permissions.",
            ) from None
        raise


def _first_read(stage: Stage, name: str) -> dict[str, Any] | None:
    """The bucket's encryption, which also tells whether it exists (NoSuchBucket): no HeadBucket
    first. Raises BucketNotOwned, as bucket_exists() does, when these credentials cannot read it."""
    from botocore.exceptions import ClientError

    try:
        return stage.client("s3").get_bucket_encryption(Bucket=name)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code == "ServerSideEncryptionConfigurationNotFoundError":
            return {}
        if code in ("404", "NoSuchBucket", "NotFound"):
            return None
        if code in ("403", "AccessDenied", "Forbidden") and not bucket_exists(stage, name):
            return None  # bucket_exists raised BucketNotOwned for a bucket of another account
        raise


def read_bucket(stage: Stage, name: str) -> BucketState:
    encryption = _first_read(stage, name)
    if encryption is None:
        return BucketState(exists=False)
    s3 = stage.client("s3")
    # S3 has no call that answers them all: the seven reads go side by side.
    block, ownership, lifecycle, cors, policy, tagging, versioning = map_concurrently(
        lambda read: read(),
        [
            lambda: _unless_absent(
                lambda: s3.get_public_access_block(Bucket=name), "NoSuchPublicAccessBlockConfiguration"
            ),
            lambda: _unless_absent(
                lambda: s3.get_bucket_ownership_controls(Bucket=name), "OwnershipControlsNotFoundError"
            ),
            lambda: _unless_absent(
                lambda: s3.get_bucket_lifecycle_configuration(Bucket=name), "NoSuchLifecycleConfiguration"
            ),
            lambda: _unless_absent(lambda: s3.get_bucket_cors(Bucket=name), "NoSuchCORSConfiguration"),
            lambda: _unless_absent(lambda: s3.get_bucket_policy(Bucket=name), "NoSuchBucketPolicy"),
            lambda: _unless_absent(lambda: s3.get_bucket_tagging(Bucket=name), "NoSuchTagSet"),
            lambda: s3.get_bucket_versioning(Bucket=name),
        ],
    )
    rules = (encryption or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    owner_rules = (ownership or {}).get("OwnershipControls", {}).get("Rules", [])
    return BucketState(
        exists=True,
        encryption=rules[0] if rules else {},
        public_access=(block or {}).get("PublicAccessBlockConfiguration", {}),
        ownership=owner_rules[0].get("ObjectOwnership", "") if owner_rules else "",
        versioning=versioning.get("Status", ""),
        lifecycle=(lifecycle or {}).get("Rules", []),
        cors=(cors or {}).get("CORSRules", []),
        policy=json.loads(policy["Policy"]) if policy else {},
        tags={t["Key"]: t["Value"] for t in (tagging or {}).get("TagSet", [])},
    )


# -- planning ----------------------------------------------------------------------------------


def encryption_rule(spec: BucketSpec) -> dict[str, Any]:
    if spec.kms_key:
        default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": spec.kms_key}
        return {"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": True}
    return {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}


def _encryption_matches(spec: BucketSpec, actual: dict[str, Any]) -> bool:
    want = encryption_rule(spec)["ApplyServerSideEncryptionByDefault"]
    have = actual.get("ApplyServerSideEncryptionByDefault", {})
    if want["SSEAlgorithm"] != have.get("SSEAlgorithm"):
        return False
    return want.get("KMSMasterKeyID") in (None, have.get("KMSMasterKeyID"))


def tls_only_statement(name: str, region: str = "us-east-1") -> dict[str, Any]:
    from deploy.aws import partition

    arn = f"arn:{partition(region)}:s3:::{name}"
    return {
        "Sid": TLS_ONLY_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [arn, f"{arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def _normal_rule(rule: dict[str, Any]) -> tuple[Any, ...]:
    prefix = rule.get("Filter", {}).get("Prefix", rule.get("Prefix", ""))
    return (
        rule.get("ID"),
        rule.get("Status"),
        prefix,
        rule.get("Expiration", {}).get("Days"),
        rule.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays"),
        rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation"),
    )


def _normal_cors(rule: dict[str, Any]) -> tuple[Any, ...]:
    lists = ("AllowedOrigins", "AllowedMethods", "AllowedHeaders", "ExposeHeaders")
    return (
        rule.get("ID"),
        *(tuple(sorted(rule.get(k, []))) for k in lists),
        rule.get("MaxAgeSeconds"),
    )


def _normal_statement(statement: dict[str, Any]) -> str:
    def canonical(value: Any) -> Any:
        if isinstance(value, list):
            return (
                sorted((canonical(v) for v in value), key=repr)
                if len(value) > 1
                else (canonical(value[0]) if value else [])
            )
        if isinstance(value, dict):
            return {k: canonical(v) for k, v in value.items()}
        return value

    principal = statement.get("Principal")
    normal = dict(statement, Principal="*" if principal in ("*", {"AWS": "*"}) else principal)
    return json.dumps(canonical(normal), sort_keys=True)


def owns_statement(stage: Stage) -> Callable[[str], bool]:
    mine = f"{OWNER}-{stage.name}-"
    return lambda sid: sid == TLS_ONLY_SID or sid.startswith(mine)


def _managed_statement(statement: dict[str, Any]) -> bool:
    """Written by this tool for some stage: a hand-made statement would not carry its prefix."""
    return str(statement.get("Sid", "")).startswith(f"{OWNER}-")


def _statement_label(statement: dict[str, Any]) -> str:
    if statement.get("Sid"):
        return str(statement["Sid"])
    compact = {"separators": (",", ":"), "sort_keys": True}
    action = json.dumps(statement.get("Action", statement.get("NotAction")), **compact)
    principal = json.dumps(statement.get("Principal", statement.get("NotPrincipal")), **compact)
    return f"{statement.get('Effect')} {action} for {principal} (no Sid)"


def wanted_statements(stage: Stage, name: str) -> list[dict[str, Any]]:
    """The managed statements of this stage that the bucket's policy holds: the TLS-only denial
    every bucket has, what the stage's S3 event integrations need on a staging bucket (Redshift
    sets up its notifications), and what its distributions need to read (by their ARN, read live)."""
    from deploy.areas.autocopy import bucket_policy_statements
    from deploy.areas.cdn import bucket_policy_statements as cdn_statements

    return [
        tls_only_statement(name, stage.region),
        *bucket_policy_statements(stage, name),
        *cdn_statements(stage, name),
    ]


def plan_policy(
    stage: Stage, name: str, policy: dict[str, Any], desired: list[dict[str, Any]] | None = None
) -> tuple[str, dict[str, Any]] | None:
    """Why the bucket policy must be rewritten and the document to write, or None when it matches.
    `desired`: wanted_statements() of the bucket, when already read.

    Statements whose Sid carries the tool's prefix are managed: this stage's own converge to
    config and other stages' stay, as with lifecycle and CORS rules. Unlike those, a hand-made
    statement is drift and goes: a policy grants access, and a grant nobody declared is a hole."""
    existing = policy.get("Statement", [])
    # The policy grammar allows a lone statement object in place of a list.
    existing = [existing] if isinstance(existing, dict) else list(existing)
    managed = [s for s in existing if _managed_statement(s)]
    hand_made = [s for s in existing if not _managed_statement(s)]
    desired = wanted_statements(stage, name) if desired is None else desired
    merged = merge_owned(managed, desired, key="Sid", owns=owns_statement(stage), normalize=_normal_statement)
    if merged is None and not hand_made:
        return None
    reasons = []
    if merged is not None:
        tls_only = _normal_statement(tls_only_statement(name, stage.region))
        denied = any(_normal_statement(s) == tls_only for s in managed)
        reasons.append(
            "managed policy statements differ from config" if denied else "plain-HTTP access is not denied"
        )
    if hand_made:
        labels = ", ".join(_statement_label(s) for s in hand_made)
        reasons.append(f"bucket policy has a statement not managed here: {labels}")
    document = {"Version": "2012-10-17", "Statement": managed if merged is None else merged}
    return "; ".join(reasons), document


def plan_bucket(
    stage: Stage, spec: BucketSpec, state: BucketState, statements: list[dict[str, Any]] | None = None
) -> Resource:
    """`statements`: wanted_statements() of the bucket, when already read."""
    name = spec.name
    steps: list[Call] = []

    def call(operation: str, reason: str, **params: Any) -> None:
        steps.append(Call("s3", operation, {"Bucket": name, **params}, name, reason))

    if not state.exists:
        location = {}
        if stage.region != "us-east-1":
            location = {"CreateBucketConfiguration": {"LocationConstraint": stage.region}}
        call(
            "CreateBucket",
            "bucket does not exist",
            ObjectOwnership="BucketOwnerEnforced",
            **location,
        )
    if not _encryption_matches(spec, state.encryption):
        call(
            "PutBucketEncryption",
            "default encryption differs from config",
            ServerSideEncryptionConfiguration={"Rules": [encryption_rule(spec)]},
        )
    if state.public_access != PRIVATE:
        call(
            "PutPublicAccessBlock",
            "public access is not fully blocked",
            PublicAccessBlockConfiguration=dict(PRIVATE),
        )
    if state.exists and state.ownership != "BucketOwnerEnforced":
        call(
            "PutBucketOwnershipControls",
            "object ACLs are not disabled",
            OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        )
    if spec.versioning and state.versioning != "Enabled":
        call(
            "PutBucketVersioning",
            "versioning is not enabled",
            VersioningConfiguration={"Status": "Enabled"},
        )
    rules = merge_owned(
        state.lifecycle, spec.lifecycle, key="ID", owns=owns_rule(stage), normalize=_normal_rule
    )
    if rules is not None:
        call(
            "PutBucketLifecycleConfiguration",
            "lifecycle rules differ from config",
            LifecycleConfiguration={"Rules": rules},
        )
    cors = merge_owned(state.cors, spec.cors, key="ID", owns=owns_rule(stage), normalize=_normal_cors)
    if cors is not None:
        if cors:
            call(
                "PutBucketCors",
                "CORS rules differ from config",
                CORSConfiguration={"CORSRules": cors},
            )
        else:
            call("DeleteBucketCors", "CORS rules no longer in config")
    policy = plan_policy(stage, name, state.policy, statements)
    if policy is not None:
        reason, document = policy
        call("PutBucketPolicy", reason, Policy=json.dumps(document))
    if any(state.tags.get(k) != v for k, v in spec.tags.items()):
        tags = {**state.tags, **spec.tags}
        call(
            "PutBucketTagging",
            tag_drift(state.tags, spec.tags),
            Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]},
        )
    return converge(AREA, "bucket", name, steps, exists=state.exists, detail=f"s3://{name}")


def plan(stage: Stage) -> list[Resource]:
    specs = bucket_specs(stage)
    # What the policies must hold reads the distributions (one listing a run): beside the buckets.
    states, statements = call_concurrently(
        lambda: map_concurrently(lambda spec: read_bucket(stage, spec.name), specs),
        lambda: [wanted_statements(stage, spec.name) for spec in specs],
    )
    return [
        plan_bucket(stage, spec, state, wanted)
        for spec, state, wanted in zip(specs, states, statements, strict=True)
    ]


# -- tasks -------------------------------------------------------------------------------------


create, status = area_tasks(AREA, "the eight shared buckets", plan)
collection = Collection(AREA, create, status)
