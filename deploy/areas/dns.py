"""DNS: records other areas need (SES verification and DKIM; later CDN and ACM) in the Route 53 zone."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.errors import AwsError
from deploy.parallel import map_concurrently
from deploy.plan import Call, Deferred

if TYPE_CHECKING:
    from deploy.stage import Stage

AREA = "dns"
# What other areas may call here (the tests hold them to it).
LOOKUPS = ("Record", "plan_records", "plan_deferred_records", "describe_records")
TXT_CHUNK = 255  # a TXT record holds strings of at most 255 characters each
ZONE_HINT = (
    "Create the public hosted zone in Route 53 (and delegate the domain to it), or set "
    "dns.hosted_zone: null in config/<stage>.yaml to print the records for another DNS provider."
)


@dataclass(frozen=True)
class Record:
    """One record set: TXT values are the text itself (quoting is done here), CNAME values a name."""

    name: str
    type: str
    values: tuple[str, ...]
    ttl: int = 300

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


def _same(want: Record, have: dict[str, Any] | None) -> bool:
    if have is None or "AliasTarget" in have or have.get("TTL") != want.ttl:
        return False
    found = sorted(_comparable(want.type, r["Value"]) for r in have.get("ResourceRecords", []))
    return found == sorted(_comparable(want.type, _wire_value(want, value)) for value in want.values)


def find_zone(stage: Stage, zone_name: str) -> str:
    """The id of the public hosted zone named exactly `zone_name` (a private zone of the same name
    answers only inside its VPCs, so records there would verify nothing)."""
    route53 = stage.client("route53")
    want = fqdn(zone_name)
    params: dict[str, str] = {"DNSName": want}
    while True:
        page = route53.list_hosted_zones_by_name(**params)
        for zone in page.get("HostedZones", []):
            if fqdn(zone["Name"]) != want:
                # Zones come sorted by name from DNSName on: past ours, there is no more of it.
                raise AwsError(
                    "HostedZoneNotFound", f"no public Route 53 hosted zone named {want}", ZONE_HINT
                )
            if not zone.get("Config", {}).get("PrivateZone"):
                return zone["Id"].rsplit("/", 1)[-1]
        if not page.get("IsTruncated"):
            raise AwsError("HostedZoneNotFound", f"no public Route 53 hosted zone named {want}", ZONE_HINT)
        params = {"DNSName": page["NextDNSName"], "HostedZoneId": page["NextHostedZoneId"]}


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


def change_batch(records: Sequence[Record], comment: str) -> dict[str, Any]:
    changes = [
        {
            "Action": "UPSERT",
            "ResourceRecordSet": {
                "Name": record.fqdn,
                "Type": record.type,
                "TTL": record.ttl,
                "ResourceRecords": [{"Value": _wire_value(record, value)} for value in record.values],
            },
        }
        for record in records
    ]
    return {"Comment": comment, "Changes": changes}


def plan_records(stage: Stage, records: Sequence[Record], *, area: str, resource: str) -> list[Call]:
    """One UPSERT of the records that are missing or differ in the zone of dns.hosted_zone;
    none when all match. A record set of ours replaces whatever values that name and type held."""
    zone_id = find_zone(stage, managed_zone(stage))
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
    zone_id = find_zone(stage, managed_zone(stage))
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


collection = Collection(AREA)
