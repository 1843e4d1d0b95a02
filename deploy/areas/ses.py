"""SES: the notify.<domain> sending identity with DKIM, its bounce and complaint topics, its DNS records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.cli import deploy_task
from deploy.parallel import call_concurrently
from deploy.plan import Call, Check, Resource, converge

if TYPE_CHECKING:
    from deploy.areas.dns import Record
    from deploy.report import Reporter
    from deploy.stage import Stage

AREA = "ses"
# Needs first: the SESIssues topic.
AFTER: tuple[str, ...] = ("sns",)
NOTIFICATION_TYPES = ("Bounce", "Complaint")
# Verification states in which AWS is still checking DNS: waiting is all there is to do.
PENDING = frozenset({"Pending", "NotStarted", "TemporaryFailure", ""})


@dataclass(frozen=True)
class IdentitySpec:
    domain: str
    topic_arn: str  # SESIssues: where bounces and complaints go
    hosted_zone: str | None


@dataclass(frozen=True)
class IdentityState:
    exists: bool
    verification: str = ""  # Pending, Success, Failed, TemporaryFailure, NotStarted
    token: str = ""
    dkim_enabled: bool = False
    dkim_status: str = ""
    dkim_tokens: tuple[str, ...] = ()
    topics: dict[str, str] = field(default_factory=dict)  # Bounce/Complaint/Delivery -> topic ARN
    forwarding: bool = True


def identity_spec(stage: Stage) -> IdentitySpec:
    return IdentitySpec(
        domain=stage.config.ses.domain,
        topic_arn=stage.arn("sns", stage.config.sns.topics.ses_issues),
        hosted_zone=stage.config.dns.hosted_zone,
    )


def read_identity(stage: Stage, domain: str) -> IdentityState:
    """The identity, read once a run (its plan and the closing list of `up` both need it)."""
    return stage.remember(("ses", "identity", domain), lambda: _read_identity(stage, domain))


def _read_identity(stage: Stage, domain: str) -> IdentityState:
    """SES answers for identities it does not have by leaving them out of the result."""
    ses = stage.client("ses")
    verification = ses.get_identity_verification_attributes(Identities=[domain])["VerificationAttributes"]
    if domain not in verification:
        return IdentityState(False)
    # An identity SES has: its DKIM and its notification settings, side by side.
    dkim, notes = call_concurrently(
        lambda: ses.get_identity_dkim_attributes(Identities=[domain])["DkimAttributes"],
        lambda: ses.get_identity_notification_attributes(Identities=[domain])["NotificationAttributes"],
    )
    dkim, notes = dkim.get(domain, {}), notes.get(domain, {})
    return IdentityState(
        exists=True,
        verification=verification[domain].get("VerificationStatus", ""),
        token=verification[domain].get("VerificationToken", ""),
        dkim_enabled=bool(dkim.get("DkimEnabled")),
        dkim_status=dkim.get("DkimVerificationStatus", ""),
        dkim_tokens=tuple(dkim.get("DkimTokens", ())),
        topics={
            kind: notes[f"{kind}Topic"]
            for kind in ("Bounce", "Complaint", "Delivery")
            if notes.get(f"{kind}Topic")
        },
        forwarding=notes.get("ForwardingEnabled", True),
    )


def identity_records(domain: str, state: IdentityState) -> list[Record]:
    """The verification TXT record and one DKIM CNAME per token."""
    from deploy.areas.dns import Record

    records = [Record(f"_amazonses.{domain}", "TXT", (state.token,))] if state.token else []
    records += [
        Record(f"{token}._domainkey.{domain}", "CNAME", (f"{token}.dkim.amazonses.com",))
        for token in state.dkim_tokens
    ]
    return records


def plan_identity(spec: IdentitySpec, state: IdentityState) -> Resource:
    domain = spec.domain
    steps: list[Call] = []
    if not state.exists:
        steps.append(
            Call("ses", "VerifyDomainIdentity", {"Domain": domain}, domain, "identity does not exist")
        )
    elif state.verification == "Failed":
        # AWS stops checking after 72 hours without the record; asking again restarts it.
        steps.append(Call("ses", "VerifyDomainIdentity", {"Domain": domain}, domain, "verification failed"))
    if not state.dkim_tokens or state.dkim_status == "Failed":
        reason = "DKIM verification failed" if state.dkim_tokens else "DKIM not set up"
        steps.append(Call("ses", "VerifyDomainDkim", {"Domain": domain}, domain, reason))
    elif not state.dkim_enabled:
        params = {"Identity": domain, "DkimEnabled": True}
        steps.append(Call("ses", "SetIdentityDkimEnabled", params, domain, "DKIM signing is off"))
    return converge(AREA, "domain identity", domain, steps, exists=state.exists, detail=_detail(spec, state))


def notification_calls(spec: IdentitySpec, state: IdentityState) -> list[Call]:
    """Bounces and complaints to SESIssues, and no feedback by email. AWS takes these for a
    verified identity only."""
    domain, calls = spec.domain, []
    for kind in NOTIFICATION_TYPES:
        if state.topics.get(kind) != spec.topic_arn:
            params = {"Identity": domain, "NotificationType": kind, "SnsTopic": spec.topic_arn}
            reason = f"{kind.lower()} notifications not sent to {spec.topic_arn.rsplit(':', 1)[-1]}"
            calls.append(Call("ses", "SetIdentityNotificationTopic", params, domain, reason))
    if state.forwarding:
        # Only once both topics are set (the calls above run first): AWS refuses it otherwise.
        params = {"Identity": domain, "ForwardingEnabled": False}
        reason = "feedback also forwarded by email"
        calls.append(Call("ses", "SetIdentityFeedbackForwardingEnabled", params, domain, reason))
    return calls


def notifications_name(domain: str) -> str:
    return f"{domain} notifications"


def plan_notifications(
    spec: IdentitySpec, state: IdentityState, verifying: bool, after: Sequence[str]
) -> Resource:
    """The notification settings of a verified identity. While verification is pending they wait:
    when this run starts it (or writes its records), behind a check that lets the rest of the stack
    converge if SES has not verified it by then; otherwise they are reported as pending, with the
    records to add, and planned once SES says `Success`."""
    name, calls = notifications_name(spec.domain), notification_calls(spec, state)
    detail = f"bounces and complaints to {spec.topic_arn.rsplit(':', 1)[-1]}"
    if state.verification == "Success" or not calls:
        return converge(
            AREA, "notifications", name, calls, exists=state.exists, detail=detail, depends_on=after
        )
    if verifying:
        check = Check(
            name,
            "SES takes notification settings only once the identity is verified",
            lambda later: read_identity(later, spec.domain).verification,
            frozenset({"Success"}),
        )
        steps = [check, *calls]
        return converge(AREA, "notifications", name, steps, exists=state.exists, depends_on=after)
    records = len(identity_records(spec.domain, state))
    where = "in the hosted zone" if spec.hosted_zone else "at your DNS provider"
    waiting = f"pending verification ({state.verification or 'NotStarted'}): {records} DNS records {where}"
    return Resource(AREA, "notifications", name, "pending", (), (waiting,), detail, tuple(after))


def _detail(spec: IdentitySpec, state: IdentityState) -> str:
    if not state.exists:
        return ""
    if spec.hosted_zone is None and {state.verification, state.dkim_status} & PENDING:
        return f"pending verification: add {len(identity_records(spec.domain, state))} DNS records"
    return f"verification {state.verification}, DKIM {state.dkim_status or 'NotStarted'}"


def records_name(domain: str) -> str:
    return f"{domain} records"


def plan_dns_records(stage: Stage, spec: IdentitySpec, state: IdentityState, identity: Resource) -> Resource:
    """The records go to the managed zone. Their values are tokens SES hands out: when this run
    asks for them (a new identity, a verification started again), the records are read and written
    right after, in the same run; otherwise they are compared with the zone like any other."""
    from deploy.areas import dns

    name = records_name(spec.domain)
    asks_for_tokens = {"VerifyDomainIdentity", "VerifyDomainDkim"} & {
        step.operation for step in identity.steps if isinstance(step, Call)
    }
    if asks_for_tokens:
        steps = dns.plan_deferred_records(
            stage,
            lambda later: identity_records(spec.domain, read_identity(later, spec.domain)),
            area=AREA,
            resource=name,
            description=f"verification TXT and DKIM CNAME records of {spec.domain}, read once SES has them",
            reason="records for tokens SES hands out in this run",
        )
    else:
        steps = dns.plan_records(stage, identity_records(spec.domain, state), area=AREA, resource=name)
    return converge(
        AREA,
        "dns records",
        name,
        steps,
        exists=state.exists,
        detail=f"zone {spec.hosted_zone}",
        depends_on=[spec.domain],
    )


def plan(stage: Stage) -> list[Resource]:
    spec = identity_spec(stage)
    state = read_identity(stage, spec.domain)
    resources = [plan_identity(spec, state)]
    if spec.hosted_zone is not None:
        resources.append(plan_dns_records(stage, spec, state, resources[0]))
    verifying = any(resource.calls for resource in resources)
    after = [resource.name for resource in resources]
    return [*resources, plan_notifications(spec, state, verifying, after)]


def operator_records(stage: Stage) -> list[Record]:
    """The records the operator must add by hand: none when a hosted zone is managed (this tool
    writes them) or before the identity exists (SES has not handed out the tokens yet)."""
    spec = identity_spec(stage)
    if spec.hosted_zone is not None:
        return []
    state = read_identity(stage, spec.domain)
    return identity_records(spec.domain, state) if state.exists else []


def by_hand(stage: Stage) -> list[str]:
    """For `up`'s closing list: the identity's records to add at another DNS provider, if any."""
    from deploy.areas import dns

    records = operator_records(stage)
    if not records:
        return []
    lines = "\n".join(dns.describe_records(records))
    return [
        f"add the DNS records of {stage.config.ses.domain} at your DNS provider (dns.hosted_zone is "
        f"not set; keep them: DKIM signing needs the CNAMEs for good):\n{lines}"
    ]


def _records_json(records: list[Record]) -> list[dict[str, Any]]:
    return [{"name": r.fqdn, "type": r.type, "ttl": r.ttl, "values": list(r.values)} for r in records]


def _show_records(reporter: Reporter, stage: Stage, records: list[Record]) -> None:
    from deploy.areas import dns

    if reporter.as_json or not records:
        return
    domain = stage.config.ses.domain
    reporter.out.print(
        f"DNS records of {domain}: dns.hosted_zone is not set, so add them at your DNS provider "
        "(and keep them: DKIM signing needs the CNAMEs for good):",
        markup=False,
        highlight=False,
    )
    for line in dns.describe_records(records):
        reporter.out.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)


@deploy_task()
def create(c, stage=None, dry_run=False, json=False):
    """Create or converge the SES identity, DKIM, notifications and DNS records.
    Example: inv ses.create --stage dev"""
    from deploy.execute import converge_waves
    from deploy.report import Reporter
    from deploy.stage import open_stage

    target = open_stage(stage, dry_run=dry_run)
    reporter = Reporter(as_json=json)
    outcome = converge_waves(target, [{AREA: plan}], reporter, dry_run=dry_run)
    records = operator_records(target)
    reporter.outcome(
        outcome.resources,
        stage=target.name,
        dry_run=dry_run,
        calls=outcome.calls,
        extra={"dns_records": _records_json(records)},
    )
    _show_records(reporter, target, records)


@deploy_task()
def status(c, stage=None, json=False):
    """Show the identity (verification, DKIM) and its DNS records. Example: inv ses.status --json"""
    from deploy.execute import read_areas
    from deploy.report import Reporter
    from deploy.stage import open_stage

    target = open_stage(stage, dry_run=True)
    resources = read_areas(target, {AREA: plan})
    records = operator_records(target)
    reporter = Reporter(as_json=json)
    reporter.status(resources, extra={"dns_records": _records_json(records)})
    _show_records(reporter, target, records)


collection = Collection(AREA, create, status)
