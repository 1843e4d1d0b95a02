"""ACM: the stage's DNS-validated certificate, its validation records, and its ARN for eb and cdn."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.cli import area_tasks
from deploy.parallel import pause
from deploy.plan import Call, Check, Resource, Wait, converge, tag_drift

if TYPE_CHECKING:
    from deploy.areas.dns import Record
    from deploy.stage import Stage

AREA = "acm"
# Needs first: the hosted zone its validation records go to. Not eb or cdn: they need its ARN.
AFTER: tuple[str, ...] = ("dns",)
# What other areas may call here (the tests hold them to it).
LOOKUPS = ("certificate_arn",)
# CloudFront takes certificates from this region only.
CLOUDFRONT_REGION = "us-east-1"
# States of a certificate still usable or on its way; any other (FAILED, VALIDATION_TIMED_OUT,
# EXPIRED, REVOKED, INACTIVE) is dead for good, and a new one is requested.
LIVE = ("ISSUED", "PENDING_VALIDATION")


@dataclass(frozen=True)
class CertificateSpec:
    names: tuple[str, ...]  # the first is the certificate's DomainName
    region: str
    tags: dict[str, str]
    token: str  # IdempotencyToken: the same stage and names ask for the same certificate

    @property
    def domain(self) -> str:
        return self.names[0]

    @property
    def label(self) -> str:
        return f"{self.domain} ({self.region})"


@dataclass(frozen=True)
class CertificateState:
    arn: str | None = None
    status: str = ""
    records: tuple[Record, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)


def idempotency_token(stage_name: str, region: str, names: tuple[str, ...]) -> str:
    """ACM takes \\w{1,32}: a digest of what the certificate is for, so a retry within the hour
    AWS keeps tokens gets the certificate already requested instead of a second one."""
    digest = hashlib.sha256(f"{stage_name}|{region}|{','.join(names)}".encode()).hexdigest()
    return digest[:32]


def certificate_spec(stage: Stage) -> CertificateSpec | None:
    names = tuple(dict.fromkeys(stage.config.acm.domains))
    if not names:
        return None
    return CertificateSpec(
        names, stage.region, stage.tags(), idempotency_token(stage.name, stage.region, names)
    )


def validation_records(certificate: dict[str, Any]) -> tuple[Record, ...]:
    """One CNAME per name ACM validates; `x.com` and `*.x.com` share theirs, so it is written once.
    Empty until ACM has published them, seconds after the request."""
    from deploy.areas.dns import Record

    records: dict[str, Record] = {}
    for option in certificate.get("DomainValidationOptions", []):
        record = option.get("ResourceRecord")
        if option.get("ValidationMethod") != "DNS" or not record:
            return ()
        records.setdefault(record["Name"].lower(), Record(record["Name"], record["Type"], (record["Value"],)))
    return tuple(records.values())


def _ours(stage: Stage, tags: dict[str, str]) -> bool:
    return tags.get("ManagedBy") == "iotile-deploy" and tags.get("Stage") == stage.name


def _candidates(stage: Stage, domain: str) -> list[str]:
    paginator = stage.client("acm").get_paginator("list_certificates")
    # One listing a run serves every certificate and the lookups of the app and the CDN.
    summaries = stage.remember(
        ("acm", "certificates"),
        lambda: [
            s
            for page in paginator.paginate(CertificateStatuses=list(LIVE))
            for s in page.get("CertificateSummaryList", [])
        ],
    )
    return [summary["CertificateArn"] for summary in summaries if summary.get("DomainName") == domain]


def read_certificate(stage: Stage, spec: CertificateSpec) -> CertificateState:
    """This stage's certificate for exactly these names, found by domain name and tags (no state
    file): the issued one first, else the newest pending one."""
    acm = stage.client("acm")
    found = []
    for arn in _candidates(stage, spec.domain):
        certificate = stage.remember(
            ("acm", "certificate", arn),
            lambda a=arn: acm.describe_certificate(CertificateArn=a)["Certificate"],
        )
        if set(certificate.get("SubjectAlternativeNames", [])) | {spec.domain} != set(spec.names):
            continue
        listed = stage.remember(
            ("acm", "tags", arn), lambda a=arn: acm.list_tags_for_certificate(CertificateArn=a)["Tags"]
        )
        tags = {t["Key"]: t.get("Value", "") for t in listed}
        if _ours(stage, tags):
            found.append((certificate, tags))
    if not found:
        return CertificateState()
    certificate, tags = max(
        found, key=lambda pair: (pair[0]["Status"] == "ISSUED", _created(pair[0]), pair[0]["CertificateArn"])
    )
    return CertificateState(
        certificate["CertificateArn"], certificate["Status"], validation_records(certificate), tags
    )


def _created(certificate: dict[str, Any]) -> float:
    created = certificate.get("CreatedAt")
    return created.timestamp() if hasattr(created, "timestamp") else float(created or 0)


def certificate_arn(stage: Stage, region: str | None = None) -> str | None:
    """The stage's issued certificate in `region` (default: the stage's), or None while there is
    none: CloudFront and load balancers refuse a certificate that is not issued yet. Only the
    stage's region is managed: a stage outside us-east-1 gets None for CloudFront (see plan)."""
    if (region or stage.region) != stage.region:
        return None
    spec = certificate_spec(stage)
    if spec is None:
        return None
    state = read_certificate(stage, spec)
    return state.arn if state.status == "ISSUED" else None


