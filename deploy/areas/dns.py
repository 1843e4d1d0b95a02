"""DNS: the Route 53 public hosted zone of dns.hosted_zone, and the record code every area writes
its records through (SES verification and DKIM, ACM validation, the aliases of the front end)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.cli import area_tasks
from deploy.errors import AwsError
from deploy.parallel import map_concurrently
from deploy.plan import Call, Deferred, Resource, converge

if TYPE_CHECKING:
    from deploy.stage import Stage

AREA = "dns"
# Needs nothing first: the areas that write records (ses, acm, aliases) come after the zone, and
# acm must come before eb and cdn, so the zone cannot wait for any of them.
AFTER: tuple[str, ...] = ()
# What other areas may call here (the tests hold them to it).
LOOKUPS = (
    "Record",
    "Alias",
    "plan_records",
    "plan_deferred_records",
    "plan_alias_removal",
    "describe_records",
    "managed",
)
TXT_CHUNK = 255  # a TXT record holds strings of at most 255 characters each
ZONE_HINT = (
    "Create the public hosted zone in Route 53 (and delegate the domain to it), set "
    "dns.create_zone: true to have `inv dns.create --stage {stage}` make it, or set dns.hosted_zone: "
    "null in config/{stage}.yaml to print the records for another DNS provider."
)
MADE_HINT = (
    "dns.create_zone is set: make the zone first with `inv dns.create --stage {stage}` (`up` does it in its "
    "first wave)."
)


@dataclass(frozen=True)
class Alias:
    """Where an alias record points: a name AWS serves and the hosted zone AWS publishes it in."""

    dns_name: str
    zone_id: str


@dataclass(frozen=True)
class Record:
    """One record set: TXT values are the text itself (quoting is done here), CNAME values a name;
    an alias record has no values and no TTL (Route 53 answers with the target's)."""

    name: str
    type: str
    values: tuple[str, ...] = ()
    ttl: int = 300
    alias: Alias | None = None

    @property
    def fqdn(self) -> str:
        return fqdn(self.name)


def fqdn(name: str) -> str:
    """Route 53's form of a name: lower case, with the final dot, `\\ooo` escapes decoded."""
    name = re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1), 8)), name)
    return name.lower().rstrip(".") + "."


def _quote_txt(text: str) -> str:
    """TXT text as Route 53 wants it: quoted strings of at most 255 characters."""
    escaped = [
        text[i : i + TXT_CHUNK].replace("\\", "\\\\").replace('"', '\\"')
        for i in range(0, len(text), TXT_CHUNK)
    ]
    return " ".join(f'"{chunk}"' for chunk in escaped or [""])


def _unquote_txt(value: str) -> str:
    strings = re.findall(r'"((?:[^"\\]|\\.)*)"', value)
    if not strings:
        return value
    return "".join(re.sub(r"\\(.)", r"\1", s) for s in strings)


def _wire_value(record: Record, value: str) -> str:
    return _quote_txt(value) if record.type == "TXT" else value


def _comparable(record_type: str, value: str) -> str:
    if record_type == "TXT":
        return _unquote_txt(value)
    if record_type in ("CNAME", "NS", "MX", "PTR", "SRV"):
        return value.lower().rstrip(".")
    return value


def _same_alias(want: Alias, have: dict[str, Any] | None) -> bool:
    if have is None or "AliasTarget" not in have:
        return False
    target = have["AliasTarget"]
    return (
        fqdn(target.get("DNSName", "")) == fqdn(want.dns_name)
        and target.get("HostedZoneId") == want.zone_id
        and not target.get("EvaluateTargetHealth")
    )


def _same(want: Record, have: dict[str, Any] | None) -> bool:
    if want.alias is not None:
        return _same_alias(want.alias, have)
    if have is None or "AliasTarget" in have or have.get("TTL") != want.ttl:
        return False
    found = sorted(_comparable(want.type, r["Value"]) for r in have.get("ResourceRecords", []))
    return found == sorted(_comparable(want.type, _wire_value(want, value)) for value in want.values)


def find_zone(stage: Stage, zone_name: str, hint: str = ZONE_HINT) -> str:
    """The id of the public hosted zone named exactly `zone_name` (a private zone of the same name
    answers only inside its VPCs, so records there would verify nothing)."""
    zone_id = lookup_zone(stage, zone_name)
    if zone_id is None:
        raise AwsError(
            "HostedZoneNotFound",
            f"no public Route 53 hosted zone named {fqdn(zone_name)} (dns.hosted_zone)",
            hint.format(stage=stage.name),
        )
    return zone_id


