"""The `inv` command against the emulator: up twice, plan exit codes, dry runs, status, secrets."""

from __future__ import annotations

import json

import pytest

from tests.helpers import emulator_client

pytestmark = pytest.mark.e2e

CREATE_TASKS = [
    "iam.create",
    "network.create",
    "create-security-groups",
    "kms.create",
    "s3.create",
    "sns.create",
    "sqs.create",
    "dynamodb.create",
    "ses.create",
    "rds.create",
    "create-rds-instance",
    "redshift.create",
    "create-redshift-cluster",
    "create-streamtimeseries-redshift",
    "redis.create",
    "create-redis-cluster",
    "search.create",
    "firehose.create",
    "create-firehose-stream",
    "up",
]


def test_up_then_up_again_changes_nothing(inv, emulator) -> None:
    first = inv("up", "--stage", "dev")
    assert first.code == 0, first.output
    made = emulator.mutating()
    assert "s3:PUT /iotile-cloud-media" in made
    assert len([m for m in made if m.endswith(":CreateQueue")]) == 4
    assert (
        len([m for m in made if m.endswith(":CreateTopic")]) == 7
    )  # six encrypted, and the plain one of ElastiCache events
    for operation in (
        "iam:CreateRole",
        "ec2:CreateSecurityGroup",
        "kms:CreateKey",
        "dynamodb:CreateTable",
        "ses:VerifyDomainIdentity",
        "rds:CreateDBInstance",
        "redshift:CreateCluster",
        "elasticache:CreateReplicationGroup",
        "es:POST /2021-01-01/opensearch/domain",  # a REST API: named by method and path
        "firehose:CreateDeliveryStream",
    ):
        assert operation in made, operation
    emulator.clear()

    second = inv("up", "--stage", "dev", "--json")

    assert second.code == 0, second.output
    summary = last_json_document(second.stdout)
    assert summary["changes"] == [] and summary["calls_made"] == 0
    assert emulator.requests(), "the second run must read the stack"
    assert emulator.mutating() == []
    # The read budget: on average at most 2 reads a managed resource (lookups other areas repeat
    # are read once a run; list calls stand in for per-item reads where AWS has them).
    reads, resources = len(emulator.requests()), summary["resources"]
    assert resources >= 100, "the whole stack"
    assert reads <= 2 * resources, f"{reads} reads for {resources} resources"


def last_json_document(text: str) -> dict:
    """The last of the JSON documents `--json` prints one after another: the run's summary."""
    decoder, document, at = json.JSONDecoder(), None, 0
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        document, at = decoder.raw_decode(text, at)
    return document


def test_plan_exits_3_with_changes_pending_and_0_after_up(inv, emulator) -> None:
    pending = inv("plan", "--stage", "dev")
    assert pending.code == 3, pending.output
    assert "CreateBucket" in pending.stdout
    assert emulator.mutating() == []

    assert inv("up", "--stage", "dev").code == 0
    settled = inv("plan", "--stage", "dev")
    assert settled.code == 0, settled.output


@pytest.mark.parametrize("task", CREATE_TASKS)
def test_dry_run_makes_no_mutating_call(inv, emulator, task) -> None:
    result = inv(task, "--stage", "dev", "--dry-run", "--json")

    assert result.code == 0, result.output
    assert json.loads(result.stdout)["changes"], "a dry run on an empty account plans changes"
    assert emulator.requests(), "a dry run reads"
    assert emulator.mutating() == []


