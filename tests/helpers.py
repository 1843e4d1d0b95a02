"""Small helpers the tests share: converge areas in-process and look at the outcome."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deploy.execute import Outcome
from deploy.plan import Call, Resource
from deploy.report import Reporter
from deploy.stack import converge_areas
from deploy.stage import Stage


def converge(stage: Stage, *areas: str, dry_run: bool = False) -> Outcome:
    return converge_areas(stage, [areas], Reporter(as_json=True), dry_run=dry_run)


def operations(resources: Sequence[Resource], name: str | None = None) -> list[str]:
    return [
        step.operation
        for resource in resources
        if name is None or resource.name == name
        for step in resource.steps
        if isinstance(step, Call)
    ]


def changed(resources: Sequence[Resource]) -> list[str]:
    return [resource.name for resource in resources if resource.steps]


def emulator_client(endpoint_url: str, service: str) -> Any:
    """A boto3 client of `service` on the emulator at `endpoint_url`, with its test credentials."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
