"""IAM: the group, roles, instance profiles and customer managed policies of a stage, least privilege.

Policy documents are templates (deploy/templates/iam) rendered for the stage's own resources. A
changed document becomes a new default policy version; a policy or inline policy attached by hand
to a role this tool owns is drift and is removed. No role holds an AWS managed policy but the
Beanstalk service role: those grant on every stage's resources at once."""

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

AREA = "iam"
# What other areas may call here (the tests hold them to it).
LOOKUPS = ("role_arn", "role_arns_holding")
AFTER: tuple[str, ...] = ()
# The only AWS managed policies any role holds: the Beanstalk service role's (see role_specs).
EB_SERVICE_MANAGED = (
    "service-role/AWSElasticBeanstalkEnhancedHealth",
    "AWSElasticBeanstalkManagedUpdatesCustomerRolePolicy",
)
MAX_POLICY_VERSIONS = 5
# The service-linked roles the stack relies on. AWS makes some on first use from the console, not
# from the API: on a fresh account CreateDomain in a VPC fails until OpenSearch's exists.
SERVICE_LINKED_ROLES = (
    "opensearchservice.amazonaws.com",  # the search domain in the VPC
    "elasticache.amazonaws.com",  # the Redis replication group
    "ecs.amazonaws.com",  # the worker cluster and service
    "autoscaling.amazonaws.com",  # the ECS and Beanstalk Auto Scaling groups
    "dynamodb.application-autoscaling.amazonaws.com",  # the tables' target tracking
)
SERVICE_ROLE_PATH = "/aws-service-role/"
EC2, ECS_TASKS, LAMBDA = "ec2.amazonaws.com", "ecs-tasks.amazonaws.com", "lambda.amazonaws.com"


@dataclass(frozen=True)
class PolicySpec:
    name: str
    document: dict[str, Any]
    description: str
    tags: dict[str, str]


@dataclass(frozen=True)
class RoleSpec:
    name: str
    trust: dict[str, Any]
    customer_policies: tuple[str, ...]
    managed_policies: tuple[str, ...]
    description: str
    tags: dict[str, str]
    instance_profile: bool = False


@dataclass(frozen=True)
class GroupSpec:
    name: str
    customer_policies: tuple[str, ...]


def policy_arn(stage: Stage, name: str) -> str:
    from deploy.policies import partition

    return f"arn:{partition(stage.region)}:iam::{stage.account_id}:policy/{name}"


def aws_managed_policy_arn(stage: Stage, path: str) -> str:
    from deploy.policies import partition

    return f"arn:{partition(stage.region)}:iam::aws:policy/{path}"


def role_arn(stage: Stage, name: str) -> str:
    """The ARN of the role `name` (a lookup for other areas: nothing is read)."""
    from deploy.policies import partition

    return f"arn:{partition(stage.region)}:iam::{stage.account_id}:role/{name}"


def role_arns_holding(stage: Stage, policy: str) -> tuple[str, ...]:
    """The ARNs of the roles config gives the customer policy `policy` (a lookup for other areas)."""
    holders = sorted({spec.name for spec in role_specs(stage) if policy in spec.customer_policies})
    return tuple(role_arn(stage, name) for name in holders)


# -- what config wants -------------------------------------------------------------------------


def credentials_policies(stage: Stage) -> dict[str, str]:
    """Secret reader (a key of secrets.readers) -> the policy that grants its secrets, for the
    readers that read any: a role whose list is empty holds no such policy."""
    iam = stage.config.iam
    readers: dict[str, list[str]] = dict(stage.config.secrets.readers)
    wanted = {"app": iam.credentials_policy, "workers": iam.worker_credentials_policy}
    return {reader: policy for reader, policy in wanted.items() if readers.get(reader)}


