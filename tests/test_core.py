"""The plan/execute core, the stage's guard rails and the error mapping."""

from __future__ import annotations

import itertools

import pytest

from deploy import errors
from deploy.execute import DryRunExecutor, Executor
from deploy.plan import Call, Deferred, Resource, Wait, converge, dependency_levels
from deploy.report import Reporter
from deploy.stage import MutationBlocked, Stage, is_mutating


@pytest.mark.parametrize(
    ("operation", "mutating"),
    [
        ("CreateBucket", True),
        ("PutParameter", True),
        ("DeleteQueue", True),
        ("TagResource", True),
        ("GetQueueAttributes", False),
        ("DescribeDBInstances", False),
        ("ListTopics", False),
        ("HeadBucket", False),
    ],
)
def test_is_mutating(operation: str, mutating: bool) -> None:
    assert is_mutating(operation) is mutating


def test_sensitive_parameters_are_never_shown() -> None:
    call = Call("ssm", "PutParameter", {"Name": "/x/y", "Value": "hunter2"}, "/x/y", "new", ("Value",))
    assert "hunter2" not in repr(call.describe())
    assert call.describe()["params"]["Name"] == "/x/y"
    nested = Call(
        "firehose",
        "CreateDeliveryStream",
        {"Dest": {"Password": "hunter2", "User": "u"}},
        "s",
        "new",
        ("Dest.Password",),
    )
    assert nested.describe()["params"]["Dest"] == {"Password": "********", "User": "u"}
    assert nested.params["Dest"]["Password"] == "hunter2", "the call itself keeps the value"


def test_converge_states() -> None:
    step = Call("sqs", "TagQueue", {}, "q", "tags differ")
    assert converge("sqs", "queue", "q", [], exists=True).state == "present"
    assert converge("sqs", "queue", "q", [step], exists=True).drift == ("tags differ",)
    assert converge("sqs", "queue", "q", [step], exists=False).state == "missing"
    wait = Wait("db", "still creating", lambda _: "creating", frozenset({"available"}))
    pending = converge("rds", "instance", "db", [wait], exists=True)
    assert (pending.state, pending.drift, pending.calls) == ("pending", ("still creating",), [])


def test_read_only_stage_refuses_mutating_calls(make_stage) -> None:
    stage = make_stage("dev", read_only=True)
    stage.client("s3").list_buckets()
    with pytest.raises(MutationBlocked):
        stage.client("s3").create_bucket(Bucket="nope")


def test_executor_makes_calls_and_dry_run_makes_none(make_stage, call_log) -> None:
    stage: Stage = make_stage("dev", log=call_log)
    steps = [Call("sqs", "CreateQueue", {"QueueName": "q1"}, "q1", "missing")]

    DryRunExecutor(stage, Reporter(as_json=True)).run(steps)
    assert call_log.calls == []

    executor = Executor(stage, Reporter(as_json=True))
    executor.run(steps)
    assert call_log.calls == [("sqs", "CreateQueue")]
    assert executor.made == steps


@pytest.fixture
def quick(make_stage, config_copy) -> Stage:
    """A stage whose waits poll every 10 ms and give up after a second."""
    return make_stage(
        "dev", config_dir=config_copy("dev", "waits: {poll_seconds: 0.01, timeout_seconds: 1}\n")
    )


def test_wait_polls_until_ready(quick) -> None:
    states = iter(["creating", "creating", "available"])
    wait = Wait("db", "until available", lambda _: next(states), frozenset({"available"}))
    Executor(quick, Reporter(as_json=True)).run([wait])
    assert next(states, "drained") == "drained"


def test_wait_timeout_names_resource_and_state(quick) -> None:
    wait = Wait("iotile-db", "x", lambda _: "modifying", frozenset({"available"}), timeout_seconds=0.05)
    with pytest.raises(errors.WaitTimeout, match="iotile-db: still modifying"):
        Executor(quick, Reporter(as_json=True)).run([wait])


def test_wait_fails_fast_on_a_failed_state(quick) -> None:
    counter = itertools.count()
    wait = Wait("db", "x", lambda _: f"failed-{next(counter)}", frozenset({"ok"}), frozenset({"failed-0"}))
    with pytest.raises(errors.AwsError, match="went to state failed-0"):
        Executor(quick, Reporter(as_json=True)).run([wait])


def test_botocore_errors_become_codes_and_hints() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "nope."}}, "CreateBucket")
    mapped = errors.from_botocore(denied)
    assert mapped.exit_code == 1
    assert str(mapped).startswith("AccessDenied (CreateBucket): nope.")
    assert "AWS_PROFILE" in str(mapped)
    assert "NoCredentials" in str(errors.from_botocore(NoCredentialsError()))
    unreachable = errors.from_botocore(EndpointConnectionError(endpoint_url="http://x"))
    assert "EndpointUnreachable" in str(unreachable)
    throttled = ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "ListTopics")
    assert "rerun" in str(errors.from_botocore(throttled))


