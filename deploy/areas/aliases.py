"""Aliases: the Route 53 alias records of the front end (the app's environment, the statics and
media distributions) in the zone of dns.hosted_zone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from invoke import Collection

from deploy.cli import area_tasks
from deploy.plan import Resource, converge, removal

if TYPE_CHECKING:
    from deploy.areas.dns import Alias
    from deploy.stage import Stage

AREA = "aliases"
# Needs first: the zone, and the environment and distributions the records point at (a target
# still missing is reported pending, and written by the run after it appears).
AFTER: tuple[str, ...] = ("dns", "eb", "cdn")
# Every CloudFront distribution is published in this zone (Route 53 AliasTarget reference).
CLOUDFRONT_ZONE = "Z2FDTNDATAQYW2"
# The zone of each region's Beanstalk environment names (AWS General Reference, "Elastic
# Beanstalk endpoints and quotas"); a region missing here leaves the app record pending.
BEANSTALK_ZONES = {
    "us-east-1": "Z117KPS5GTRQ2G",
    "us-east-2": "Z14LCN19Q5QHIC",
    "us-west-1": "Z1LQECGX5PH1X",
    "us-west-2": "Z38NKT9BP95V3O",
    "ap-south-1": "Z18NTBI3Y7N9TZ",
}


@dataclass(frozen=True)
class Target:
    """What a record points at, or why it cannot point anywhere yet."""

    what: str  # "Beanstalk environment iotile-cloud-dev", "statics distribution"
    alias: Alias | None
    # An environment name resolves to IPv4 only; CloudFront answers IPv6 too.
    types: tuple[str, ...] = ("A",)
    missing: str = ""


def _lookup(area: str, name: str) -> Any:
    """Another area's lookup, or None while that area (being built) or its lookup does not exist.
    Only what the area declares in LOOKUPS counts."""
    try:
        if area == "eb":
            from deploy.areas import eb as module
        else:
            from deploy.areas import cdn as module
    except ImportError:
        return None
    return getattr(module, name, None) if name in getattr(module, "LOOKUPS", ()) else None


def app_target(stage: Stage) -> Target:
    from deploy.areas.dns import Alias

    what = f"Beanstalk environment {stage.config.eb.environment}"
    cname = _lookup("eb", "environment_cname")
    if cname is None:
        return Target(what, None, missing=f"pending: {what} not created yet (no eb area)")
    zone = BEANSTALK_ZONES.get(stage.region)
    if zone is None:
        return Target(what, None, missing=f"pending: no Beanstalk zone id known for {stage.region}")
    name = cname(stage)
    if not name:
        return Target(what, None, missing=f"pending: {what} not created yet")
    return Target(what, Alias(name, zone))


def distribution_target(stage: Stage, which: str) -> Target:
    from deploy.areas.dns import Alias

    what = f"{which} distribution"
    domain = _lookup("cdn", "distribution_domain")
    if domain is None:
        return Target(what, None, missing=f"pending: {what} not created yet (no cdn area)")
    name = domain(stage, which)
    if not name:
        return Target(what, None, missing=f"pending: {what} not created yet")
    return Target(what, Alias(name, CLOUDFRONT_ZONE), ("A", "AAAA"))


def plan_alias(stage: Stage, record_name: str, target: Target) -> Resource:
    from deploy.areas import dns

    name = dns.Record(record_name, "A").fqdn
    if target.alias is None:
        return Resource(AREA, "alias", name, "pending", (), (target.missing,), target.what)
    records = [dns.Record(record_name, kind, alias=target.alias) for kind in target.types]
    steps = dns.plan_records(stage, records, area=AREA, resource=name)
    detail = f"{'/'.join(target.types)} -> {target.alias.dns_name}"
    return converge(AREA, "alias", name, steps, exists=True, detail=detail)


def wanted(stage: Stage) -> list[tuple[str, Any]]:
    """(record name, target builder) for every record config asks for."""
    config = stage.config.dns
    builders = [
        (config.app_record, app_target),
        (config.statics_record, lambda s: distribution_target(s, "statics")),
        (config.media_record, lambda s: distribution_target(s, "media")),
    ]
    return [(name, build) for name, build in builders if name]


def plan(stage: Stage) -> list[Resource]:
    from deploy.areas import dns

    if not dns.managed(stage):
        return []
    return [plan_alias(stage, name, build(stage)) for name, build in wanted(stage)]


def teardown(stage: Stage) -> list[Resource]:
    """What `down` does here: the records pointing at what goes (the app's always; the
    distributions' when cdn.remove_on_down), before their targets go. `up` writes them again."""
    from deploy.areas import dns

    if not dns.managed(stage):
        return []
    config = stage.config.dns
    names = [config.app_record]
    if stage.config.cdn.remove_on_down:
        names += [config.statics_record, config.media_record]
    resources = []
    for record_name in filter(None, names):
        name = dns.Record(record_name, "A").fqdn
        records = [dns.Record(record_name, kind) for kind in ("A", "AAAA")]
        steps = dns.plan_alias_removal(stage, records, area=AREA, resource=name)
        if steps:
            resources.append(removal(AREA, "alias", name, steps))
    return resources


create, status = area_tasks(AREA, "the alias records of the app and the distributions", plan)
collection = Collection(AREA, create, status)
