"""SNS: the notification topics, encrypted with KMS, and the StaffNotifications subscriptions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.cli import area_tasks
from deploy.parallel import call_concurrently, map_concurrently
from deploy.plan import Call, Resource, converge, tag_drift

if TYPE_CHECKING:
    from deploy.stage import Stage

AREA = "sns"
# What other areas may call here (the tests hold them to it).
LOOKUPS = ("topic_arn", "topic_subscriptions")
# Needs first: the notifications key.
AFTER: tuple[str, ...] = ("kms",)


# Topics AWS services cannot publish to when encrypted: ElastiCache's events.
PLAIN_TOPICS = ("cache_events",)
ACCOUNT_ONLY_ACTIONS = (
    "SNS:GetTopicAttributes",
    "SNS:ListSubscriptionsByTopic",
    "SNS:Publish",
    "SNS:Subscribe",
)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    kms_key: str | None  # None: not encrypted, and open to this account only by its policy
    tags: dict[str, str]
    subscriptions: frozenset[tuple[str, str]] = frozenset()
    policy: dict[str, Any] | None = None


@dataclass(frozen=True)
class TopicState:
    exists: bool
    attributes: dict[str, str]
    tags: dict[str, str]
    subscriptions: frozenset[tuple[str, str]]


def topic_specs(stage: Stage) -> list[TopicSpec]:
    sns = stage.config.sns
    staff = frozenset((s.protocol, s.endpoint) for s in sns.staff_subscriptions)
    return [
        TopicSpec(
            name=name,
            kms_key=None if key in PLAIN_TOPICS else sns.kms_key,
            tags=stage.tags(name),
            subscriptions=staff if key == "staff_notifications" else frozenset(),
            policy=account_only_policy(stage, name) if key in PLAIN_TOPICS else None,
        )
        for key, name in sns.topics
    ]


def account_only_policy(stage: Stage, name: str) -> dict[str, Any]:
    """An unencrypted topic's policy: only this account's principals and services (ElastiCache
    publishes as the account that owns the cluster) may publish or subscribe."""
    return {
        "Version": "2012-10-17",
        "Id": "iotile-deploy",
        "Statement": [
            {
                "Sid": "ThisAccountOnly",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": list(ACCOUNT_ONLY_ACTIONS),
                "Resource": topic_arn(stage, name),
                "Condition": {"StringEquals": {"AWS:SourceOwner": stage.account_id}},
            }
        ],
    }


def topic_arn(stage: Stage, name: str) -> str:
    return stage.arn("sns", name)


def read_topic(stage: Stage, name: str) -> TopicState:
    from botocore.exceptions import ClientError

    sns = stage.client("sns")
    arn = topic_arn(stage, name)
    try:
        attributes = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NotFound", "NotFoundException"):
            return TopicState(False, {}, {}, frozenset())
        raise
    # A topic that exists: its tags and subscriptions, side by side.
    tags, listed = call_concurrently(
        lambda: sns.list_tags_for_resource(ResourceArn=arn).get("Tags", []),
        partial(topic_subscriptions, stage, arn),
    )
    subscriptions = [(sub["Protocol"], sub["Endpoint"]) for sub in listed]
    return TopicState(True, attributes, {t["Key"]: t["Value"] for t in tags}, frozenset(subscriptions))


def topic_subscriptions(stage: Stage, arn: str) -> list[dict[str, Any]]:
    """The topic's subscriptions, listed once a run (the functions' subscriptions read them too)."""
    pages = stage.client("sns").get_paginator("list_subscriptions_by_topic").paginate(TopicArn=arn)
    return stage.remember(
        ("sns", "subscriptions", arn), lambda: [s for p in pages for s in p.get("Subscriptions", [])]
    )


def plan_topic(stage: Stage, spec: TopicSpec, state: TopicState) -> Resource:
    arn = topic_arn(stage, spec.name)
    steps: list[Call] = []
    if not state.exists:
        attributes = {"KmsMasterKeyId": spec.kms_key} if spec.kms_key else {}
        if spec.policy is not None:
            attributes["Policy"] = json.dumps(spec.policy)
        steps.append(
            Call(
                "sns",
                "CreateTopic",
                {"Name": spec.name, "Attributes": attributes, "Tags": stage.tag_list(spec.tags)},
                spec.name,
                "topic does not exist",
            )
        )
    else:
        if (state.attributes.get("KmsMasterKeyId") or None) != spec.kms_key:
            reason = (
                "not encrypted with the configured key"
                if spec.kms_key
                else "encrypted: its publisher cannot use that"
            )
            params = {
                "TopicArn": arn,
                "AttributeName": "KmsMasterKeyId",
                "AttributeValue": spec.kms_key or "",
            }
            steps.append(Call("sns", "SetTopicAttributes", params, spec.name, reason))
        if spec.policy is not None and not _same_policy(state.attributes.get("Policy"), spec.policy):
            params = {"TopicArn": arn, "AttributeName": "Policy", "AttributeValue": json.dumps(spec.policy)}
            steps.append(
                Call("sns", "SetTopicAttributes", params, spec.name, "policy admits others than this account")
            )
        if any(state.tags.get(k) != v for k, v in spec.tags.items()):
            params = {"ResourceArn": arn, "Tags": stage.tag_list(spec.tags)}
            steps.append(Call("sns", "TagResource", params, spec.name, tag_drift(state.tags, spec.tags)))
    for protocol, endpoint in sorted(spec.subscriptions - state.subscriptions):
        params: dict[str, Any] = {"TopicArn": arn, "Protocol": protocol, "Endpoint": endpoint}
        steps.append(Call("sns", "Subscribe", params, spec.name, f"{protocol} subscription missing"))
    return converge(AREA, "topic", spec.name, steps, exists=state.exists, detail=arn)


def _same_policy(text: str | None, wanted: dict[str, Any]) -> bool:
    from deploy.policies import normalised

    try:
        return normalised(json.loads(text or "{}")) == normalised(wanted)
    except ValueError:
        return False


def plan(stage: Stage) -> list[Resource]:
    specs = topic_specs(stage)
    states = map_concurrently(lambda spec: read_topic(stage, spec.name), specs)
    return [plan_topic(stage, spec, state) for spec, state in zip(specs, states, strict=True)]


create, status = area_tasks(AREA, "the topics and their subscriptions", plan)
collection = Collection(AREA, create, status)
