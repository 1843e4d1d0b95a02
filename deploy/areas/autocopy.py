"""Auto-copy: what loads the records Firehose stages in S3 into Redshift. For each enabled cluster,
an S3 event integration from its staging bucket to the cluster (authorised by the cluster's
resource policy; the bucket policy statement it needs is the s3 area's, from this area's lookup)
and a COPY JOB with AUTO ON, created through the Redshift Data API, which reaches the private
cluster through the service API, not the network.

A COPY JOB lives inside the database, where only SQL reads it, and the Data API runs SQL only
through ExecuteStatement, a call that may change anything: plans and status cannot use it. So the
job this tool made is recorded on its integration (the description names the job and a digest of
its COPY command), and read from there: a command that config no longer gives is drift, repaired
by dropping the job and creating it again. A job changed inside the database by hand is not seen.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.cli import area_tasks
from deploy.errors import AwsError
from deploy.parallel import map_concurrently
from deploy.plan import Call, Check, Deferred, Resource, Step, Wait, converge

if TYPE_CHECKING:
    from deploy.stage import Stage

AREA = "autocopy"
# What other areas may call here (the tests hold them to it).
LOOKUPS = ("bucket_policy_statements",)
# Needs first: the COPY role, the staging buckets with their policy, the clusters.
AFTER: tuple[str, ...] = ("iam", "s3", "redshift")
INTEGRATION_KIND = "S3 event integration"
JOB_KIND = "COPY job"
OWNER = "iotile-deploy"
SERVICE_PRINCIPAL = "redshift.amazonaws.com"
# What Redshift does to the bucket for an S3 event integration (it sets up the notifications).
NOTIFICATION_ACTIONS = ["s3:GetBucketLocation", "s3:GetBucketNotification", "s3:PutBucketNotification"]
# Integration states: AWS is still working on it (a rerun waits), or it needs someone to look.
BUSY = frozenset({"creating", "modifying", "syncing"})
BROKEN = frozenset({"failed", "needs_attention"})
RECORD = re.compile(r"COPY JOB (?P<job>\w+) \(command (?P<digest>[0-9a-f]{16})\)")
ABSENT = "missing"


@dataclass(frozen=True)
class CopyJobSpec:
    """One stream's auto-copy as config wants it: the integration and the job."""

    which: str
    integration: str
    job: str
    bucket: str
    bucket_arn: str
    source: str
    table: str
    copy_options: str
    role_arn: str
    cluster: str
    database: str
    db_user: str
    tags: dict[str, str]

    @property
    def copy_sql(self) -> str:
        """The COPY JOB: the same COPY Firehose ran, on every new object under the prefix."""
        parts = (
            f"COPY {self.table} FROM '{self.source}' IAM_ROLE '{self.role_arn}'",
            self.copy_options.strip(),
            f"JOB CREATE {self.job} AUTO ON",
        )
        return " ".join(part for part in parts if part)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.copy_sql.encode("utf-8")).hexdigest()[:16]

    def description(self, *, job_made: bool) -> str:
        """The integration's description: what it loads, and the job once it is made."""
        what = f"{OWNER}: {self.source} into {self.table}"
        return f"{what} by COPY JOB {self.job} (command {self.digest})" if job_made else what


@dataclass(frozen=True)
class IntegrationState:
    """One integration as Redshift has it."""

    exists: bool
    arn: str = ""
    status: str = ""
    source_arn: str = ""
    target_arn: str = ""
    description: str = ""
    errors: tuple[str, ...] = field(default_factory=tuple)

    @property
    def recorded_job(self) -> tuple[str, str] | None:
        """(job name, command digest) of the COPY JOB this tool made, or None."""
        found = RECORD.search(self.description)
        return (found["job"], found["digest"]) if found else None


def _bucket_arn(stage: Stage, bucket: str) -> str:
    from deploy.aws import partition

    return f"arn:{partition(stage.region)}:s3:::{bucket}"


def job_specs(stage: Stage) -> list[CopyJobSpec]:
    from deploy.areas.firehose import staging_bucket, staging_url
    from deploy.areas.iam import role_arn
    from deploy.areas.redshift import enabled_clusters

    config = stage.config
    if config.firehose.delivery == "direct":
        # Firehose runs the COPY itself: nothing to load, no bucket statement, no job.
        return []
    specs = []
    for which in enabled_clusters(stage):
        stream, cluster = getattr(config.firehose, which), getattr(config.redshift, which)
        name = f"iotile-{stage.name}-{which}".replace("_", "-")
        specs.append(
            CopyJobSpec(
                which=which,
                integration=name,
                # Redshift refuses a hyphen in a job name.
                job=name.replace("-", "_"),
                bucket=staging_bucket(stage, which),
                bucket_arn=_bucket_arn(stage, staging_bucket(stage, which)),
                source=staging_url(stage, which),
                table=stream.table,
                copy_options=stream.copy_options,
                role_arn=role_arn(stage, config.iam.redshift_role),
                cluster=cluster.identifier,
                database=cluster.database,
                # The master user, with temporary credentials the Data API gets: no password.
                db_user=cluster.master_username,
                tags=stage.tags(name),
            )
        )
    return specs