def policy_specs(stage: Stage) -> list[PolicySpec]:
    from deploy.policies import render, secret_arns

    iam, functions = stage.config.iam, stage.config.lambdas.functions
    s = stage.name
    mfa = {"require_mfa": iam.dev_requires_mfa}
    injected = {"secret_arns": secret_arns(stage, "worker_task_definition")}
    documents = [
        (iam.dev_policy, "dev.json.j2", f"Read access to the {s} stage's data for developers", mfa),
        (iam.production_policy, "production.json.j2", f"What the {s} app and workers use", {}),
        (iam.streamer_upload_policy, "streamer-upload.json.j2", f"Upload {s} streamer reports", {}),
        (iam.search_policy, "search.json.j2", f"Use the {s} search domain", {}),
        (iam.beanstalk_instance_policy, "beanstalk-instance.json.j2", f"Run the {s} Beanstalk app", {}),
        (iam.beanstalk_service_policy, "beanstalk-service.json.j2", "Beanstalk publishes encrypted", {}),
        (iam.ecs_instance_role, "ecs-instance.json.j2", f"Serve the {s} ECS cluster", {}),
        (iam.ecs_execution_role, "ecs-execution.json.j2", f"Start {s} worker tasks", injected),
        (iam.firehose_role, "firehose.json.j2", f"Deliver {s} streams", {}),
        (iam.redshift_role, "redshift-copy.json.j2", f"COPY {s} staged records into Redshift", {}),
    ]
    for reader, policy in credentials_policies(stage).items():
        arns = {"secret_arns": secret_arns(stage, reader)}
        documents.append((policy, "credentials.json.j2", f"Read the secrets of the {s} {reader}", arns))
    for key, role in iam.lambda_roles:
        template = f"lambda-{key.replace('_', '-')}.json.j2"
        function = getattr(functions, key)
        extra = {"function": function, "secret_arns": secret_arns(stage, key)}
        documents.append((role, template, f"Run the {function} function", extra))
    return [
        PolicySpec(name, render(stage, template, **extra), description, stage.tags(name))
        for name, template, description, extra in documents
    ]


def role_specs(stage: Stage) -> list[RoleSpec]:
    from deploy.policies import trust_policy

    iam = stage.config.iam
    secrets = {reader: (policy,) for reader, policy in credentials_policies(stage).items()}
    app = (iam.production_policy, iam.search_policy)
    instance = (iam.beanstalk_instance_policy,)

    def role(
        name: str,
        service: str,
        customer: tuple[str, ...],
        managed: tuple[str, ...],
        what: str,
        profile: bool = False,
    ) -> RoleSpec:
        return RoleSpec(
            name, trust_policy(stage, service), customer, managed, what, stage.tags(name), profile
        )

    app_role = (*app, *instance, *secrets.get("app", ()))
    worker_role = (*app, *secrets.get("workers", ()))
    roles = [
        role(iam.production_role, EC2, app_role, (), "Beanstalk instances of the app", True),
        role(iam.eb_ec2_role, EC2, instance, (), "Default Beanstalk instance role", True),
        role(iam.ecs_instance_role, EC2, (iam.ecs_instance_role,), (), "ECS container instances", True),
        role(iam.ecs_task_role, ECS_TASKS, worker_role, (), "SQS worker tasks"),
        role(iam.ecs_execution_role, ECS_TASKS, (iam.ecs_execution_role,), (), "ECS agent for worker tasks"),
        role(iam.firehose_role, "firehose.amazonaws.com", (iam.firehose_role,), (), "Firehose delivery"),
        role(iam.redshift_role, "redshift.amazonaws.com", (iam.redshift_role,), (), "Redshift COPY from S3"),
        # AWS managed on purpose: one role serves every stage's environments (Beanstalk acts
        # with it, no instance of ours holds it), AWS adds what new platform versions need to
        # these policies, and a copy of ours would fall behind and break managed updates.
        role(
            iam.eb_service_role,
            "elasticbeanstalk.amazonaws.com",
            (iam.beanstalk_service_policy,),
            tuple(aws_managed_policy_arn(stage, path) for path in EB_SERVICE_MANAGED),
            "Beanstalk service",
        ),
    ]
    for key, name in iam.lambda_roles:
        roles.append(role(name, LAMBDA, (name,), (), f"Lambda function {key}"))
    return roles


def group_specs(stage: Stage) -> list[GroupSpec]:
    return [GroupSpec(stage.config.iam.dev_group, (stage.config.iam.dev_policy,))]


# -- what IAM has ------------------------------------------------------------------------------


def _absent(call: Any) -> Any:
    from botocore.exceptions import ClientError

    try:
        return call()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchEntity":
            return None
        raise


def _document(value: Any) -> Any:
    if isinstance(value, str):
        from urllib.parse import unquote

        return json.loads(unquote(value))
    return value


def _paged(stage: Stage, operation: str, key: str, **params: Any) -> list[Any]:
    pages = stage.client("iam").get_paginator(operation).paginate(**params)
    return [item for page in pages for item in page.get(key, [])]