def lookup_zone(stage: Stage, zone_name: str) -> str | None:
    """find_zone, with None for a zone that does not exist."""
    route53 = stage.client("route53")
    want = fqdn(zone_name)
    params: dict[str, str] = {"DNSName": want}
    while True:
        page = route53.list_hosted_zones_by_name(**params)
        for zone in page.get("HostedZones", []):
            if fqdn(zone["Name"]) != want:
                # Zones come sorted by name from DNSName on: past ours, there is no more of it.
                return None
            if not zone.get("Config", {}).get("PrivateZone"):
                return zone["Id"].rsplit("/", 1)[-1]
        if not page.get("IsTruncated"):
            return None
        params = {"DNSName": page["NextDNSName"], "HostedZoneId": page["NextHostedZoneId"]}


def managed(stage: Stage) -> bool:
    """Whether this stage writes its records to a Route 53 zone (else they go to the operator)."""
    return stage.config.dns.hosted_zone is not None


def zone_id_param(stage: Stage) -> str | Deferred:
    """The zone's id for a call: read now, or, when `dns.create_zone` and the zone is made earlier
    in the same run (or would be, on a dry run), read when the call runs. A missing zone that is
    not to be made fails the plan before anything changes."""
    name = managed_zone(stage)
    zone_id = lookup_zone(stage, name)
    if zone_id is not None:
        return zone_id
    if not stage.config.dns.create_zone:
        find_zone(stage, name)
    return Deferred(f"id of the hosted zone {fqdn(name)}", lambda later: find_zone(later, name, MADE_HINT))


def managed_zone(stage: Stage) -> str:
    zone = stage.config.dns.hosted_zone
    if zone is None:
        raise ValueError(
            "dns.hosted_zone is not set: describe_records() gives lines for the operator instead"
        )
    return zone


def read_record(stage: Stage, zone_id: str, record: Record) -> dict[str, Any] | None:
    """The record set of this name and type, or None. Asks for one set from that name on, so a
    large zone is not listed in full."""
    page = stage.client("route53").list_resource_record_sets(
        HostedZoneId=zone_id, StartRecordName=record.fqdn, StartRecordType=record.type, MaxItems="1"
    )
    for found in page.get("ResourceRecordSets", []):
        if fqdn(found["Name"]) == record.fqdn and found["Type"] == record.type:
            return found
    return None


def record_set(record: Record) -> dict[str, Any]:
    if record.alias is not None:
        target = {
            "HostedZoneId": record.alias.zone_id,
            "DNSName": fqdn(record.alias.dns_name),
            # Neither CloudFront nor a Beanstalk environment name has health to evaluate.
            "EvaluateTargetHealth": False,
        }
        return {"Name": record.fqdn, "Type": record.type, "AliasTarget": target}
    return {
        "Name": record.fqdn,
        "Type": record.type,
        "TTL": record.ttl,
        "ResourceRecords": [{"Value": _wire_value(record, value)} for value in record.values],
    }


def change_batch(records: Sequence[Record], comment: str) -> dict[str, Any]:
    changes = [{"Action": "UPSERT", "ResourceRecordSet": record_set(record)} for record in records]
    return {"Comment": comment, "Changes": changes}


def plan_records(stage: Stage, records: Sequence[Record], *, area: str, resource: str) -> list[Call]:
    """One UPSERT of the records that are missing or differ in the zone of dns.hosted_zone;
    none when all match. A record set of ours replaces whatever values that name and type held."""
    zone_id = zone_id_param(stage)
    if isinstance(zone_id, Deferred):
        found: list[dict[str, Any] | None] = [None] * len(records)
    else:
        found = map_concurrently(lambda record: read_record(stage, zone_id, record), records)
    stale = [(record, have) for record, have in zip(records, found, strict=True) if not _same(record, have)]
    if not stale:
        return []
    missing = sum(have is None for _, have in stale)
    counts = [
        f"{missing} missing" if missing else "",
        f"{len(stale) - missing} differ" if len(stale) > missing else "",
    ]
    reason = f"DNS records {' and '.join(c for c in counts if c)}"
    params = {
        "HostedZoneId": zone_id,
        "ChangeBatch": change_batch([r for r, _ in stale], f"iotile-deploy {area}: {resource}"),
    }
    return [Call("route53", "ChangeResourceRecordSets", params, resource, reason)]