def bucket_policy_statements(stage: Stage, bucket: str) -> list[dict[str, Any]]:
    """The statements this stage's integrations need in the policy of `bucket` (none unless it
    stages records for an enabled cluster): Redshift may read and set the bucket's event
    notifications, for integrations of this account only. Sid carries the stage, so each stage
    owns its own statement on a shared bucket."""
    from deploy.aws import partition

    if bucket not in {spec.bucket for spec in job_specs(stage)}:
        return []
    account = stage.account_id
    integrations = f"arn:{partition(stage.region)}:redshift:{stage.region}:{account}:integration:*"
    return [
        {
            "Sid": f"{OWNER}-{stage.name}-redshift-autocopy",
            "Effect": "Allow",
            "Principal": {"Service": SERVICE_PRINCIPAL},
            "Action": list(NOTIFICATION_ACTIONS),
            "Resource": _bucket_arn(stage, bucket),
            "Condition": {
                "StringEquals": {"aws:SourceAccount": account},
                "ArnLike": {"aws:SourceArn": integrations},
            },
        }
    ]


def resource_policy(stage: Stage, spec: CopyJobSpec, namespace: str) -> dict[str, Any]:
    """The cluster's resource policy: the staging bucket is an authorised integration source, and
    principals of this account (as their IAM policies allow) may create integrations from it."""
    from deploy.aws import partition

    only_the_bucket = {"StringEquals": {"aws:SourceArn": spec.bucket_arn}}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AuthorizeStagingBucket",
                "Effect": "Allow",
                "Principal": {"Service": SERVICE_PRINCIPAL},
                "Action": "redshift:AuthorizeInboundIntegration",
                "Resource": namespace,
                "Condition": only_the_bucket,
            },
            {
                "Sid": "AccountCreatesIntegrations",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition(stage.region)}:iam::{stage.account_id}:root"},
                "Action": "redshift:CreateInboundIntegration",
                "Resource": namespace,
                "Condition": only_the_bucket,
            },
        ],
    }


# -- reading -----------------------------------------------------------------------------------


def _integration_state(found: dict[str, Any]) -> IntegrationState:
    errors = tuple(
        f"{e.get('ErrorCode', '')}: {e.get('ErrorMessage', '')}" for e in found.get("Errors") or []
    )
    return IntegrationState(
        exists=True,
        arn=found.get("IntegrationArn", ""),
        status=found.get("Status", ""),
        source_arn=found.get("SourceArn", ""),
        target_arn=found.get("TargetArn", ""),
        description=found.get("Description", "") or "",
        errors=errors,
    )


def read_integrations(stage: Stage) -> dict[str, IntegrationState]:
    """Every integration of the account and region, by name."""
    pages = stage.client("redshift").get_paginator("describe_integrations").paginate()
    found = [i for page in pages for i in page.get("Integrations", [])]
    return {i["IntegrationName"]: _integration_state(i) for i in found}


def read_integration(stage: Stage, name: str) -> IntegrationState:
    return read_integrations(stage).get(name, IntegrationState(exists=False))