@dataclass(frozen=True)
class PolicyState:
    exists: bool
    document: Any = None
    versions: tuple[dict[str, Any], ...] = ()
    tags: dict[str, str] | None = None


def read_policy(stage: Stage, name: str) -> PolicyState:
    """The policy's versions and default document (from account_details()) and its tags (the
    one thing GetAccountAuthorizationDetails leaves out)."""
    arn = policy_arn(stage, name)
    found = account_details(stage)["policies"].get(arn)
    if found is None:
        return PolicyState(False)
    versions = tuple(found.get("PolicyVersionList", []))
    default = next(v for v in versions if v.get("IsDefaultVersion"))
    tags = _absent(lambda: stage.client("iam").list_policy_tags(PolicyArn=arn)) or {}
    return PolicyState(
        True, _document(default["Document"]), versions, {t["Key"]: t["Value"] for t in tags.get("Tags", [])}
    )


@dataclass(frozen=True)
class RoleState:
    exists: bool
    trust: Any = None
    attached: frozenset[str] = frozenset()
    inline: tuple[str, ...] = ()
    tags: dict[str, str] | None = None


def account_details(stage: Stage) -> dict[str, Any]:
    """Every role of the account with its trust, attached and inline policies, tags and instance
    profiles, and every customer managed policy with its versions' documents, by ARN: one paged
    GetAccountAuthorizationDetails a run instead of four reads a role and three a policy."""

    def read() -> dict[str, Any]:
        paginator = stage.client("iam").get_paginator("get_account_authorization_details")
        pages = list(paginator.paginate(Filter=["Role", "LocalManagedPolicy"]))
        return {
            "roles": [role for page in pages for role in page.get("RoleDetailList", [])],
            "policies": {p["Arn"]: p for page in pages for p in page.get("Policies", [])},
        }

    return stage.remember(("iam", "account details"), read)


def account_roles(stage: Stage) -> list[dict[str, Any]]:
    return account_details(stage)["roles"]


def role_state(detail: dict[str, Any] | None) -> RoleState:
    """A role as account_roles() has it, or absent."""
    if detail is None:
        return RoleState(False)
    return RoleState(
        True,
        _document(detail["AssumeRolePolicyDocument"]),
        frozenset(p["PolicyArn"] for p in detail.get("AttachedManagedPolicies", [])),
        tuple(p["PolicyName"] for p in detail.get("RolePolicyList", [])),
        {t["Key"]: t["Value"] for t in detail.get("Tags", [])},
    )


