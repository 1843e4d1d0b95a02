"""KMS: the customer managed keys other areas encrypt with (today the notifications key of the SNS topics)."""

from __future__ import annotations

import json as jsonlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.cli import area_tasks
from deploy.errors import AwsError
from deploy.parallel import call_concurrently, map_concurrently
from deploy.plan import Call, Deferred, Resource, converge, tag_drift
from deploy.policies import normalised, partition

if TYPE_CHECKING:
    from deploy.stage import Stage

AREA = "kms"
# What other areas may call here (the tests hold them to it).
LOOKUPS = ("key_arn",)
AFTER: tuple[str, ...] = ()
# Names the config entry a key was made for, so a run that died between CreateKey and CreateAlias
# finds its key again instead of making a second one.
KEY_TAG = "iotile-deploy:key"
ROOT_SID = "Enable IAM User Permissions"
SERVICES_SID = "Allow AWS services of this account to publish encrypted"
SERVICE_ACTIONS = ("kms:GenerateDataKey*", "kms:Decrypt")
# What SNS passes with every call it makes for an encrypted topic: the topic's ARN.
SNS_CONTEXT = "kms:EncryptionContext:aws:sns:topicArn"
# Policy fields AWS accepts as a string or a list: compared as sorted lists.


@dataclass(frozen=True)
class KeySpec:
    entry: str  # the field of config.kms: "notifications"
    alias: str
    description: str
    policy: dict[str, Any]
    tags: dict[str, str]


@dataclass(frozen=True)
class KeyState:
    key_id: str | None  # None: no key, neither behind the alias nor left tagged by an earlier run
    aliased: bool = False
    arn: str = ""
    key_state: str = ""  # Enabled, Disabled, PendingDeletion, ...
    policy: dict[str, Any] | None = None
    rotation: bool | None = None  # None: not readable in the key's current state
    tags: dict[str, str] = field(default_factory=dict)


def key_arn(stage: Stage, key: str) -> str | None:
    """The ARN behind a key id, alias or ARN (services report keys by ARN), None if there is none."""
    from botocore.exceptions import ClientError

    from deploy.errors import error_code

    def read() -> str | None:
        try:
            return stage.client("kms").describe_key(KeyId=key)["KeyMetadata"]["Arn"]
        except ClientError as exc:
            if error_code(exc) == "NotFoundException":
                return None
            raise

    # The tables, the cache and the domain look up the same key: one read a run.
    return stage.remember(("kms", "key_arn", key), read)


def key_alias(stage: Stage, entry: str = "notifications") -> str:
    """The alias other areas name the key by (e.g. SNS topics' KmsMasterKeyId)."""
    return getattr(stage.config.kms, entry).alias


def key_policy(stage: Stage, service_principals: list[str]) -> dict[str, Any]:
    """The account root keeps full control (without it nobody could manage the key again), which
    also lets this account's IAM policies grant the key's use: the roles that publish to the topics
    get it in their own policies (kms:ViaService SNS), as a key policy naming them would fail
    while they do not exist yet. The listed AWS services may encrypt and decrypt with it, on
    behalf of this account and only for its SNS topics."""
    account, region, part = stage.account_id, stage.region, partition(stage.region)
    statements: list[dict[str, Any]] = [
        {
            "Sid": ROOT_SID,
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:{part}:iam::{account}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }
    ]
    if service_principals:
        statements.append(
            {
                "Sid": SERVICES_SID,
                "Effect": "Allow",
                "Principal": {"Service": sorted(service_principals)},
                "Action": list(SERVICE_ACTIONS),
                "Resource": "*",
                # Any topic of this account and region: the key is shared by every stage, and a
                # list of one stage's topics would have each stage's run undo the other's.
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": account},
                    "StringLike": {SNS_CONTEXT: f"arn:{part}:sns:{region}:{account}:*"},
                },
            }
        )
    return {"Version": "2012-10-17", "Id": "iotile-deploy", "Statement": statements}


def key_specs(stage: Stage) -> list[KeySpec]:
    specs = []
    for entry, key in stage.config.kms:
        specs.append(
            KeySpec(
                entry=entry,
                alias=key.alias,
                description=f"iotile-deploy {entry} key ({key.alias})",
                policy=key_policy(stage, list(key.service_principals)),
                tags={**stage.tags(key.alias), KEY_TAG: entry},
            )
        )
    return specs


def read_aliases(stage: Stage) -> dict[str, str]:
    """Alias name -> the key id it points to."""
    pages = stage.client("kms").get_paginator("list_aliases").paginate()
    return {
        alias["AliasName"]: alias["TargetKeyId"]
        for page in pages
        for alias in page.get("Aliases", [])
        if alias.get("TargetKeyId")
    }


def read_tags(stage: Stage, key_id: str) -> dict[str, str]:
    pages = stage.client("kms").get_paginator("list_resource_tags").paginate(KeyId=key_id)
    return {tag["TagKey"]: tag["TagValue"] for page in pages for tag in page.get("Tags", [])}


def find_tagged_key(stage: Stage, spec: KeySpec, aliases: dict[str, str] | None = None) -> str | None:
    """The key an earlier run made for this entry but never aliased. Keys that carry an alias are
    not candidates (ours has none yet), which also keeps AWS managed keys out of the search."""
    from botocore.exceptions import ClientError

    aliased = set((aliases if aliases is not None else read_aliases(stage)).values())
    wanted = {k: v for k, v in spec.tags.items() if k in (KEY_TAG, "Project", "Stage")}
    pages = stage.client("kms").get_paginator("list_keys").paginate()
    for key_id in (key["KeyId"] for page in pages for key in page.get("Keys", [])):
        if key_id in aliased:
            continue
        try:
            tags = read_tags(stage, key_id)
        except ClientError as exc:
            # A key whose policy does not even let us read its tags is not one we made.
            if exc.response.get("Error", {}).get("Code") in ("AccessDeniedException", "NotFoundException"):
                continue
            raise
        if all(tags.get(k) == v for k, v in wanted.items()):
            return key_id
    return None


