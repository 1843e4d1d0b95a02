"""The whole-stack order: waves, concurrency of slow waits, and what counts as a change."""

from __future__ import annotations

import threading

from deploy import execute, stack
from deploy.plan import Call, Resource, Wait
from deploy.report import Reporter


def test_waves_put_dependencies_first() -> None:
    order = [area for wave in stack.WAVES for area in wave]
    assert sorted(order) == sorted(stack.AREAS), "every area is in exactly one wave"
    position = {area: n for n, wave in enumerate(stack.WAVES) for area in wave}
    for earlier, later in [
        ("iam", "rds"),
        ("network", "rds"),
        ("network", "redis"),
        ("kms", "sns"),
        ("sns", "ses"),
        ("sns", "redis"),
        ("s3", "firehose"),
        ("redshift", "firehose"),
        ("iam", "lambdas"),
        ("s3", "lambdas"),
        ("sns", "lambdas"),
        ("sqs", "lambdas"),
        ("iam", "ecs"),
        ("network", "ecs"),
        ("ecr", "ecs"),
        ("sqs", "ecs"),
        ("dynamodb", "ecs"),
        ("sns", "ecs"),
    ]:
        assert position[earlier] < position[later], (earlier, later)
    assert {"rds", "redshift", "redis", "search"} <= set(stack.WAVES[position["rds"]])


def test_slow_stores_are_awaited_together(make_stage, config_copy) -> None:
    """Four stores each creating for a while: every wait starts before any of them ends."""
    stage = make_stage(
        "dev", config_dir=config_copy("dev", "waits: {poll_seconds: 0.01, timeout_seconds: 5}\n")
    )
    started, ended = {}, {}
    all_started = threading.Barrier(4, timeout=5)

    def probe_for(name: str):
        polls = iter(["creating", "creating", "available"])

        def probe(_stage):
            if name not in started:
                started[name] = len(started)
                all_started.wait()  # would time out if the waits ran one after another
            state = next(polls)
            if state == "available":
                ended[name] = len(ended)
            return state

        return probe

    resources = [
        Resource(
            area,
            "store",
            name,
            "pending",
            (Wait(name, "creating", probe_for(name), frozenset({"available"})),),
        )
        for area, name in [("rds", "db"), ("redshift", "dw"), ("redis", "cache"), ("search", "es")]
    ]

    calls = execute.execute_resources(stage, resources, Reporter(as_json=True))

    assert calls == 0
    assert set(started) == set(ended) == {"db", "dw", "cache", "es"}


def test_only_calls_count_as_changes(make_stage) -> None:
    stage = make_stage("dev")
    wait = Wait("db", "creating", lambda _: "available", frozenset({"available"}))
    pending = Resource("rds", "instance", "db", "pending", (wait,))
    assert not execute.Outcome(stage, [pending], 0).changed
    call = Call("rds", "ModifyDBInstance", {}, "db", "backups")
    assert execute.Outcome(stage, [Resource("rds", "instance", "db", "drifted", (call, wait))], 0).changed
