"""SQS: the worker and report queues, each with a dead-letter queue, encrypted at rest."""

from __future__ import annotations

import json as jsonlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from invoke import Collection

from deploy.cli import area_tasks
from deploy.parallel import call_concurrently, map_concurrently
from deploy.plan import Call, Resource, converge, differences, tag_drift

if TYPE_CHECKING:
    from deploy.stage import Stage

AREA = "sqs"
# Needs first: the queues' SSE-KMS key.
AFTER: tuple[str, ...] = ("kms",)
LOOKUPS = ("queue_url",)
# Attributes whose value is a JSON document: compared parsed, so key order does not count as drift.
JSON_ATTRIBUTES = ("RedrivePolicy", "RedriveAllowPolicy")


@dataclass(frozen=True)
class QueueSpec:
    name: str
    attributes: dict[str, str]
    tags: dict[str, str]
    kind: str  # "queue" or "dead-letter queue"
    dead_letter: str | None = None


@dataclass(frozen=True)
class QueueState:
    url: str | None
    attributes: dict[str, str]
    tags: dict[str, str]


def encryption_attributes(kms_key: str | None) -> dict[str, str]:
    if kms_key:
        return {"KmsMasterKeyId": kms_key, "KmsDataKeyReusePeriodSeconds": "300"}
    return {"SqsManagedSseEnabled": "true"}


def queue_specs(stage: Stage) -> list[QueueSpec]:
    """Each dead-letter queue comes right before its queue, so it exists when the redrive names it."""
    sqs = stage.config.sqs
    encryption = encryption_attributes(sqs.kms_key)
    specs: list[QueueSpec] = []
    for _, name in sqs.queues:
        dead_letter = f"{name}{sqs.dead_letter_suffix}"
        # Only its own queue may send failed messages here (least privilege for redrive).
        allow = {"redrivePermission": "byQueue", "sourceQueueArns": [stage.arn("sqs", name)]}
        specs.append(
            QueueSpec(
                dead_letter,
                {
                    **encryption,
                    "MessageRetentionPeriod": str(sqs.dead_letter_retention_seconds),
                    "RedriveAllowPolicy": jsonlib.dumps(allow),
                },
                stage.tags(dead_letter),
                "dead-letter queue",
            )
        )
        redrive = {
            "deadLetterTargetArn": stage.arn("sqs", dead_letter),
            "maxReceiveCount": sqs.max_receive_count,
        }
        specs.append(
            QueueSpec(
                name,
                {
                    **encryption,
                    "VisibilityTimeout": str(sqs.visibility_timeout),
                    "MessageRetentionPeriod": str(sqs.retention_seconds),
                    "RedrivePolicy": jsonlib.dumps(redrive),
                },
                stage.tags(name),
                "queue",
                dead_letter,
            )
        )
    return specs


def _url(stage: Stage, name: str) -> str | None:
    """The queue's URL, None when there is none; read once a run (the workers and the functions
    look their queues up too)."""
    from botocore.exceptions import ClientError

    def read() -> str | None:
        try:
            return stage.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                return None
            raise

    return stage.remember(("sqs", "url", name), read)


def read_queue(stage: Stage, name: str) -> QueueState:
    sqs, url = stage.client("sqs"), _url(stage, name)
    if url is None:
        return QueueState(None, {}, {})
    # A queue that exists: its attributes and tags, side by side.
    attributes, tags = call_concurrently(
        lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"],
        lambda: sqs.list_queue_tags(QueueUrl=url).get("Tags", {}),
    )
    return QueueState(url, attributes, tags)


def queue_url(stage: Stage, name: str) -> str | None:
    """The URL of the queue called `name`, None when there is none."""
    return _url(stage, name) if name else None


def _same(key: str, want: str, have: str | None) -> bool:
    if key in JSON_ATTRIBUTES and have:
        return jsonlib.loads(want) == jsonlib.loads(have)
    return want == have


def plan_queue(stage: Stage, spec: QueueSpec, state: QueueState) -> Resource:
    steps: list[Call] = []
    if state.url is None:
        params = {"QueueName": spec.name, "Attributes": spec.attributes, "tags": spec.tags}
        steps.append(Call("sqs", "CreateQueue", params, spec.name, f"{spec.kind} does not exist"))
    else:
        drifted = {
            key: value
            for key, value in spec.attributes.items()
            if not _same(key, value, state.attributes.get(key))
        }
        if drifted:
            reason = differences({k: (state.attributes.get(k), drifted[k]) for k in sorted(drifted)})
            params = {"QueueUrl": state.url, "Attributes": drifted}
            steps.append(Call("sqs", "SetQueueAttributes", params, spec.name, reason))
        if any(state.tags.get(k) != v for k, v in spec.tags.items()):
            params = {"QueueUrl": state.url, "Tags": spec.tags}
            steps.append(Call("sqs", "TagQueue", params, spec.name, tag_drift(state.tags, spec.tags)))
    return converge(
        AREA,
        spec.kind,
        spec.name,
        steps,
        exists=state.url is not None,
        detail=state.url or "",
        depends_on=[spec.dead_letter] if spec.dead_letter else [],
    )


def plan(stage: Stage) -> list[Resource]:
    specs = queue_specs(stage)
    states = map_concurrently(lambda spec: read_queue(stage, spec.name), specs)
    return [plan_queue(stage, spec, state) for spec, state in zip(specs, states, strict=True)]


create, status = area_tasks(AREA, "the queues and their dead-letter queues", plan)
collection = Collection(AREA, create, status)