def read_resource_policy(stage: Stage, namespace: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        found = stage.client("redshift").get_resource_policy(ResourceArn=namespace)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ResourceNotFoundFault", "ResourceNotFound"):
            return None
        raise
    policy = (found.get("ResourcePolicy") or {}).get("Policy")
    return json.loads(policy) if policy else None


def integration_status(name: str, *, broken_fails: bool = True) -> Callable[[Stage], str]:
    """A Wait probe: the integration's status, or `missing`; a broken one raises with what it
    needs (unless `broken_fails` is off: waiting for its deletion, say)."""

    def probe(stage: Stage) -> str:
        state = read_integration(stage, name)
        if broken_fails and state.status in BROKEN:
            why = "; ".join(state.errors) or "no reason given"
            raise AwsError(
                "IntegrationNeedsAttention",
                f"S3 event integration {name} is {state.status}: {why}",
                "Fix what it names (the bucket policy or the cluster's resource policy), then rerun.",
            )
        return state.status if state.exists else ABSENT

    return probe


def statement_status(name: str, what: str, tolerated: str | None = None) -> Callable[[Stage], str]:
    """A Wait probe for the Data API statement named `name`: its status; a failure raises with
    Redshift's own error (except one that contains `tolerated`, which counts as done)."""

    def probe(stage: Stage) -> str:
        data = stage.client("redshift-data")
        listed = data.list_statements(StatementName=name, Status="ALL").get("Statements", [])
        mine = [s for s in listed if s.get("StatementName") == name]
        if not mine:
            return "SUBMITTED"
        latest = max(mine, key=lambda s: str(s.get("CreatedAt", "")))
        if latest.get("Status") != "FAILED":
            return str(latest.get("Status", ""))
        error = data.describe_statement(Id=latest["Id"]).get("Error", "")
        if tolerated and tolerated in error.lower():
            return "FINISHED"
        raise AwsError(
            "StatementFailed",
            f"{what} failed: {error or 'no error given'}",
            "Fix the cause in config or in the database, then rerun.",
        )

    return probe


# -- planning ----------------------------------------------------------------------------------


def _namespace_when_created(spec: CopyJobSpec) -> Deferred:
    def resolve(stage: Stage) -> str:
        from deploy.areas.redshift import namespace_arn

        found = namespace_arn(stage, spec.which)
        if found is None:
            raise AwsError(
                "ClusterNotFound",
                f"Redshift cluster {spec.cluster} does not exist, so nothing can load into it",
                f"Run `inv redshift.create --stage {stage.name}` (it waits until the cluster is available), "
                "then rerun.",
            )
        return found

    return Deferred(f"namespace ARN of Redshift cluster {spec.cluster}", resolve)


def _integration_arn_when_created(spec: CopyJobSpec) -> Deferred:
    def resolve(stage: Stage) -> str:
        state = read_integration(stage, spec.integration)
        if not state.exists:
            raise AwsError("IntegrationNotFound", f"S3 event integration {spec.integration} does not exist")
        return state.arn

    return Deferred(f"ARN of S3 event integration {spec.integration}", resolve)


def _wait_integration(stage: Stage, spec: CopyJobSpec, reason: str, ready: str = "active") -> Wait:
    creating = ready == "active"
    return Wait(
        spec.integration,
        reason,
        integration_status(spec.integration, broken_fails=creating),
        ready=frozenset({ready}),
        failed=frozenset({"deleting"}) if creating else frozenset(),
        timeout_seconds=stage.config.waits.timeout_seconds,
    )


def _policy_step(stage: Stage, spec: CopyJobSpec, namespace: str | None, reason: str) -> Call:
    if namespace is None:
        target = _namespace_when_created(spec)

        def render(at: Stage) -> str:
            return json.dumps(resource_policy(at, spec, target.resolve(at)))

        params: dict[str, Any] = {"ResourceArn": target, "Policy": Deferred("the resource policy", render)}
    else:
        params = {"ResourceArn": namespace, "Policy": json.dumps(resource_policy(stage, spec, namespace))}
    return Call("redshift", "PutResourcePolicy", params, spec.integration, reason)


def _create_integration_steps(
    stage: Stage, spec: CopyJobSpec, target: str | Deferred, reason: str
) -> list[Step]:
    params = {
        "IntegrationName": spec.integration,
        "SourceArn": spec.bucket_arn,
        "TargetArn": target,
        "Description": spec.description(job_made=False),
        "TagList": stage.tag_list(spec.tags),
    }
    call = Call("redshift", "CreateIntegration", params, spec.integration, reason)
    return [call, _wait_integration(stage, spec, "new integration is being created")]


def remade(spec: CopyJobSpec, state: IntegrationState, namespace: str | None) -> bool:
    """Whether an existing integration connects other ends than config's, so is made again."""
    ends = (state.source_arn, state.target_arn)
    return bool(
        state.exists and namespace and state.status not in BUSY and ends != (spec.bucket_arn, namespace)
    )


def plan_integration(
    stage: Stage,
    spec: CopyJobSpec,
    state: IntegrationState,
    namespace: str | None,
    policy: dict[str, Any] | None,
) -> Resource:
    from deploy.policies import canonical

    steps: list[Step] = []
    wanted = resource_policy(stage, spec, namespace) if namespace else None
    if wanted is None or policy is None or canonical(policy) != canonical(wanted):
        reason = "cluster resource policy does not authorise the staging bucket as it should"
        steps.append(_policy_step(stage, spec, namespace, reason))
    target: str | Deferred = namespace or _namespace_when_created(spec)
    detail = f"{spec.source} into {spec.cluster}" + (f" ({state.status})" if state.exists else "")
    if not state.exists:
        steps += _create_integration_steps(stage, spec, target, "integration does not exist")
    elif state.status in BUSY:
        steps.append(_wait_integration(stage, spec, f"integration is {state.status}"))
    elif remade(spec, state, namespace):
        # Neither end of an integration can be changed: it is made again (its COPY JOB with it).
        reason = "integration connects another bucket or cluster"
        params = {"IntegrationArn": state.arn}
        steps.append(Call("redshift", "DeleteIntegration", params, spec.integration, reason))
        steps.append(_wait_integration(stage, spec, "old integration is being deleted", ready=ABSENT))
        steps += _create_integration_steps(stage, spec, target, reason)
    elif state.status in BROKEN:
        # Usually a policy taken away (the s3 area's and the steps above put them back): status
        # shows why, and a run goes on with the job once the integration is active again.
        why = f"integration is {state.status}: {'; '.join(state.errors) or 'no reason given'}"
        probe = integration_status(spec.integration, broken_fails=False)
        steps.append(Check(spec.integration, why, probe, ready=frozenset({"active"})))
    elif state.status == "deleting":
        detail = "deleting: rerun once it is gone to make it again"
    return converge(AREA, INTEGRATION_KIND, spec.integration, steps, exists=state.exists, detail=detail)


def _statement_steps(stage: Stage, spec: CopyJobSpec, sql: str, verb: str, reason: str) -> list[Step]:
    # Named per run, so the wait finds this run's statement among the role's others.
    name = f"{OWNER}-{stage.name}-{spec.which}-{verb}-{uuid.uuid4().hex[:8]}"
    params = {
        "ClusterIdentifier": spec.cluster,
        "Database": spec.database,
        "DbUser": spec.db_user,
        "Sql": sql,
        "StatementName": name,
    }
    what = f"COPY JOB {verb.upper()} {spec.job} in {spec.cluster}"
    # A job dropped by hand since it was recorded is as good as dropped. A job that exists though
    # none is recorded was made by a run stopped (killed) before it recorded it: recording it now
    # resumes that run, without dropping the job, which would load its files a second time.
    tolerated = "does not exist" if verb == "drop" else "already exists" if verb == "create" else None
    probe = statement_status(name, what, tolerated)
    wait = Wait(
        spec.job,
        f"{what} runs",
        probe,
        ready=frozenset({"FINISHED"}),
        failed=frozenset({"ABORTED"}),
        timeout_seconds=stage.config.waits.timeout_seconds,
    )
    return [Call("redshift-data", "ExecuteStatement", params, spec.job, reason), wait]


def plan_job(
    stage: Stage, spec: CopyJobSpec, integration: IntegrationState, *, remade: bool = False
) -> Resource:
    """The COPY JOB, read from the record on its integration (a new integration has no job; one
    made again gets its job made again)."""
    recorded = integration.recorded_job if integration.exists else None
    detail = f"{spec.table} from {spec.source}"
    steps: list[Step] = []
    if remade or recorded != (spec.job, spec.digest):
        reason = "COPY JOB does not exist" if recorded is None else "COPY JOB command differs from config"
        if remade:
            reason = "its integration is made again"
        if recorded is not None:
            steps += _statement_steps(stage, spec, f"COPY JOB DROP {recorded[0]}", "drop", reason)
        steps += _statement_steps(stage, spec, spec.copy_sql, "create", reason)
        arn: str | Deferred = _integration_arn_when_created(spec) if remade else integration.arn
        arn = arn or _integration_arn_when_created(spec)
        params = {"IntegrationArn": arn, "Description": spec.description(job_made=True)}
        steps.append(Call("redshift", "ModifyIntegration", params, spec.job, reason))
    return converge(
        AREA,
        JOB_KIND,
        spec.job,
        steps,
        exists=recorded is not None,
        detail=detail,
        depends_on=[spec.integration],
    )


def plan(stage: Stage) -> list[Resource]:
    """What `up` and `autocopy.create` converge: per enabled cluster, the integration from its
    staging bucket and the COPY JOB that loads it."""
    from deploy.areas.redshift import namespace_arn

    specs = job_specs(stage)
    if not specs:
        return []
    reads: list[Callable[[], Any]] = [
        partial(read_integrations, stage),
        *(partial(namespace_arn, stage, spec.which) for spec in specs),
    ]
    integrations, *namespaces = map_concurrently(lambda read: read(), reads)
    policies = map_concurrently(
        lambda namespace: read_resource_policy(stage, namespace) if namespace else None, namespaces
    )
    resources = []
    for spec, namespace, policy in zip(specs, namespaces, policies, strict=True):
        state = integrations.get(spec.integration, IntegrationState(exists=False))
        resources.append(plan_integration(stage, spec, state, namespace, policy))
        resources.append(plan_job(stage, spec, state, remade=remade(spec, state, namespace)))
    return resources


# -- tasks -------------------------------------------------------------------------------------


create, status = area_tasks(AREA, "the S3 event integrations and COPY JOBs that load Redshift", plan)
collection = Collection(AREA, create, status)
