"""Reading the later waves early while nothing changes (execute.ReadAhead), and remembered reads
asked for by several threads at once (Stage.remember)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest

from deploy.execute import converge_waves
from deploy.parallel import pause
from deploy.plan import Call, Resource, converge
from deploy.report import Reporter
from deploy.stage import Stage

QUEUE = "iotile-read-ahead-test"


def queue_exists(stage: Stage) -> bool:
    names = stage.client("sqs").list_queues(QueueNamePrefix=QUEUE).get("QueueUrls", [])
    return any(url.endswith("/" + QUEUE) for url in names)


def queue_planner(stage: Stage) -> list[Resource]:
    """Makes the queue when it is missing: the change a wave makes."""
    exists = queue_exists(stage)
    steps = [] if exists else [Call("sqs", "CreateQueue", {"QueueName": QUEUE}, QUEUE, "missing")]
    return [converge("sqs", "queue", QUEUE, steps, exists=exists)]


class Watcher:
    """A planner of a later wave that reads the queue and notes each time it was asked."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[bool] = []

    def __call__(self, stage: Stage) -> list[Resource]:
        exists = queue_exists(stage)
        self.seen.append(exists)
        return [converge("watch", "queue seen", f"{self.name}:{exists}", [], exists=True)]


def names(stage: Stage, waves: list[dict[str, Callable[[Stage], list[Resource]]]]) -> list[str]:
    outcome = converge_waves(stage, waves, Reporter(as_json=True), dry_run=False)
    return [r.name for r in outcome.resources]


def test_later_waves_are_read_side_by_side_when_nothing_changes(make_stage) -> None:
    stage = make_stage("dev")
    # Both planners must be running at once to get past the barrier: without the read-ahead,
    # wave 2 would start only once wave 1 was done, and the barrier would break.
    both = threading.Barrier(2, timeout=10)

    def meeting(name: str) -> Callable[[Stage], list[Resource]]:
        def planner(stage: Stage) -> list[Resource]:
            both.wait()
            return [converge("meet", "thing", name, [], exists=True)]

        return planner

    waves = [{"first": lambda s: []}, {"one": meeting("one")}, {"two": meeting("two")}]
    assert names(stage, waves) == ["one", "two"]


def test_a_wave_after_a_change_is_read_after_it_and_not_before(make_stage, call_log) -> None:
    stage = make_stage("dev", log=call_log)
    watcher = Watcher("after")
    assert names(stage, [{"queue": queue_planner}, {"watch": watcher}]) == [QUEUE, "after:True"]
    assert watcher.seen == [True], "on a new stage nothing is read ahead, so nothing twice"


def test_what_was_read_before_a_change_is_read_again(make_stage) -> None:
    stage = make_stage("dev")
    watcher = Watcher("late")
    waves = [{"quiet": lambda s: []}, {"queue": queue_planner}, {"watch": watcher}]
    assert names(stage, waves) == [QUEUE, "late:True"]
    # Read ahead once (before wave 1 made the queue, or while it did), then again after it.
    assert len(watcher.seen) == 2 and watcher.seen[-1] is True


def test_a_planner_that_failed_ahead_is_read_again_at_its_turn(make_stage) -> None:
    stage = make_stage("dev")
    asked = Counter()

    def flaky(stage: Stage) -> list[Resource]:
        asked["flaky"] += 1
        if asked["flaky"] == 1:
            raise RuntimeError("throttled, once")
        return [converge("flaky", "thing", "steady", [], exists=True)]

    assert names(stage, [{"quiet": lambda s: []}, {"flaky": flaky}]) == ["steady"]
    assert asked["flaky"] == 2


def test_an_error_of_a_later_wave_is_still_raised(make_stage) -> None:
    stage = make_stage("dev")

    def broken(stage: Stage) -> list[Resource]:
        raise RuntimeError("AccessDenied")

    with pytest.raises(RuntimeError, match="AccessDenied"):
        names(stage, [{"quiet": lambda s: []}, {"broken": broken}])


def test_one_at_a_time_reads_nothing_ahead(make_stage, monkeypatch) -> None:
    monkeypatch.setenv("DEPLOY_MAX_WORKERS", "1")
    stage = make_stage("dev")
    threads: list[str] = []

    def where(stage: Stage) -> list[Resource]:
        threads.append(threading.current_thread().name)
        return []

    names(stage, [{"a": where}, {"b": where}, {"c": where}])
    assert threads == [threading.current_thread().name] * 3


def test_a_lookup_asked_at_once_by_two_threads_is_one_request(make_stage, call_log) -> None:
    stage = make_stage("dev", log=call_log)
    started, release = threading.Event(), threading.Event()
    follower_read = Counter()

    def slow_read() -> list[str]:
        started.set()
        release.wait(10)
        return [b["Name"] for b in stage.client("s3").list_buckets()["Buckets"]]

    def follower() -> None:
        started.wait(10)
        answers.append(stage.remember("buckets", lambda: follower_read.update(["read"]) or ["own"]))

    answers: list[list[str]] = []
    with stage.one_run():
        other = threading.Thread(target=follower)
        other.start()
        leader = threading.Thread(target=lambda: answers.append(stage.remember("buckets", slow_read)))
        leader.start()
        started.wait(10)
        pause(0.2)
        release.set()
        leader.join(10), other.join(10)
    assert answers == [[], []]
    assert not follower_read, "the second asker waited for the first one's answer"
    assert call_log.calls.count(("s3", "ListBuckets")) == 1


def test_when_the_first_asker_fails_the_others_read_for_themselves(make_stage) -> None:
    stage = make_stage("dev")
    started, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    answers: list[str] = []

    def failing_read() -> str:
        started.set()
        release.wait(10)
        raise RuntimeError("connection reset")

    def leader() -> None:
        try:
            stage.remember("key", failing_read)
        except RuntimeError as exc:
            errors.append(exc)

    def follower() -> None:
        started.wait(10)
        answers.append(stage.remember("key", lambda: "its own"))

    with stage.one_run():
        threads = [threading.Thread(target=leader), threading.Thread(target=follower)]
        for thread in threads:
            thread.start()
        started.wait(10)
        pause(0.2)
        release.set()
        for thread in threads:
            thread.join(10)
        assert stage.remember("key", lambda: "afresh") == "its own", "a good answer is kept"
    assert [str(e) for e in errors] == ["connection reset"]
    assert answers == ["its own"]