def plan_certificate(spec: CertificateSpec, state: CertificateState) -> Resource:
    steps: list[Call] = []
    if state.arn is None:
        params: dict[str, Any] = {
            "DomainName": spec.domain,
            "ValidationMethod": "DNS",
            "IdempotencyToken": spec.token,
            "Tags": [{"Key": k, "Value": v} for k, v in sorted(spec.tags.items())],
        }
        if len(spec.names) > 1:
            params["SubjectAlternativeNames"] = list(spec.names[1:])
        steps.append(Call("acm", "RequestCertificate", params, spec.label, "certificate does not exist"))
    elif any(state.tags.get(k) != v for k, v in spec.tags.items()):
        tags = [{"Key": k, "Value": v} for k, v in sorted(spec.tags.items())]
        params = {"CertificateArn": state.arn, "Tags": tags}
        steps.append(
            Call("acm", "AddTagsToCertificate", params, spec.label, tag_drift(state.tags, spec.tags))
        )
    detail = f"{state.status} {state.arn}" if state.arn else ", ".join(spec.names)
    return converge(AREA, "certificate", spec.label, steps, exists=state.arn is not None, detail=detail)


def _published(spec: CertificateSpec) -> Callable[[Stage], str]:
    def probe(later: Stage) -> str:
        state = read_certificate(later, spec)
        return "published" if state.records else "requested" if state.arn else "not found"

    return probe


def _issued_within(spec: CertificateSpec, seconds: float) -> Callable[[Stage], str]:
    """A probe that polls until ACM issues the certificate or `seconds` pass, and answers the last
    state: the Check behind it then lets a slow validation be pending instead of failing the run."""

    def probe(later: Stage) -> str:
        deadline = time.monotonic() + seconds
        while True:
            later.forget_reads()  # the status moves on by itself
            status = read_certificate(later, spec).status or "not found"
            left = deadline - time.monotonic()
            if status not in ("PENDING_VALIDATION", "not found") or left <= 0:
                return status
            pause(min(later.config.waits.poll_seconds, left))

    return probe


def validation_name(spec: CertificateSpec) -> str:
    return f"{spec.label} validation"


def _issued_check(stage: Stage, spec: CertificateSpec) -> Check:
    seconds = stage.config.acm.wait_minutes * 60
    reason = f"ACM validates by DNS (minutes): waiting up to {stage.config.acm.wait_minutes} min"
    return Check(validation_name(spec), reason, _issued_within(spec, seconds), frozenset({"ISSUED"}))