def test_status_reports_missing_then_present_then_drifted(inv, emulator) -> None:
    before = json.loads(inv("status", "--stage", "dev", "--json").stdout)["resources"]
    assert {r["state"] for r in before} == {"missing"}

    inv("up", "--stage", "dev")
    sqs = emulator_client(emulator.endpoint_url, "sqs")
    url = sqs.get_queue_url(QueueName="iotile-worker-dev")["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "1"})

    after = json.loads(inv("status", "--stage", "dev", "--json").stdout)["resources"]
    states = {(r["area"], r["name"]): r["state"] for r in after}
    assert states[("sqs", "iotile-worker-dev")] == "drifted"
    assert states[("s3", "iotile-cloud-media")] == "present"
    assert states[("secrets", "SECRET_KEY")] == "missing"
    worker = next(r for r in after if r["name"] == "iotile-worker-dev")
    assert worker["drift"] == ["VisibilityTimeout is 1, config says 900"]


def test_area_tasks_converge_only_their_area(inv, emulator) -> None:
    assert inv("sqs.create", "--stage", "dev").code == 0
    made = emulator.mutating()
    assert made and all(m.startswith("sqs:") for m in made)


def test_secret_values_never_reach_output(inv, emulator, tmp_path) -> None:
    value = "pa55-Wörd-that-must-not-leak-81723"
    env_file = tmp_path / "prod.env"
    env_file.write_text(f"API_TOKEN='{value}-2'\n", encoding="utf-8")

    runs = [
        inv("secrets.set", "SECRET_KEY", "--stage", "dev", stdin=value + "\n"),
        inv("secrets.set", "SECRET_KEY", "--stage", "dev", stdin=value + "\n"),
        inv("secrets.get", "SECRET_KEY", "--stage", "dev"),
        inv("secrets.get", "SECRET_KEY", "--stage", "dev", "--json"),
        inv("secrets.list", "--stage", "dev"),
        inv("secrets.import", str(env_file), "--stage", "dev"),
        inv("up", "--stage", "dev"),
        inv("status", "--stage", "dev"),
    ]

    assert [r.code for r in runs] == [0] * len(runs), [r.output for r in runs]
    assert "created" in runs[0].stdout and "unchanged" in runs[1].stdout
    assert "********" in runs[2].stdout
    for run in runs:
        assert value not in run.output
    assert value not in emulator.log_file.read_text(encoding="utf-8", errors="replace")
    revealed = inv("secrets.get", "SECRET_KEY", "--stage", "dev", "--reveal")
    assert value in revealed.stdout


def test_secret_from_the_command_line_is_impossible(inv, emulator) -> None:
    result = inv("secrets.set", "SECRET_KEY", "--value", "oops", "--stage", "dev", stdin="")
    assert result.code == 2
    assert emulator.requests() == []


def test_secret_delete_needs_confirmation(inv, emulator) -> None:
    inv("secrets.set", "OLD", "--stage", "dev", stdin="x\n")
    refused = inv("secrets.delete", "OLD", "--stage", "dev", stdin="")
    assert refused.code == 2 and "--yes" in refused.stderr
    assert inv("secrets.delete", "OLD", "--stage", "dev", "--yes").code == 0
    assert "no secrets set" in inv("secrets.list", "--stage", "dev").stdout


def test_unreachable_endpoint_is_one_line_with_code_and_hint(inv) -> None:
    result = inv("s3.status", "--stage", "dev", env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert result.code == 1
    assert result.stderr.startswith("error: EndpointUnreachable")
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_credentials_is_one_line(inv) -> None:
    env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    result = inv("sqs.status", "--stage", "dev", env=env)
    assert result.code == 1, result.output
    assert result.stderr.startswith("error: NoCredentials")
    assert "Traceback" not in result.output


def test_config_show_and_validate(inv) -> None:
    shown = json.loads(inv("config.show", "--stage", "prod", "--json").stdout)
    assert shown["sqs"]["queues"]["worker"] == "iotile-worker-prod"
    validated = inv("config.validate")
    assert validated.code == 0
    assert validated.stdout.split() == ["ok:", "dev", "ok:", "local", "ok:", "prod", "ok:", "stage"]


def test_local_stage_starts_its_own_emulator_and_converges(inv, tmp_path) -> None:
    from tests.e2e.conftest import free_port

    port = free_port()
    env = {
        "DEPLOY_STATE_DIR": str(tmp_path / "state"),
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        # Real credentials must never be sent to the emulator; the local stage uses its own.
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
    }
    try:
        first = inv("up", "--stage", "local", env=env)
        assert first.code == 0, first.output
        assert (tmp_path / "state" / "emulator.pid").exists()
        running = inv("local.status", "--json", env=env)
        assert json.loads(running.stdout)["port"] == port

        again = inv("plan", "--stage", "local", env=env)
        assert again.code == 0, again.output

        assert inv("local.reset", env=env).code == 0
        assert inv("plan", "--stage", "local", env=env).code == 3
    finally:
        stopped = inv("local.stop", env=env)
    assert "emulator stopped" in stopped.stdout
    assert "not running" in inv("local.status", env=env).stdout
