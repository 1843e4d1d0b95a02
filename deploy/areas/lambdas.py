"""Lambdas: the functions of serverless/ (one per folder, described by its function.yaml), their
encrypted private deployment buckets, log groups, schedules, topic subscriptions, the media
bucket's notification (merged with whatever else is there) and the invoke permissions each trigger
needs, scoped to its source ARN and account. A function changes only when its code hash or its
configuration differs from what is deployed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.cli import area_tasks, deploy_task
from deploy.parallel import call_concurrently, map_concurrently
from deploy.plan import Call, Deferred, Resource, Wait, converge, removal

if TYPE_CHECKING:
    from deploy.ship.functions import FunctionFile, Package
    from deploy.stage import Stage

AREA = "lambdas"
# Needs first: the roles, the buckets, topics, queues and tables the functions use, and their key.
AFTER: tuple[str, ...] = ("iam", "kms", "s3", "sns", "sqs", "dynamodb")
LOOKUPS = ("function_arn",)
FUNCTION_KEYS = ("health", "process_upload_sxd", "s3image", "delete_s3_obj")
# Statement ids of the invoke permissions this tool grants (others on a function are left alone).
STATEMENT_PREFIX = "iotile-"
CONFIG_FIELDS = ("Runtime", "Handler", "Role", "MemorySize", "Timeout", "Description", "Environment")
UPDATE_READY, UPDATE_FAILED = frozenset({"Successful"}), frozenset({"Failed"})


@dataclass(frozen=True)
class Schedule:
    name: str
    expression: str
    enabled: bool
    input: str | None
    description: str


@dataclass(frozen=True)
class BucketTrigger:
    bucket: str
    prefix: str
    suffix: str
    events: tuple[str, ...]


@dataclass(frozen=True)
class Grant:
    """One invoke permission: who may call the function, from which source."""

    sid: str
    principal: str
    source_arn: str
    source_account: str


@dataclass(frozen=True)
class FunctionSpec:
    """One function as its function.yaml and config want it, placeholders filled in."""

    key: str
    folder: Path
    name: str
    role: str
    bucket: str
    file: FunctionFile
    environment: dict[str, str]
    tags: dict[str, str]
    schedules: tuple[Schedule, ...] = ()
    topics: tuple[str, ...] = ()
    s3: tuple[BucketTrigger, ...] = ()


@dataclass
class FunctionState:
    exists: bool
    configuration: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


# -- what config and function.yaml want ----------------------------------------------------------


def fill(text: str, stage: Stage) -> str:
    """The placeholders of function.yaml: {stage} {region} {account}."""
    text = text.replace("{stage}", stage.name).replace("{region}", stage.region)
    return text.replace("{account}", stage.account_id) if "{account}" in text else text


def source_folder(stage: Stage, key: str) -> Path:
    from deploy.errors import ConfigError

    lambdas = stage.config.lambdas
    folder = Path(lambdas.source) / getattr(lambdas.folders, key)
    if not folder.is_dir():
        problem = f"{folder} is not a folder (lambdas.source / lambdas.folders.{key})"
        raise ConfigError(f"config/{stage.name}.yaml", f"lambdas.folders.{key}", problem)
    return folder


def environment_of(stage: Stage, folder: str, declared: dict[str, str]) -> dict[str, str]:
    """function.yaml's variables, the ones config owns (image sizes, allowed buckets) filled from
    config, then config's overrides for the folder."""
    lambdas = stage.config.lambdas
    from_config = {
        "IMAGE_SIZES": json.dumps(lambdas.image_sizes.model_dump(), separators=(",", ":")),
        "ALLOWED_BUCKETS": ",".join(lambdas.allowed_buckets),
    }
    merged = {name: from_config.get(name, value) for name, value in declared.items()}
    merged.update(lambdas.environment.get(folder, {}))
    return {name: fill(value, stage) for name, value in merged.items()}


def function_spec(stage: Stage, key: str) -> FunctionSpec:
    from deploy.ship.functions import load_function

    lambdas = stage.config.lambdas
    folder = source_folder(stage, key)
    loaded = load_function(folder)
    name = getattr(lambdas.functions, key)
    triggers = loaded.triggers
    return FunctionSpec(
        key=key,
        folder=folder,
        name=name,
        role=getattr(stage.config.iam.lambda_roles, key),
        bucket=getattr(lambdas.deployment_buckets, key),
        file=loaded,
        environment=environment_of(stage, folder.name, loaded.environment),
        tags=stage.tags(name),
        schedules=tuple(
            Schedule(
                fill(s.name, stage),
                s.expression,
                s.enabled,
                json.dumps(s.input, sort_keys=True) if s.input is not None else None,
                s.description or f"{name}: {s.expression}",
            )
            for s in triggers.schedules
        ),
        topics=tuple(fill(topic, stage) for topic in triggers.sns),
        s3=tuple(
            BucketTrigger(
                fill(t.bucket, stage), fill(t.prefix, stage), fill(t.suffix, stage), tuple(t.events)
            )
            for t in triggers.s3
        ),
    )