def read_rotation(stage: Stage, key_id: str) -> bool | None:
    """Whether the key rotates; None when its state does not tell (e.g. pending deletion: rotation
    is planned on after the key is enabled again)."""
    from botocore.exceptions import ClientError

    try:
        return stage.client("kms").get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "KMSInvalidStateException":
            raise
        return None


def read_key(stage: Stage, spec: KeySpec, aliases: dict[str, str]) -> KeyState:
    key_id = aliases.get(spec.alias)
    aliased = key_id is not None
    if key_id is None:
        key_id = find_tagged_key(stage, spec, aliases)
        if key_id is None:
            return KeyState(None)
    kms = stage.client("kms")
    # Each needs only the key's id: side by side.
    metadata, policy, rotation, tags = call_concurrently(
        lambda: kms.describe_key(KeyId=key_id)["KeyMetadata"],
        lambda: jsonlib.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]),
        lambda: read_rotation(stage, key_id),
        lambda: read_tags(stage, key_id),
    )
    return KeyState(
        key_id=metadata["KeyId"],
        aliased=aliased,
        arn=metadata["Arn"],
        key_state=metadata.get("KeyState", ""),
        policy=policy,
        rotation=rotation,
        tags=tags,
    )


def find_key(stage: Stage, spec: KeySpec) -> str | None:
    """The key behind the alias, else the one an interrupted run left tagged."""
    aliases = read_aliases(stage)
    return aliases.get(spec.alias) or find_tagged_key(stage, spec, aliases)


def _created_key(spec: KeySpec) -> Deferred:
    return Deferred(
        f"id of the key tagged {KEY_TAG}={spec.entry}",
        lambda stage: _require(find_key(stage, spec), spec),
    )


def _require(key_id: str | None, spec: KeySpec) -> str:
    if key_id is None:
        raise AwsError(
            "KeyNotFound",
            f"the key just created for {spec.alias} is not listed yet",
            "KMS can take a moment to list a new key: rerun; the run resumes and aliases it.",
        )
    return key_id


def plan_key(stage: Stage, spec: KeySpec, state: KeyState) -> Resource:
    steps: list[Call] = []
    policy_text = jsonlib.dumps(spec.policy, sort_keys=True)
    if state.key_id is None:
        params = {
            "Description": spec.description,
            "KeyUsage": "ENCRYPT_DECRYPT",
            "KeySpec": "SYMMETRIC_DEFAULT",
            "Policy": policy_text,
            "Tags": [{"TagKey": k, "TagValue": v} for k, v in sorted(spec.tags.items())],
        }
        steps.append(Call("kms", "CreateKey", params, spec.alias, "key does not exist"))
        key_id: str | Deferred = _created_key(spec)
        steps.append(
            Call(
                "kms",
                "CreateAlias",
                {"AliasName": spec.alias, "TargetKeyId": key_id},
                spec.alias,
                "alias missing",
            )
        )
        steps.append(Call("kms", "EnableKeyRotation", {"KeyId": key_id}, spec.alias, "rotation is off"))
        return converge(AREA, "key", spec.alias, steps, exists=False)

    key_id = state.key_id
    if not state.aliased:
        params = {"AliasName": spec.alias, "TargetKeyId": key_id}
        reason = "alias missing: the key of an interrupted run gets it"
        steps.append(Call("kms", "CreateAlias", params, spec.alias, reason))
    if state.key_state == "PendingDeletion":
        reason = "key is scheduled for deletion"
        steps.append(Call("kms", "CancelKeyDeletion", {"KeyId": key_id}, spec.alias, reason))
        steps.append(Call("kms", "EnableKey", {"KeyId": key_id}, spec.alias, reason))
    elif state.key_state == "Disabled":
        steps.append(Call("kms", "EnableKey", {"KeyId": key_id}, spec.alias, "key is disabled"))
    if normalised(state.policy) != normalised(spec.policy):
        params = {"KeyId": key_id, "PolicyName": "default", "Policy": policy_text}
        steps.append(Call("kms", "PutKeyPolicy", params, spec.alias, "key policy differs from config"))
    if state.rotation is not True:
        steps.append(Call("kms", "EnableKeyRotation", {"KeyId": key_id}, spec.alias, "rotation is off"))
    if any(state.tags.get(k) != v for k, v in spec.tags.items()):
        params = {
            "KeyId": key_id,
            "Tags": [{"TagKey": k, "TagValue": v} for k, v in sorted(spec.tags.items())],
        }
        steps.append(Call("kms", "TagResource", params, spec.alias, tag_drift(state.tags, spec.tags)))
    return converge(AREA, "key", spec.alias, steps, exists=True, detail=state.arn)


def plan(stage: Stage) -> list[Resource]:
    specs = key_specs(stage)
    aliases = read_aliases(stage)
    states = map_concurrently(lambda spec: read_key(stage, spec, aliases), specs)
    return [plan_key(stage, spec, state) for spec, state in zip(specs, states, strict=True)]


create, status = area_tasks(AREA, "the customer managed keys", plan)
collection = Collection(AREA, create, status)
