"""ECR: the worker image repository (scan on push, immutable tags, the newest images kept)."""

from __future__ import annotations

import json as jsonlib
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.cli import area_tasks
from deploy.parallel import call_concurrently
from deploy.plan import Call, Resource, converge

if TYPE_CHECKING:
    from deploy.stage import Stage

AREA = "ecr"
AFTER: tuple[str, ...] = ()
LOOKUPS = ("repository_uri",)


@dataclass(frozen=True)
class RepositoryState:
    exists: bool
    uri: str = ""
    arn: str = ""
    scan_on_push: bool = False
    mutability: str = ""
    lifecycle: dict[str, Any] | None = None
    tags: dict[str, str] = field(default_factory=dict)


def lifecycle_policy(keep: int) -> dict[str, Any]:
    """Expire every image but the newest `keep` (tagged or not: tags are commits, never reused)."""
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"keep the newest {keep} images",
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep},
                "action": {"type": "expire"},
            }
        ]
    }


def repository_uri(stage: Stage) -> str:
    """`<account>.dkr.ecr.<region>.amazonaws.com/<repository>` (a lookup: nothing is read)."""
    from deploy.aws import dns_suffix

    return (
        f"{stage.account_id}.dkr.ecr.{stage.region}.{dns_suffix(stage.region)}/{stage.config.ecs.repository}"
    )


def read_repository(stage: Stage) -> RepositoryState:
    from botocore.exceptions import ClientError

    from deploy.errors import error_code

    ecr, name = stage.client("ecr"), stage.config.ecs.repository
    try:
        found = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except ClientError as exc:
        if error_code(exc) == "RepositoryNotFoundException":
            return RepositoryState(False)
        raise
    # The repository's lifecycle policy and tags, side by side.
    lifecycle, tags = call_concurrently(
        partial(read_lifecycle, stage, name),
        lambda: ecr.list_tags_for_resource(resourceArn=found["repositoryArn"]).get("tags", []),
    )
    return RepositoryState(
        True,
        found["repositoryUri"],
        found["repositoryArn"],
        bool(found.get("imageScanningConfiguration", {}).get("scanOnPush")),
        found.get("imageTagMutability", ""),
        lifecycle,
        {tag["Key"]: tag["Value"] for tag in tags},
    )


def read_lifecycle(stage: Stage, name: str) -> dict[str, Any] | None:
    """The repository's lifecycle policy, None when it has none."""
    from botocore.exceptions import ClientError

    from deploy.errors import error_code

    try:
        text = stage.client("ecr").get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"]
    except ClientError as exc:
        if error_code(exc) != "LifecyclePolicyNotFoundException":
            raise
        return None
    return jsonlib.loads(text)


def plan_repository(stage: Stage, state: RepositoryState) -> Resource:
    name = stage.config.ecs.repository
    tags = stage.tags(name)
    policy = lifecycle_policy(stage.config.ecs.keep_images)
    lifecycle = Call(
        "ecr",
        "PutLifecyclePolicy",
        {"repositoryName": name, "lifecyclePolicyText": jsonlib.dumps(policy)},
        name,
        f"keep the newest {stage.config.ecs.keep_images} images",
    )
    if not state.exists:
        params = {
            "repositoryName": name,
            "imageTagMutability": "IMMUTABLE",
            "imageScanningConfiguration": {"scanOnPush": True},
            "encryptionConfiguration": {"encryptionType": "AES256"},
            "tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())],
        }
        create = Call("ecr", "CreateRepository", params, name, "repository does not exist")
        return converge(AREA, "ECR repository", name, [create, lifecycle], exists=False)
    steps: list[Call] = []
    if not state.scan_on_push:
        params = {"repositoryName": name, "imageScanningConfiguration": {"scanOnPush": True}}
        steps.append(Call("ecr", "PutImageScanningConfiguration", params, name, "scan on push is off"))
    if state.mutability != "IMMUTABLE":
        params = {"repositoryName": name, "imageTagMutability": "IMMUTABLE"}
        steps.append(Call("ecr", "PutImageTagMutability", params, name, f"tags are {state.mutability}"))
    if state.lifecycle != policy:
        steps.append(lifecycle)
    if any(state.tags.get(k) != v for k, v in tags.items()):
        params = {"resourceArn": state.arn, "tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]}
        steps.append(Call("ecr", "TagResource", params, name, "tags differ from config"))
    return converge(AREA, "ECR repository", name, steps, exists=True, detail=state.uri)


def plan(stage: Stage) -> list[Resource]:
    return [plan_repository(stage, read_repository(stage))]


create, status = area_tasks(AREA, "the worker image repository", plan)
collection = Collection(AREA, create, status)