def function_specs(stage: Stage, only: str | None = None) -> list[FunctionSpec]:
    """Every function, or the one `only` names (its folder, config key or function name)."""
    keys = list(FUNCTION_KEYS)
    if only is not None:
        keys = [function_key(stage, only)]
    return [function_spec(stage, key) for key in keys]


def function_key(stage: Stage, name: str) -> str:
    from deploy.errors import ArgumentError

    lambdas = stage.config.lambdas
    for key in FUNCTION_KEYS:
        if name in (key, getattr(lambdas.folders, key), getattr(lambdas.functions, key)):
            return key
    known = ", ".join(getattr(lambdas.folders, key) for key in FUNCTION_KEYS)
    raise ArgumentError("NAME", f"no function {name!r}: one of {known}")


def function_arn(stage: Stage, name: str) -> str:
    """The ARN of the function `name` (a lookup for other areas: nothing is read)."""
    return stage.arn("lambda", f"function:{name}")


def _statement_id(kind: str, source: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in source)
    return f"{STATEMENT_PREFIX}{kind}-{safe}"[:100]


def grants(stage: Stage, spec: FunctionSpec) -> list[Grant]:
    """The invoke permissions the function's triggers need, each limited to its source."""
    from deploy.aws import partition

    account, part = stage.account_id, partition(stage.region)
    wanted = [
        Grant(
            _statement_id("events", s.name),
            "events.amazonaws.com",
            stage.arn("events", f"rule/{s.name}"),
            account,
        )
        for s in spec.schedules
    ]
    wanted += [
        Grant(_statement_id("sns", t), "sns.amazonaws.com", stage.arn("sns", t), account) for t in spec.topics
    ]
    buckets = dict.fromkeys(t.bucket for t in spec.s3)
    wanted += [
        Grant(_statement_id("s3", b), "s3.amazonaws.com", f"arn:{part}:s3:::{b}", account) for b in buckets
    ]
    return wanted


# -- reading -------------------------------------------------------------------------------------


def _absent(call: Any, *codes: str) -> Any:
    from botocore.exceptions import ClientError

    from deploy.errors import error_code

    try:
        return call()
    except ClientError as exc:
        if error_code(exc) in codes:
            return None
        raise


NOT_FOUND = ("ResourceNotFoundException",)


def read_function(stage: Stage, name: str) -> FunctionState:
    found = _absent(lambda: stage.client("lambda").get_function(FunctionName=name), *NOT_FOUND)
    if found is None:
        return FunctionState(exists=False)
    return FunctionState(True, found["Configuration"], found.get("Tags", {}))


def object_exists(stage: Stage, bucket: str, key: str) -> bool:
    head = _absent(
        lambda: stage.client("s3").head_object(Bucket=bucket, Key=key),
        "404",
        "NoSuchKey",
        "NotFound",
        "NoSuchBucket",
    )
    return head is not None


def read_statements(stage: Stage, name: str) -> dict[str, dict[str, Any]]:
    found = _absent(lambda: stage.client("lambda").get_policy(FunctionName=name), *NOT_FOUND)
    if found is None:
        return {}
    statements = json.loads(found["Policy"]).get("Statement", [])
    return {s["Sid"]: s for s in statements if "Sid" in s}


# -- deployment buckets --------------------------------------------------------------------------


def encryption_rule(stage: Stage) -> dict[str, Any]:
    kms_key = stage.config.s3.kms_key
    if kms_key:
        default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key}
        return {"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": True}
    return {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}


def read_bucket_settings(stage: Stage, name: str) -> list[dict[str, Any] | None]:
    """An existing bucket's public access block, policy and tags (None where it has none), read
    side by side."""
    s3 = stage.client("s3")
    return call_concurrently(
        lambda: _absent(
            lambda: s3.get_public_access_block(Bucket=name), "NoSuchPublicAccessBlockConfiguration"
        ),
        lambda: _absent(lambda: s3.get_bucket_policy(Bucket=name), "NoSuchBucketPolicy"),
        lambda: _absent(lambda: s3.get_bucket_tagging(Bucket=name), "NoSuchTagSet"),
    )