def profiles_in(roles: list[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Instance profile name -> the roles it holds, for every profile that holds a role."""
    return {
        profile["InstanceProfileName"]: tuple(r["RoleName"] for r in profile.get("Roles", []))
        for role in roles
        for profile in role.get("InstanceProfileList", [])
    }


def read_role(stage: Stage, name: str) -> RoleState:
    iam = stage.client("iam")
    found = _absent(lambda: iam.get_role(RoleName=name))
    if found is None:
        return RoleState(False)
    attached = _paged(stage, "list_attached_role_policies", "AttachedPolicies", RoleName=name)
    inline = _paged(stage, "list_role_policies", "PolicyNames", RoleName=name)
    tags = found["Role"].get("Tags", [])  # GetRole has them all (a role holds at most 50)
    return RoleState(
        True,
        _document(found["Role"]["AssumeRolePolicyDocument"]),
        frozenset(p["PolicyArn"] for p in attached),
        tuple(inline),
        {t["Key"]: t["Value"] for t in tags},
    )


def read_instance_profile(stage: Stage, name: str) -> tuple[str, ...] | None:
    found = _absent(lambda: stage.client("iam").get_instance_profile(InstanceProfileName=name))
    if found is None:
        return None
    return tuple(role["RoleName"] for role in found["InstanceProfile"]["Roles"])


def read_group(stage: Stage, name: str) -> frozenset[str] | None:
    if _absent(lambda: stage.client("iam").get_group(GroupName=name)) is None:
        return None
    attached = _paged(stage, "list_attached_group_policies", "AttachedPolicies", GroupName=name)
    return frozenset(p["PolicyArn"] for p in attached)


# -- planning ----------------------------------------------------------------------------------


def _tags_differ(want: dict[str, str], have: dict[str, str] | None) -> bool:
    return any((have or {}).get(key) != value for key, value in want.items())


def plan_policy(stage: Stage, spec: PolicySpec, state: PolicyState) -> Resource:
    from deploy.policies import canonical

    arn, steps = policy_arn(stage, spec.name), []
    document = json.dumps(spec.document)
    resource = f"policy/{spec.name}"
    if not state.exists:
        params = {
            "PolicyName": spec.name,
            "PolicyDocument": document,
            "Description": spec.description,
            "Tags": stage.tag_list(spec.tags),
        }
        steps.append(Call("iam", "CreatePolicy", params, resource, "policy does not exist"))
    else:
        if canonical(state.document) != canonical(spec.document):
            if len(state.versions) >= MAX_POLICY_VERSIONS:
                oldest = min(
                    (v for v in state.versions if not v.get("IsDefaultVersion")),
                    key=lambda v: str(v.get("CreateDate")),
                )
                params = {"PolicyArn": arn, "VersionId": oldest["VersionId"]}
                reason = f"make room: {MAX_POLICY_VERSIONS} versions is the limit"
                steps.append(Call("iam", "DeletePolicyVersion", params, resource, reason))
            params = {"PolicyArn": arn, "PolicyDocument": document, "SetAsDefault": True}
            steps.append(
                Call("iam", "CreatePolicyVersion", params, resource, "document differs from template")
            )
        if _tags_differ(spec.tags, state.tags):
            params = {"PolicyArn": arn, "Tags": stage.tag_list(spec.tags)}
            steps.append(Call("iam", "TagPolicy", params, resource, tag_drift(state.tags, spec.tags)))
    return converge(AREA, "policy", resource, steps, exists=state.exists, detail=arn)


def _wanted_arns(stage: Stage, customer: tuple[str, ...], managed: tuple[str, ...]) -> set[str]:
    return {policy_arn(stage, name) for name in customer} | set(managed)


def plan_role(stage: Stage, spec: RoleSpec, state: RoleState) -> Resource:
    from deploy.policies import canonical

    name, resource, steps = spec.name, f"role/{spec.name}", []
    wanted = _wanted_arns(stage, spec.customer_policies, spec.managed_policies)
    if not state.exists:
        params = {
            "RoleName": name,
            "AssumeRolePolicyDocument": json.dumps(spec.trust),
            "Description": spec.description,
            "MaxSessionDuration": 3600,
            "Tags": stage.tag_list(spec.tags),
        }
        steps.append(Call("iam", "CreateRole", params, resource, "role does not exist"))
    elif canonical(state.trust) != canonical(spec.trust):
        params = {"RoleName": name, "PolicyDocument": json.dumps(spec.trust)}
        steps.append(Call("iam", "UpdateAssumeRolePolicy", params, resource, "trust policy differs"))
    for arn in sorted(wanted - state.attached):
        params = {"RoleName": name, "PolicyArn": arn}
        steps.append(
            Call("iam", "AttachRolePolicy", params, resource, f"{arn.rsplit('/', 1)[1]} not attached")
        )
    for arn in sorted(state.attached - wanted):
        reason = f"{arn.rsplit('/', 1)[1]} attached outside config"
        steps.append(Call("iam", "DetachRolePolicy", {"RoleName": name, "PolicyArn": arn}, resource, reason))
    for inline in state.inline:
        params = {"RoleName": name, "PolicyName": inline}
        steps.append(
            Call("iam", "DeleteRolePolicy", params, resource, f"inline policy {inline} outside config")
        )
    if state.exists and _tags_differ(spec.tags, state.tags):
        params = {"RoleName": name, "Tags": stage.tag_list(spec.tags)}
        steps.append(Call("iam", "TagRole", params, resource, tag_drift(state.tags, spec.tags)))
    depends = [f"policy/{policy}" for policy in spec.customer_policies]
    return converge(
        AREA, "role", resource, steps, exists=state.exists, detail=role_arn(stage, name), depends_on=depends
    )


def plan_instance_profile(stage: Stage, spec: RoleSpec, roles: tuple[str, ...] | None) -> Resource:
    name, resource, steps = spec.name, f"instance-profile/{spec.name}", []
    exists = roles is not None
    if roles is None:
        params = {"InstanceProfileName": name, "Tags": stage.tag_list(spec.tags)}
        steps.append(
            Call("iam", "CreateInstanceProfile", params, resource, "instance profile does not exist")
        )
        roles = ()
    for other in roles:
        if other != name:
            params = {"InstanceProfileName": name, "RoleName": other}
            steps.append(
                Call("iam", "RemoveRoleFromInstanceProfile", params, resource, f"holds role {other}")
            )
    if name not in roles:
        params = {"InstanceProfileName": name, "RoleName": name}
        steps.append(Call("iam", "AddRoleToInstanceProfile", params, resource, f"role {name} not in it"))
    return converge(AREA, "instance profile", resource, steps, exists=exists, depends_on=[f"role/{name}"])


def plan_group(stage: Stage, spec: GroupSpec, attached: frozenset[str] | None) -> Resource:
    name, resource, steps = spec.name, f"group/{spec.name}", []
    wanted = _wanted_arns(stage, spec.customer_policies, ())
    if attached is None:
        steps.append(Call("iam", "CreateGroup", {"GroupName": name}, resource, "group does not exist"))
    have = attached or frozenset()
    for arn in sorted(wanted - have):
        params = {"GroupName": name, "PolicyArn": arn}
        steps.append(
            Call("iam", "AttachGroupPolicy", params, resource, f"{arn.rsplit('/', 1)[1]} not attached")
        )
    for arn in sorted(have - wanted):
        params = {"GroupName": name, "PolicyArn": arn}
        reason = f"{arn.rsplit('/', 1)[1]} attached outside config"
        steps.append(Call("iam", "DetachGroupPolicy", params, resource, reason))
    depends = [f"policy/{policy}" for policy in spec.customer_policies]
    return converge(AREA, "group", resource, steps, exists=attached is not None, depends_on=depends)


def read_service_linked_roles(stage: Stage) -> frozenset[str]:
    """The services that have their service-linked role in this account (its path names it)."""
    roles = [role for role in account_roles(stage) if role["Path"].startswith(SERVICE_ROLE_PATH)]
    return frozenset(role["Path"].removeprefix(SERVICE_ROLE_PATH).strip("/") for role in roles)


def plan_service_linked_role(service: str, existing: frozenset[str]) -> Resource:
    steps = []
    if service not in existing:
        # Made between our read and this call (by AWS on first use, or another run): done.
        steps.append(
            Call(
                "iam",
                "CreateServiceLinkedRole",
                {"AWSServiceName": service},
                service,
                "service-linked role does not exist",
                done_codes=("InvalidInput",),
            )
        )
    return converge(AREA, "service-linked role", service, steps, exists=service in existing)


def plan(stage: Stage) -> list[Resource]:
    # The policy documents render (templates: time spent here, not waiting) while the account's
    # details are read.
    linked, specs = call_concurrently(
        partial(read_service_linked_roles, stage), partial(identity_specs, stage)
    )
    service_roles = [plan_service_linked_role(service, linked) for service in SERVICE_LINKED_ROLES]
    return [*service_roles, *plan_identities(stage, *specs)]


def identity_specs(stage: Stage) -> tuple[list[PolicySpec], list[RoleSpec], list[GroupSpec]]:
    return policy_specs(stage), role_specs(stage), group_specs(stage)


def plan_identities(
    stage: Stage, policies: list[PolicySpec], roles: list[RoleSpec], groups: list[GroupSpec]
) -> list[Resource]:
    profiles = [spec for spec in roles if spec.instance_profile]
    existing = account_roles(stage)
    by_name = {role["RoleName"]: role for role in existing}
    role_states = [role_state(by_name.get(spec.name)) for spec in roles]
    # A profile holding no role is in no role's list: only then is it read on its own.
    held = profiles_in(existing)
    # What the account's details leave out (policy tags, such profiles, groups), side by side.
    policy_states, profile_states, group_states = call_concurrently(
        lambda: map_concurrently(lambda spec: read_policy(stage, spec.name), policies),
        lambda: map_concurrently(
            lambda spec: held[spec.name] if spec.name in held else read_instance_profile(stage, spec.name),
            profiles,
        ),
        lambda: map_concurrently(lambda spec: read_group(stage, spec.name), groups),
    )
    return [
        *(plan_policy(stage, s, st) for s, st in zip(policies, policy_states, strict=True)),
        *(plan_role(stage, s, st) for s, st in zip(roles, role_states, strict=True)),
        *(plan_instance_profile(stage, s, st) for s, st in zip(profiles, profile_states, strict=True)),
        *(plan_group(stage, s, st) for s, st in zip(groups, group_states, strict=True)),
    ]


# -- tasks -------------------------------------------------------------------------------------


create, status = area_tasks(AREA, "the roles, policies, instance profiles and the dev group", plan)
collection = Collection(AREA, create, status)