def test_tags_of_stage_and_shared_resources(make_stage) -> None:
    stage = make_stage("prod")
    assert stage.tags("iotile-worker-prod") == {
        "Environment": "production",
        "Project": "iotile-cloud",
        "ManagedBy": "iotile-deploy",
        "Stage": "prod",
    }
    assert stage.tags("iotile-cloud-media") == {
        "Project": "iotile-cloud",
        "ManagedBy": "iotile-deploy",
        "Stage": "shared",
    }


def test_account_id_is_read_once(make_stage, call_log) -> None:
    stage = make_stage("dev", log=call_log)
    assert stage.arn("sqs", "q") == f"arn:aws:sqs:us-east-1:{stage.account_id}:q"
    assert call_log.calls == [("sts", "GetCallerIdentity")]


def test_reads_are_remembered_within_one_run_until_a_change(make_stage, call_log) -> None:
    stage = make_stage("dev", log=call_log)
    s3 = stage.client("s3")

    def buckets() -> list[str]:
        return stage.remember("buckets", lambda: [b["Name"] for b in s3.list_buckets()["Buckets"]])

    buckets(), buckets()
    assert len(call_log.calls) == 2, "outside a run nothing is kept"
    with stage.one_run():
        call_log.clear()
        assert buckets() == buckets() == []
        assert call_log.calls == [("s3", "ListBuckets")]
        s3.create_bucket(Bucket="made")
        assert buckets() == ["made"], "a mutating call of the stage drops what was kept"
        with stage.one_run():
            assert buckets() == ["made"]
        assert len(call_log.calls) == 3, "a nested run keeps what the outer one read"
        probe = Wait("buckets", "made", lambda later: str(len(buckets())), frozenset({"1"}))
        Executor(stage, Reporter(as_json=True)).run([probe])
        assert len(call_log.calls) == 4, "each probe of a wait reads afresh"
    buckets()
    assert len(call_log.calls) == 5, "a run forgets all when it ends"


def test_max_workers_one_runs_everything_in_the_calling_thread(monkeypatch) -> None:
    import threading

    from deploy.parallel import map_concurrently

    def thread_of(_: int) -> str:
        return threading.current_thread().name

    monkeypatch.setenv("DEPLOY_MAX_WORKERS", "1")
    assert set(map_concurrently(thread_of, range(4))) == {threading.current_thread().name}
    monkeypatch.setenv("DEPLOY_MAX_WORKERS", "none")
    with pytest.raises(errors.ArgumentError, match="DEPLOY_MAX_WORKERS: expected a whole number"):
        map_concurrently(thread_of, range(2))
    monkeypatch.delenv("DEPLOY_MAX_WORKERS")
    both = threading.Barrier(2, timeout=5)
    assert map_concurrently(lambda n: both.wait() is not None, range(2)) == [True, True]


def test_dependency_levels_put_dependencies_first() -> None:
    dlq = Resource("sqs", "dead-letter queue", "q-dlq", "missing")
    queue = Resource("sqs", "queue", "q", "missing", depends_on=("q-dlq",))
    other = Resource("sqs", "queue", "r", "drifted", depends_on=("r-dlq",))  # r-dlq needs nothing
    bucket = Resource("s3", "bucket", "q-dlq", "missing")  # same name, other area: no link

    levels = dependency_levels([queue, other, dlq, bucket])

    assert levels == [[other, dlq, bucket], [queue]]


def test_dependency_cycle_is_reported() -> None:
    a = Resource("x", "k", "a", "missing", depends_on=("b",))
    b = Resource("x", "k", "b", "missing", depends_on=("a",))
    with pytest.raises(ValueError, match="cycle"):
        dependency_levels([a, b])


def test_deferred_parameters_resolve_when_the_call_runs(make_stage, call_log) -> None:
    stage = make_stage("dev", log=call_log)
    queue_url = Deferred(
        "url of queue q1", lambda s: s.client("sqs").get_queue_url(QueueName="q1")["QueueUrl"]
    )
    steps = [
        Call("sqs", "CreateQueue", {"QueueName": "q1"}, "q1", "missing"),
        Call("sqs", "TagQueue", {"QueueUrl": queue_url, "Tags": {"a": "b"}}, "q1", "tags"),
    ]
    assert steps[1].describe()["params"]["QueueUrl"] == "<url of queue q1>"

    Executor(stage, Reporter(as_json=True)).run(steps)

    url = stage.client("sqs").get_queue_url(QueueName="q1")["QueueUrl"]
    assert stage.client("sqs").list_queue_tags(QueueUrl=url)["Tags"] == {"a": "b"}