def plan_deployment_bucket(stage: Stage, name: str) -> Resource:
    """Encrypted, public access blocked, object ACLs off, plain HTTP denied; tagged: as the s3
    area's buckets are."""
    from deploy.areas import s3 as s3_area

    s3 = stage.client("s3")

    # The encryption read tells whether the bucket exists too (NoSuchBucket): no HeadBucket.
    def read_encryption() -> dict[str, Any]:
        return (
            _absent(
                lambda: s3.get_bucket_encryption(Bucket=name),
                "ServerSideEncryptionConfigurationNotFoundError",
            )
            or {}
        )

    encryption = _absent(read_encryption, "404", "NoSuchBucket", "NotFound")
    exists = encryption is not None
    steps: list[Call] = []

    def call(operation: str, reason: str, **params: Any) -> None:
        steps.append(Call("s3", operation, {"Bucket": name, **params}, name, reason))

    if not exists:
        location = {}
        if stage.region != "us-east-1":
            location = {"CreateBucketConfiguration": {"LocationConstraint": stage.region}}
        call("CreateBucket", "bucket does not exist", ObjectOwnership="BucketOwnerEnforced", **location)
    rules = (encryption or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    wanted = encryption_rule(stage)
    have = rules[0] if rules else {}
    if have.get("ApplyServerSideEncryptionByDefault") != wanted["ApplyServerSideEncryptionByDefault"]:
        call(
            "PutBucketEncryption",
            "default encryption differs from config",
            ServerSideEncryptionConfiguration={"Rules": [wanted]},
        )
    block, policy, tagging = read_bucket_settings(stage, name) if exists else (None, None, None)
    if (block or {}).get("PublicAccessBlockConfiguration") != s3_area.PRIVATE:
        call(
            "PutPublicAccessBlock",
            "public access is not fully blocked",
            PublicAccessBlockConfiguration=dict(s3_area.PRIVATE),
        )
    statements = json.loads(policy["Policy"]).get("Statement", []) if policy else []
    wanted_statement = s3_area.tls_only_statement(name, stage.region)
    if wanted_statement not in statements:
        kept = [st for st in statements if st.get("Sid") != s3_area.TLS_ONLY_SID]
        document = {"Version": "2012-10-17", "Statement": [*kept, wanted_statement]}
        call("PutBucketPolicy", "plain HTTP is not denied", Policy=json.dumps(document))
    tags = {t["Key"]: t["Value"] for t in (tagging or {}).get("TagSet", [])}
    wanted_tags = stage.tags(name)
    if any(tags.get(k) != v for k, v in wanted_tags.items()):
        merged = {**tags, **wanted_tags}
        call("PutBucketTagging", "tags differ from config", Tagging={"TagSet": stage.tag_list(merged)})
    return converge(AREA, "deployment bucket", name, steps, exists=exists, detail=f"s3://{name}")


# -- log groups ----------------------------------------------------------------------------------


def log_group_name(function: str) -> str:
    return f"/aws/lambda/{function}"


def plan_log_group(stage: Stage, spec: FunctionSpec) -> Resource:
    logs = stage.client("logs")
    name = log_group_name(spec.name)
    found = logs.describe_log_groups(logGroupNamePrefix=name).get("logGroups", [])
    group = next((g for g in found if g["logGroupName"] == name), None)
    days = stage.config.lambdas.log_retention_days
    steps: list[Call] = []
    if group is None:
        steps.append(
            Call(
                "logs",
                "CreateLogGroup",
                {"logGroupName": name, "tags": spec.tags},
                name,
                "log group does not exist",
            )
        )
    if group is None or group.get("retentionInDays") != days:
        params = {"logGroupName": name, "retentionInDays": days}
        steps.append(Call("logs", "PutRetentionPolicy", params, name, f"retention is not {days} days"))
    detail = f"{days} days"
    return converge(AREA, "log group", name, steps, exists=group is not None, detail=detail)


# -- functions -----------------------------------------------------------------------------------


def wanted_configuration(stage: Stage, spec: FunctionSpec) -> dict[str, Any]:
    from deploy.areas import iam

    return {
        "Runtime": spec.file.runtime,
        "Handler": spec.file.handler,
        "Role": iam.role_arn(stage, spec.role),
        "MemorySize": spec.file.memory,
        "Timeout": spec.file.timeout,
        "Description": spec.file.description or f"IOTile Cloud {spec.key} ({stage.name})",
        "Environment": {"Variables": dict(spec.environment)},
    }


def _differs(field_name: str, want: Any, have: dict[str, Any]) -> bool:
    if field_name == "Environment":
        return want.get("Variables", {}) != (have.get("Environment") or {}).get("Variables", {})
    return want != have.get(field_name)


def package_key(spec: FunctionSpec, package: Package) -> str:
    return f"{spec.name}/{package.hex_digest}.zip"


def _upload(stage: Stage, spec: FunctionSpec, package: Package) -> Call:
    import base64
    import hashlib

    key = package_key(spec, package)
    body = Deferred(f"{spec.folder} package, {len(package.data)} bytes", lambda _: package.data)
    md5 = base64.b64encode(hashlib.md5(package.data, usedforsecurity=False).digest()).decode("ascii")
    params = {
        "Bucket": spec.bucket,
        "Key": key,
        "Body": body,
        "ContentMD5": md5,
        "ContentType": "application/zip",
    }
    return Call(
        "s3",
        "PutObject",
        params,
        spec.name,
        f"package {package.hex_digest[:12]} is not in s3://{spec.bucket}",
    )


def _status_probe(name: str, field_name: str, default: str) -> Any:
    def probe(stage: Stage) -> str:
        found = stage.client("lambda").get_function_configuration(FunctionName=name)
        return str(found.get(field_name) or default)

    return probe


def _settled(name: str) -> Wait:
    probe = _status_probe(name, "LastUpdateStatus", "Successful")
    return Wait(name, "the update to finish", probe, UPDATE_READY, UPDATE_FAILED)


def plan_function(stage: Stage, spec: FunctionSpec, package: Package, state: FunctionState) -> Resource:
    want = wanted_configuration(stage, spec)
    code = {"S3Bucket": spec.bucket, "S3Key": package_key(spec, package)}
    architectures = [spec.file.architecture]
    have = state.configuration
    steps: list[Call | Wait] = []
    code_differs = have.get("CodeSha256") != package.code_sha256 or have.get("Architectures") != architectures
    if (not state.exists or code_differs) and not object_exists(stage, spec.bucket, code["S3Key"]):
        steps.append(_upload(stage, spec, package))
    if not state.exists:
        params = {"FunctionName": spec.name, **want, "Code": code, "Architectures": architectures}
        params["Tags"] = spec.tags
        # Right after IAM makes the role, Lambda may not be able to assume it for a few seconds.
        steps.append(
            Call(
                "lambda",
                "CreateFunction",
                params,
                spec.name,
                "function does not exist",
                retry_codes=("InvalidParameterValueException",),
            )
        )
        probe = _status_probe(spec.name, "State", "Active")
        steps.append(
            Wait(spec.name, "the function to be active", probe, frozenset({"Active"}), frozenset({"Failed"}))
        )
        return converge(
            AREA,
            "function",
            spec.name,
            steps,
            exists=False,
            depends_on=[spec.bucket, log_group_name(spec.name)],
        )
    drifted = [name for name in CONFIG_FIELDS if _differs(name, want[name], have)]
    if drifted:
        reason = f"{', '.join(drifted)} differ from function.yaml and config"
        steps += [
            Call(
                "lambda",
                "UpdateFunctionConfiguration",
                {"FunctionName": spec.name, **want},
                spec.name,
                reason,
            ),
            _settled(spec.name),
        ]
    if code_differs:
        reason = f"code {have.get('CodeSha256', '')[:12]} is not the package's {package.code_sha256[:12]}"
        params = {"FunctionName": spec.name, **code, "Architectures": architectures}
        steps += [Call("lambda", "UpdateFunctionCode", params, spec.name, reason), _settled(spec.name)]
    if any(state.tags.get(k) != v for k, v in spec.tags.items()):
        params = {"Resource": have["FunctionArn"], "Tags": spec.tags}
        steps.append(Call("lambda", "TagResource", params, spec.name, "tags differ from config"))
    detail = f"{have.get('Version', '')} {have.get('CodeSha256', '')[:12]}".strip()
    return converge(AREA, "function", spec.name, steps, exists=True, detail=detail, depends_on=[spec.bucket])


# -- invoke permissions --------------------------------------------------------------------------


def _grant_of(statement: dict[str, Any]) -> Grant:
    principal = statement.get("Principal", {})
    condition = statement.get("Condition", {})
    return Grant(
        statement.get("Sid", ""),
        principal.get("Service", "") if isinstance(principal, dict) else str(principal),
        condition.get("ArnLike", {}).get("AWS:SourceArn", ""),
        condition.get("StringEquals", {}).get("AWS:SourceAccount", ""),
    )


def plan_permissions(stage: Stage, spec: FunctionSpec) -> Resource:
    """Each trigger's permission, by its statement id; ours no longer wanted are removed, any
    other statement is left alone."""
    wanted = {grant.sid: grant for grant in grants(stage, spec)}
    existing = read_statements(stage, spec.name)
    name = f"{spec.name} invoke permissions"
    steps: list[Call] = []
    for sid, statement in sorted(existing.items()):
        if sid.startswith(STATEMENT_PREFIX) and _grant_of(statement) != wanted.get(sid):
            reason = "no longer a trigger" if sid not in wanted else "source differs"
            steps.append(
                Call(
                    "lambda",
                    "RemovePermission",
                    {"FunctionName": spec.name, "StatementId": sid},
                    name,
                    f"{sid}: {reason}",
                )
            )
    for sid, grant in wanted.items():
        if sid not in existing or _grant_of(existing[sid]) != grant:
            params = {
                "FunctionName": spec.name,
                "StatementId": sid,
                "Action": "lambda:InvokeFunction",
                "Principal": grant.principal,
                "SourceArn": grant.source_arn,
                "SourceAccount": grant.source_account,
            }
            steps.append(
                Call(
                    "lambda",
                    "AddPermission",
                    params,
                    name,
                    f"{grant.principal} may not invoke it from {grant.source_arn}",
                )
            )
    return converge(
        AREA,
        "invoke permissions",
        name,
        steps,
        # None of ours yet (a new function, say) is missing; some, but not as wanted, is drift.
        exists=not wanted or any(sid.startswith(STATEMENT_PREFIX) for sid in existing),
        detail=f"{len(wanted)} sources",
        depends_on=[spec.name],
    )


# -- schedules -----------------------------------------------------------------------------------


def plan_schedule(stage: Stage, spec: FunctionSpec, schedule: Schedule) -> Resource:
    events = stage.client("events")
    rule = _absent(lambda: events.describe_rule(Name=schedule.name), *NOT_FOUND)
    state = "ENABLED" if schedule.enabled else "DISABLED"
    steps: list[Call] = []
    put = {
        "Name": schedule.name,
        "ScheduleExpression": schedule.expression,
        "State": state,
        "Description": schedule.description,
    }
    if rule is None:
        steps.append(
            Call(
                "events",
                "PutRule",
                {**put, "Tags": stage.tag_list(spec.tags)},
                schedule.name,
                "rule does not exist",
            )
        )
    else:
        drifted = [k for k in ("ScheduleExpression", "State", "Description") if rule.get(k) != put[k]]
        if drifted:
            steps.append(
                Call(
                    "events", "PutRule", put, schedule.name, f"{', '.join(drifted)} differ from function.yaml"
                )
            )
    target = {"Id": spec.name, "Arn": function_arn(stage, spec.name)}
    if schedule.input is not None:
        target["Input"] = schedule.input
    targets = [] if rule is None else events.list_targets_by_rule(Rule=schedule.name).get("Targets", [])
    have = next((t for t in targets if t["Id"] == spec.name), None)
    if have is None or {k: have.get(k) for k in target} != target or ("Input" in have) != ("Input" in target):
        steps.append(
            Call(
                "events",
                "PutTargets",
                {"Rule": schedule.name, "Targets": [target]},
                schedule.name,
                f"target is not {spec.name}",
            )
        )
    detail = f"{schedule.expression} {state.lower()} -> {spec.name}"
    return converge(
        AREA,
        "schedule",
        schedule.name,
        steps,
        exists=rule is not None,
        detail=detail,
        depends_on=[f"{spec.name} invoke permissions"],
    )


def plan_dropped_schedules(stage: Stage, spec: FunctionSpec) -> list[Resource]:
    """Rules that still target the function though its function.yaml no longer lists them: the
    target is removed, and the rule too when nothing else is its target."""
    events = stage.client("events")
    arn = function_arn(stage, spec.name)
    wanted = {schedule.name for schedule in spec.schedules}
    names: list[str] = []
    token: dict[str, str] = {}
    while True:
        page = _absent(lambda t=token: events.list_rule_names_by_target(TargetArn=arn, **t), *NOT_FOUND) or {}
        names += page.get("RuleNames", [])
        if not page.get("NextToken"):
            break
        token = {"NextToken": page["NextToken"]}
    dropped = sorted(set(names) - wanted)
    return map_concurrently(lambda name: plan_dropped_schedule(stage, spec, name), dropped)


def plan_dropped_schedule(stage: Stage, spec: FunctionSpec, name: str) -> Resource:
    """The rule `name` no longer targets the function; it goes too when nothing else is its target."""
    arn = function_arn(stage, spec.name)
    targets = stage.client("events").list_targets_by_rule(Rule=name).get("Targets", [])
    ours = [t["Id"] for t in targets if t["Arn"] == arn]
    reason = f"no longer a schedule of {spec.folder.name}/function.yaml"
    steps = [Call("events", "RemoveTargets", {"Rule": name, "Ids": ours}, name, reason)]
    if len(ours) == len(targets):
        steps.append(Call("events", "DeleteRule", {"Name": name}, name, "no target left"))
    return converge(AREA, "schedule", name, steps, exists=True, detail=f"-> {spec.name}")


# -- topic subscriptions -------------------------------------------------------------------------


def plan_subscription(stage: Stage, spec: FunctionSpec, topic: str) -> Resource:
    from deploy.areas import sns

    topic_arn = sns.topic_arn(stage, topic)
    endpoint = function_arn(stage, spec.name)
    subscribed = False
    found = _absent(lambda: sns.topic_subscriptions(stage, topic_arn), "NotFound")
    for subscription in found or []:
        subscribed = subscribed or (
            subscription["Protocol"] == "lambda" and subscription["Endpoint"] == endpoint
        )
    name = f"{topic} -> {spec.name}"
    steps = []
    if not subscribed:
        params = {
            "TopicArn": topic_arn,
            "Protocol": "lambda",
            "Endpoint": endpoint,
            "ReturnSubscriptionArn": True,
        }
        steps.append(Call("sns", "Subscribe", params, name, "function is not subscribed"))
    return converge(
        AREA, "subscription", name, steps, exists=subscribed, depends_on=[f"{spec.name} invoke permissions"]
    )


# -- bucket notifications ------------------------------------------------------------------------


def _notification_entry(
    stage: Stage, spec: FunctionSpec, trigger: BucketTrigger, index: int
) -> dict[str, Any]:
    rules = [{"Name": "prefix", "Value": trigger.prefix}] if trigger.prefix else []
    rules += [{"Name": "suffix", "Value": trigger.suffix}] if trigger.suffix else []
    entry: dict[str, Any] = {
        "Id": spec.name if index == 0 else f"{spec.name}-{index}",
        "LambdaFunctionArn": function_arn(stage, spec.name),
        "Events": sorted(trigger.events),
    }
    if rules:
        entry["Filter"] = {"Key": {"FilterRules": rules}}
    return entry


def _normal(entry: dict[str, Any]) -> str:
    rules = entry.get("Filter", {}).get("Key", {}).get("FilterRules", [])
    shown = sorted((r["Name"].lower(), r["Value"]) for r in rules)
    return json.dumps(
        [entry.get("Id"), entry.get("LambdaFunctionArn"), sorted(entry.get("Events", [])), shown]
    )


def read_notification(
    stage: Stage, bucket: str, ours: set[str]
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The bucket's notification document, and its Lambda entries split into the others' (kept as
    they are) and ours (entries of the functions in `ours`)."""
    current = (
        _absent(
            lambda: stage.client("s3").get_bucket_notification_configuration(Bucket=bucket), "NoSuchBucket"
        )
        or {}
    )
    current.pop("ResponseMetadata", None)
    lambdas = current.get("LambdaFunctionConfigurations", [])
    kept = [entry for entry in lambdas if entry.get("LambdaFunctionArn") not in ours]
    mine = [entry for entry in lambdas if entry.get("LambdaFunctionArn") in ours]
    return current, kept, mine


def plan_notification(stage: Stage, bucket: str, specs: list[FunctionSpec]) -> Resource:
    """The bucket's notification with our functions' entries in place; every other entry (other
    functions, queues, topics, EventBridge) kept as it is: S3 has one document per bucket."""
    ours = {function_arn(stage, spec.name) for spec in specs}
    wanted = [
        _notification_entry(stage, spec, trigger, n)
        for spec in specs
        for n, trigger in enumerate(t for t in spec.s3 if t.bucket == bucket)
    ]
    current, kept, mine = read_notification(stage, bucket, ours)
    name = f"s3://{bucket} notification"
    steps = []
    if sorted(map(_normal, mine)) != sorted(map(_normal, wanted)):
        document = {**current, "LambdaFunctionConfigurations": kept + wanted}
        others = (
            len(kept)
            + len(current.get("QueueConfigurations", []))
            + len(current.get("TopicConfigurations", []))
        )
        reason = f"function triggers differ (the {others} other entries are kept)"
        steps.append(
            Call(
                "s3",
                "PutBucketNotificationConfiguration",
                {"Bucket": bucket, "NotificationConfiguration": document},
                name,
                reason,
            )
        )
    after = [f"{spec.name} invoke permissions" for spec in specs if any(t.bucket == bucket for t in spec.s3)]
    detail = ", ".join(sorted({e["Id"] for e in wanted}))
    exists = bool(mine) or not wanted
    return converge(AREA, "bucket notification", name, steps, exists=exists, detail=detail, depends_on=after)


# -- the plan ------------------------------------------------------------------------------------


def plan_one(stage: Stage, spec: FunctionSpec, package: Package) -> list[Resource]:
    """The function and everything around it; none of their reads needs another's answer, so
    they go side by side."""
    log_group, function, permissions, schedules, dropped, subscriptions = call_concurrently(
        lambda: plan_log_group(stage, spec),
        lambda: plan_function(stage, spec, package, read_function(stage, spec.name)),
        lambda: plan_permissions(stage, spec),
        lambda: map_concurrently(lambda schedule: plan_schedule(stage, spec, schedule), spec.schedules),
        lambda: plan_dropped_schedules(stage, spec),
        lambda: map_concurrently(lambda topic: plan_subscription(stage, spec, topic), spec.topics),
    )
    return [log_group, function, permissions, *schedules, *dropped, *subscriptions]


def build_packages(stage: Stage, specs: list[FunctionSpec]) -> list[Package]:
    """Each function's package; on the emulator, with its requirements built for this machine,
    where the emulator runs the handlers."""
    from deploy.ship.functions import LOCAL, package_function

    def build(spec: FunctionSpec) -> Package:
        return package_function(spec.folder, LOCAL if stage.uses_emulator else spec.file.architecture)

    return map_concurrently(build, specs)


def plan_functions(stage: Stage, only: str | None = None) -> list[Resource]:
    specs = function_specs(stage, only)
    packages = build_packages(stage, specs)
    buckets = list(dict.fromkeys(spec.bucket for spec in specs))
    # The media bucket always: a function whose trigger was dropped leaves an entry to remove.
    media = stage.config.s3.buckets.media.name
    notified = list(dict.fromkeys([*(t.bucket for spec in specs for t in spec.s3), media]))
    # The deployment buckets, the functions and the notifications are read side by side (none
    # reads another).
    resources, per_function, notifications = call_concurrently(
        lambda: map_concurrently(lambda name: plan_deployment_bucket(stage, name), buckets),
        lambda: map_concurrently(lambda pair: plan_one(stage, *pair), zip(specs, packages, strict=True)),
        lambda: map_concurrently(lambda bucket: plan_notification(stage, bucket, specs), notified),
    )
    return [*resources, *(resource for group in per_function for resource in group), *notifications]


def plan(stage: Stage) -> list[Resource]:
    return plan_functions(stage)


# -- down ----------------------------------------------------------------------------------------


def teardown_rules(stage: Stage, spec: FunctionSpec) -> list[Resource]:
    """Every rule targeting the function: our target removed, the rule too when nothing else is
    its target."""
    events = stage.client("events")
    arn = function_arn(stage, spec.name)
    page = _absent(lambda: events.list_rule_names_by_target(TargetArn=arn), *NOT_FOUND) or {}
    resources = []
    for name in sorted(page.get("RuleNames", [])):
        targets = events.list_targets_by_rule(Rule=name).get("Targets", [])
        ours = [t["Id"] for t in targets if t["Arn"] == arn]
        steps = [
            Call("events", "RemoveTargets", {"Rule": name, "Ids": ours}, name, "its function goes on down")
        ]
        if len(ours) == len(targets):
            steps.append(Call("events", "DeleteRule", {"Name": name}, name, "no target left"))
        resources.append(removal(AREA, "schedule", name, steps, detail=f"-> {spec.name}"))
    return resources


def teardown_subscriptions(stage: Stage, spec: FunctionSpec) -> list[Resource]:
    from deploy.areas import sns

    endpoint = function_arn(stage, spec.name)
    client = stage.client("sns")
    resources = []
    for topic in spec.topics:
        found = _absent(
            lambda t=topic: (
                client.get_paginator("list_subscriptions_by_topic")
                .paginate(TopicArn=sns.topic_arn(stage, t))
                .build_full_result()
            ),
            "NotFound",
        )
        arns = [
            s["SubscriptionArn"]
            for s in (found or {}).get("Subscriptions", [])
            if s["Protocol"] == "lambda"
            and s["Endpoint"] == endpoint
            and s["SubscriptionArn"].startswith("arn:")
        ]
        name = f"{topic} -> {spec.name}"
        steps = [
            Call("sns", "Unsubscribe", {"SubscriptionArn": a}, name, "its function goes on down")
            for a in arns
        ]
        if steps:
            resources.append(removal(AREA, "subscription", name, steps))
    return resources


def teardown_notification(stage: Stage, bucket: str, specs: list[FunctionSpec]) -> Resource | None:
    """The bucket's notification without our functions' entries; every other entry is kept."""
    ours = {function_arn(stage, spec.name) for spec in specs}
    current, kept, mine = read_notification(stage, bucket, ours)
    if not mine:
        return None
    document = {**current, "LambdaFunctionConfigurations": kept}
    if not kept:
        del document["LambdaFunctionConfigurations"]
    name = f"s3://{bucket} notification"
    reason = f"our {len(mine)} function trigger(s) go on down, other entries stay"
    params = {"Bucket": bucket, "NotificationConfiguration": document}
    call = Call("s3", "PutBucketNotificationConfiguration", params, name, reason)
    return removal(AREA, "bucket notification", name, [call])


def teardown(stage: Stage) -> list[Resource]:
    """What `down` does here: the triggers first (schedules, subscriptions, our entries of the
    buckets' notifications), then the functions, whose invoke permissions go with them. Log
    groups, the deployment bucket and its packages stay."""
    specs = function_specs(stage)
    buckets = list(
        dict.fromkeys([*(t.bucket for spec in specs for t in spec.s3), stage.config.s3.buckets.media.name])
    )
    triggers = [
        r for spec in specs for r in (*teardown_rules(stage, spec), *teardown_subscriptions(stage, spec))
    ]
    triggers += [r for r in (teardown_notification(stage, b, specs) for b in buckets) if r is not None]
    functions = []
    for spec in specs:
        if read_function(stage, spec.name).exists:
            call = Call(
                "lambda", "DeleteFunction", {"FunctionName": spec.name}, spec.name, "compute goes on down"
            )
            functions.append(
                removal(AREA, "function", spec.name, [call], depends_on=[t.name for t in triggers])
            )
    return triggers + functions


# -- tasks ---------------------------------------------------------------------------------------


def function_rows(stage: Stage, resources: list[Resource]) -> list[dict[str, Any]]:
    """One row per function: its state, version, last change, code hash and triggers."""
    specs = function_specs(stage)
    states = map_concurrently(lambda spec: read_function(stage, spec.name), specs)
    by_name = {(r.kind, r.name): r for r in resources}
    rows = []
    for spec, state in zip(specs, states, strict=True):
        function = by_name.get(("function", spec.name))
        parts = [spec.name, f"{spec.name} invoke permissions", *(s.name for s in spec.schedules)]
        parts += [f"{t} -> {spec.name}" for t in spec.topics]
        drift = [d for r in resources if r.name in parts and r.steps for d in r.drift]
        triggers = [
            f"schedule {s.name} ({s.expression}{'' if s.enabled else ', disabled'})" for s in spec.schedules
        ]
        triggers += [f"sns {t}" for t in spec.topics]
        triggers += [f"s3 {t.bucket}/{t.prefix}*" for t in spec.s3]
        config = state.configuration
        rows.append(
            {
                "function": spec.name,
                "folder": spec.folder.name,
                "state": function.state if function else "missing",
                "version": config.get("Version", ""),
                "last_modified": config.get("LastModified", ""),
                "code_sha256": config.get("CodeSha256", ""),
                "triggers": triggers,
                "drift": list(dict.fromkeys(drift)),
            }
        )
    return rows


STATUS_HELP = {"json": "print JSON instead of the table"}
NAME_HELP = {"name": "one function: its folder (health, utils, s3image, process-upload-sxd) or its name"}
INVOKE_HELP = {**NAME_HELP, "payload": "the event, as JSON (default: {})"}


@deploy_task(help=STATUS_HELP)
def status(c, stage=None, json=False):
    """Show each function's state, version, last change, code hash and triggers.
    Example: inv lambdas.status --json"""
    from deploy.stage import open_stage

    target = open_stage(stage, dry_run=True)
    rows = function_rows(target, plan(target))
    _print_rows(rows, as_json=json)


def _print_rows(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    import json as jsonlib
    import sys

    if as_json:
        sys.stdout.write(jsonlib.dumps(rows, indent=2) + "\n")
        return
    for row in rows:
        hash_shown = row["code_sha256"][:12] or "-"
        sys.stdout.write(
            f"{row['function']:<36} {row['state']:<8} v{row['version'] or '-':<8} "
            f"{row['last_modified'][:19] or '-':<20} {hash_shown}\n"
        )
        for trigger in row["triggers"]:
            sys.stdout.write(f"    {trigger}\n")
        for drift in row["drift"]:
            sys.stdout.write(f"    drift: {drift}\n")


@deploy_task(help=NAME_HELP)
def deploy(c, name=None, stage=None, dry_run=False, json=False):
    """Package and deploy the functions (or one), changing only what differs.
    Example: inv lambdas.deploy --name health --stage dev"""
    from deploy.execute import run_converge

    def planner(target: Stage) -> list[Resource]:
        return plan_functions(target, name)

    run_converge(stage, [{AREA: planner}], dry_run=dry_run, as_json=json, title=name or "functions")


def invoke_function(stage: Stage, name: str, payload: str) -> dict[str, Any]:
    """Invoke the function and return its result, error and the decoded log tail."""
    import base64

    key = function_key(stage, name)
    function = getattr(stage.config.lambdas.functions, key)
    answer = stage.client("lambda").invoke(
        FunctionName=function,
        InvocationType="RequestResponse",
        LogType="Tail",
        Payload=payload.encode("utf-8"),
    )
    body = answer["Payload"].read().decode("utf-8")
    try:
        result: Any = json.loads(body) if body else None
    except ValueError:
        result = body
    log = base64.b64decode(answer.get("LogResult", "") or b"").decode("utf-8", "replace")
    return {
        "function": function,
        "status": answer["StatusCode"],
        "error": answer.get("FunctionError"),
        "result": result,
        "log": log,
    }


@deploy_task(help=INVOKE_HELP)
def invoke(c, name, payload="{}", stage=None, json=False):
    """Run a function once and print its result and log tail.
    Example: inv lambdas.invoke health --payload '{"action": "worker_healthcheck"}'"""
    import json as jsonlib
    import sys

    from deploy.errors import ArgumentError, DeployError
    from deploy.stage import open_stage

    try:
        jsonlib.loads(payload)
    except ValueError as exc:
        raise ArgumentError("--payload", f"not JSON: {exc}") from None
    target = open_stage(stage)
    function_key(target, name)
    outcome = invoke_function(target, name, payload)
    if json:
        sys.stdout.write(jsonlib.dumps(outcome, indent=2) + "\n")
    else:
        if outcome["log"]:
            sys.stderr.write(outcome["log"].rstrip("\n") + "\n")
        sys.stdout.write(jsonlib.dumps(outcome["result"], indent=2) + "\n")
    if outcome["error"]:
        raise DeployError(
            f"{outcome['function']} failed ({outcome['error']}): see its log above; fix and rerun"
        )


create, _ = area_tasks(AREA, "the four functions and their triggers", plan)
collection = Collection(AREA, create, status, deploy, invoke)