def plan_alias_removal(stage: Stage, records: Sequence[Record], *, area: str, resource: str) -> list[Call]:
    """One DELETE of those of the records (name and type) that exist as alias records in the zone
    of dns.hosted_zone, each exactly as Route 53 holds it (it deletes only an exact match); none
    when there is no such record, or no zone."""
    zone_id = lookup_zone(stage, managed_zone(stage))
    if zone_id is None:
        return []
    found = map_concurrently(lambda record: read_record(stage, zone_id, record), records)
    aliases = [have for have in found if have is not None and "AliasTarget" in have]
    if not aliases:
        return []
    changes = [{"Action": "DELETE", "ResourceRecordSet": have} for have in aliases]
    params = {
        "HostedZoneId": zone_id,
        "ChangeBatch": {"Comment": f"iotile-deploy {area}: {resource}", "Changes": changes},
    }
    kinds = "/".join(have["Type"] for have in aliases)
    return [
        Call(
            "route53",
            "ChangeResourceRecordSets",
            params,
            resource,
            f"{kinds} alias points at what goes on down",
        )
    ]


def plan_deferred_records(
    stage: Stage,
    records: Callable[[Stage], Sequence[Record]],
    *,
    area: str,
    resource: str,
    description: str,
    reason: str,
) -> list[Call]:
    """For records whose values only exist once an earlier step of the same run made them (SES
    tokens, say): UPSERT them all, read at execution time. The zone is found now, so a missing zone
    fails the plan before anything changes."""
    zone_id = zone_id_param(stage)
    comment = f"iotile-deploy {area}: {resource}"
    batch = Deferred(description, lambda later: change_batch(_some(records(later), resource), comment))
    return [
        Call(
            "route53",
            "ChangeResourceRecordSets",
            {"HostedZoneId": zone_id, "ChangeBatch": batch},
            resource,
            reason,
        )
    ]


def _some(records: Sequence[Record], resource: str) -> Sequence[Record]:
    if not records:
        raise AwsError(
            "RecordsNotReady",
            f"the DNS records of {resource} are not readable yet",
            "AWS can take a moment to publish them: rerun; the run resumes and writes them.",
        )
    return records


def describe_records(records: Sequence[Record]) -> list[str]:
    """Zone-file lines an operator can paste into another DNS provider."""
    lines = []
    for record in records:
        if record.alias is not None:
            target = f"{fqdn(record.alias.dns_name)} (alias, zone {record.alias.zone_id})"
            lines.append(f"{record.fqdn} {record.type} {target}")
        for value in record.values:
            shown = (
                _quote_txt(value)
                if record.type == "TXT"
                else fqdn(value)
                if record.type == "CNAME"
                else value
            )
            lines.append(f"{record.fqdn} {record.ttl} IN {record.type} {shown}")
    return lines


# -- the zone ---------------------------------------------------------------------------------


def caller_reference(stage: Stage, zone_name: str) -> str:
    """Route 53 wants a new reference for every CreateHostedZone (one reused, even after its zone
    was deleted, is refused); the zone is looked up by name first, so time keeps it unique."""
    return f"iotile-deploy-{stage.name}-{fqdn(zone_name).rstrip('.')}-{time.time_ns()}"[:128]


def plan_zone(stage: Stage, zone_name: str, zone_id: str | None) -> Resource:
    name = fqdn(zone_name)
    if zone_id is not None:
        return converge(AREA, "hosted zone", name, [], exists=True, detail=f"public, id {zone_id}")
    if not stage.config.dns.create_zone:
        find_zone(stage, zone_name)  # raises the one-line error with its hint
    comment = f"iotile-deploy: {stage.name}"
    create = Call(
        "route53",
        "CreateHostedZone",
        {
            "Name": name,
            "CallerReference": caller_reference(stage, zone_name),
            "HostedZoneConfig": {"Comment": comment, "PrivateZone": False},
        },
        name,
        "public hosted zone does not exist (dns.create_zone)",
    )
    zone = Deferred(f"id of the hosted zone {name}", lambda later: find_zone(later, zone_name))
    tag = Call(
        "route53",
        "ChangeTagsForResource",
        {"ResourceType": "hostedzone", "ResourceId": zone, "AddTags": stage.tag_list(stage.tags())},
        name,
        "tag the new zone",
    )
    detail = "delegate the domain to its name servers once made (inv dns.status)"
    return converge(AREA, "hosted zone", name, [create, tag], exists=False, detail=detail)


def plan(stage: Stage) -> list[Resource]:
    """The zone only: looked up, made when config says so. Without dns.hosted_zone, nothing."""
    zone_name = stage.config.dns.hosted_zone
    if zone_name is None:
        return []
    return [plan_zone(stage, zone_name, lookup_zone(stage, zone_name))]


create, status = area_tasks(AREA, "the Route 53 hosted zone", plan)
collection = Collection(AREA, create, status)