def plan_validation(
    stage: Stage, spec: CertificateSpec, state: CertificateState, requesting: bool
) -> Resource:
    """The validation records in the managed zone, then, when this run writes them, a bounded wait
    for ISSUED. A certificate requested in this run has no records yet: they are read once ACM
    publishes them and written in the same run."""
    from deploy.areas import dns

    name = validation_name(spec)
    after = [spec.label]
    if requesting:
        published = Wait(
            name, "ACM publishes the validation records", _published(spec), frozenset({"published"})
        )
        write = dns.plan_deferred_records(
            stage,
            lambda later: read_certificate(later, spec).records,
            area=AREA,
            resource=name,
            description=f"validation CNAME records of {spec.domain}, read once ACM has them",
            reason="validation records not written yet",
        )
        steps = [published, *write, _issued_check(stage, spec)]
        return converge(AREA, "validation", name, steps, exists=state.arn is not None, depends_on=after)
    writes: list[Any] = dns.plan_records(stage, state.records, area=AREA, resource=name)
    if writes and state.status != "ISSUED":
        writes.append(_issued_check(stage, spec))
    detail = f"zone {stage.config.dns.hosted_zone}, certificate {state.status}"
    resource = converge(AREA, "validation", name, writes, exists=True, detail=detail, depends_on=after)
    if not writes and state.status != "ISSUED":
        waiting = f"pending validation ({state.status}): {len(state.records)} records in the zone"
        return Resource(AREA, "validation", name, "pending", (), (waiting,), detail, tuple(after))
    return resource


def operator_validation(spec: CertificateSpec, state: CertificateState) -> Resource:
    """Without a managed zone the operator adds the records: pending, with the lines to paste."""
    from deploy.areas import dns

    name = validation_name(spec)
    if state.status == "ISSUED":
        return Resource(AREA, "validation", name, "present", detail="issued")
    if state.arn is None:
        # Nothing to validate before the certificate is requested (the resource above does that).
        return Resource(AREA, "validation", name, "missing", (), ("certificate not requested yet",))
    lines = tuple(dns.describe_records(state.records)) or ("records not published yet: rerun shortly",)
    waiting = ("pending validation: add at your DNS provider (dns.hosted_zone is not set)", *lines)
    return Resource(AREA, "validation", name, "pending", (), waiting, "", (spec.label,))


def cloudfront_gap(stage: Stage, spec: CertificateSpec) -> Resource | None:
    """CloudFront needs a certificate in us-east-1. The executor sends every call to the stage's
    region, so a stage elsewhere gets only its load balancer's certificate: say so, do not guess."""
    if stage.region == CLOUDFRONT_REGION:
        return None
    gap = (f"CloudFront takes certificates from {CLOUDFRONT_REGION} only: request it there by hand",)
    label = f"{spec.domain} ({CLOUDFRONT_REGION})"
    return Resource(AREA, "certificate", label, "pending", (), gap, "not managed from this stage's region")


def plan(stage: Stage) -> list[Resource]:
    from deploy.areas import dns

    spec = certificate_spec(stage)
    if spec is None:
        return []
    state = read_certificate(stage, spec)
    certificate = plan_certificate(spec, state)
    # Requested now, or by a run that stopped before ACM published the records: read them later.
    requesting = state.arn is None or (not state.records and state.status != "ISSUED")
    if dns.managed(stage):
        validation = plan_validation(stage, spec, state, requesting)
    else:
        validation = operator_validation(spec, state)
    gap = cloudfront_gap(stage, spec)
    return [certificate, validation, *([gap] if gap else [])]


def by_hand(stage: Stage) -> list[str]:
    """For `up`'s closing list: validation records to add at another DNS provider while the
    certificate is not issued, and CloudFront's certificate outside us-east-1."""
    from deploy.areas import dns

    spec = certificate_spec(stage)
    if spec is None:
        return []
    items = []
    if not dns.managed(stage):
        state = read_certificate(stage, spec)
        if state.arn is not None and state.status != "ISSUED":
            lines = "\n".join(dns.describe_records(state.records)) or "(not published yet: rerun shortly)"
            items.append(
                f"add the validation records of the certificate for {spec.domain} at your DNS provider "
                f"(dns.hosted_zone is not set; it is {state.status} until they exist):\n{lines}"
            )
    gap = cloudfront_gap(stage, spec)
    if gap is not None:
        items.extend(f"{gap.name}: {reason}" for reason in gap.drift)
    return items


create, status = area_tasks(AREA, "the stage's certificate and its DNS validation", plan)
collection = Collection(AREA, create, status)
