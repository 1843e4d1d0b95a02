"""An operator's run of the `inv` command on the local stage: Ctrl-C during the data stores' waits,
`rds.encrypt` interrupted and resumed, `plan` and `status` exit codes, what `up` leaves to do."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import INV, Emulator, Result

pytestmark = pytest.mark.e2e

LOCAL = ("--stage", "local")


class Running:
    """`inv ARGS` started in the background, its stderr collected line by line."""

    def __init__(self, emulator, *args: str) -> None:
        env = {**os.environ, "AWS_ENDPOINT_URL": emulator.endpoint_url, "COLUMNS": "200"}
        self.process = subprocess.Popen(
            [INV, *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.stdout = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for_line(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None, f"ended before {text!r}: {''.join(self.lines)}"
            assert time.monotonic() < deadline, f"no {text!r} in {''.join(self.lines)}"
            time.sleep(0.05)

    def interrupt(self, presses: int = 1) -> float:
        """Press Ctrl-C `presses` times, 0.1 s apart; the seconds from the first press to the end."""
        pressed = time.monotonic()
        for _ in range(presses):
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
            time.sleep(0.1)
        self.stdout = self.process.communicate(timeout=30)[0]
        self._reader.join(timeout=5)
        return time.monotonic() - pressed

    @property
    def stderr(self) -> str:
        return "".join(self.lines)


def client(emulator, service: str):
    import boto3

    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=emulator.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def rds_status(emulator, identifier: str) -> str:
    found = client(emulator, "rds").describe_db_instances(DBInstanceIdentifier=identifier)
    return found["DBInstances"][0]["DBInstanceStatus"]


# -- one stack for every test: an unencrypted instance made by hand, then `up` ---------------

HAND_MADE_PASSWORD = "set-by-hand-not-by-the-tool"


@dataclass
class Stack:
    emulator: Emulator
    up: Result

    def inv(self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
        environment = {**os.environ, "AWS_ENDPOINT_URL": self.emulator.endpoint_url, "COLUMNS": "200"}
        environment.update(env or {})
        done = subprocess.run(
            [INV, *args], cwd=ROOT, env=environment, input=stdin, capture_output=True, text=True, timeout=120
        )
        return Result(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def stack(emulator_process: Emulator) -> Stack:
    emulator_process.reset()
    client(emulator_process, "rds").create_db_instance(
        DBInstanceIdentifier="iotile-cloud-local",
        Engine="postgres",
        EngineVersion="16.8",
        DBInstanceClass="db.t4g.micro",
        AllocatedStorage=20,
        MasterUsername="iotile",
        MasterUserPassword=HAND_MADE_PASSWORD,
        StorageEncrypted=False,
    )
    made = Stack(emulator_process, Result(0, "", ""))
    made.up = made.inv("up", *LOCAL)
    assert made.up.code == 0, made.up.output
    return made


def test_up_ends_with_everything_left_to_do_by_hand(stack) -> None:
    left = stack.up.stdout.partition("left for you to do:")[2]

    assert "rds iotile-cloud-local: not encrypted: run `inv rds.encrypt --stage local`" in left
    # No hosted zone on the local stage: SES's and ACM's records are the operator's to add.
    assert '_amazonses.notify.iotile.cloud. 300 IN TXT "' in left
    assert "._domainkey.notify.iotile.cloud. 300 IN CNAME " in left
    assert "validation records of the certificate for local.iotile.cloud" in left
    assert ".acm-validations.aws." in left
    assert "secret SECRET_KEY is not set: inv secrets.set SECRET_KEY --stage local" in left


def test_plan_exits_4_and_names_the_action_when_only_the_operator_can_act(stack) -> None:
    planned = stack.inv("plan", *LOCAL)

    assert planned.code == 4, planned.output
    assert "no changes for `up` to make" in planned.stdout
    assert (
        "needs you" in planned.stdout
        and "not encrypted: run `inv rds.encrypt --stage local`" in planned.stdout
    )
    status = stack.inv("status", *LOCAL)
    assert status.code == 4, status.output


def test_drift_up_repairs_exits_3_with_values_and_only_its_area_in_the_header(stack) -> None:
    sqs = client(stack.emulator, "sqs")
    url = sqs.get_queue_url(QueueName="iotile-worker-local")["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "30"})
    sqs.tag_queue(QueueUrl=url, Tags={"Stage": "by-hand"})
    try:
        planned = stack.inv("plan", *LOCAL)
        status = stack.inv("status", *LOCAL, "--json")
    finally:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "900"})
        sqs.tag_queue(QueueUrl=url, Tags={"Stage": "local"})

    assert planned.code == 3, planned.output
    header = next(line for line in planned.stdout.splitlines() if "would change" in line)
    assert header.strip() == "local: would change sqs"
    assert "VisibilityTimeout is 30, config says 900" in planned.stdout
    assert status.code == 3
    worker = next(r for r in json.loads(status.stdout)["resources"] if r["name"] == "iotile-worker-local")
    assert worker["drift"] == [
        "VisibilityTimeout is 30, config says 900",
        "tags differ from config: tag Stage is by-hand, config says local",
    ]


def test_status_never_cuts_a_name_or_an_arn_on_a_narrow_terminal(stack) -> None:
    rows = json.loads(stack.inv("status", *LOCAL, "--json").stdout)["resources"]
    shown = stack.inv("status", *LOCAL, env={"COLUMNS": "80"}).stdout

    assert "…" not in shown
    cells = [line.split("│") for line in shown.splitlines() if line.startswith("│")]
    names = "".join(cell[3].strip() for cell in cells)
    details = "".join(cell[5].strip() for cell in cells)
    identifiers = [row["name"] for row in rows if " " not in row["name"]]
    arns = [row["detail"] for row in rows if row["detail"].startswith("arn:") and " " not in row["detail"]]
    assert len(identifiers) > 50 and len(arns) > 10
    for name in identifiers:
        assert name in names
    for arn in arns:
        assert arn in details


@pytest.mark.parametrize("presses", [3, 1])
def test_ctrl_c_ends_up_at_once_while_data_stores_are_awaited(stack, presses) -> None:
    emulator = stack.emulator
    emulator.set_rds_seconds(600)
    # The instance changed by hand stays `modifying` (10 minutes), and a tag of the cache group
    # drifts too: two resources of the data store wave at once, so the wait runs on a pool thread.
    client(emulator, "rds").modify_db_instance(
        DBInstanceIdentifier="iotile-cloud-local", BackupRetentionPeriod=3, ApplyImmediately=True
    )
    elasticache = client(emulator, "elasticache")
    group = elasticache.describe_replication_groups(ReplicationGroupId="iotile-redis-local")
    arn = group["ReplicationGroups"][0]["ARN"]
    elasticache.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": "Stage", "Value": "by-hand"}])
    run = Running(emulator, "up", *LOCAL)
    run.wait_for_line("waiting for iotile-cloud-local: modifying")

    seconds = run.interrupt(presses)
    emulator.set_rds_seconds(0)

    assert seconds < 2.0, run.stderr
    assert run.process.returncode == 130, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert "interrupted: rerun the same task to resume" in run.stderr
    if presses == 1:
        # The rerun resumes: it finds the instance as the interrupted run left it, and converges.
        again = stack.inv("up", *LOCAL)
        assert again.code == 0, again.output
        found = client(emulator, "rds").describe_db_instances(DBInstanceIdentifier="iotile-cloud-local")
        assert found["DBInstances"][0]["BackupRetentionPeriod"] == 7
        assert rds_status(emulator, "iotile-cloud-local") == "available"


def test_rds_encrypt_asks_for_stopped_writes_resumes_after_ctrl_c_and_reruns_clean(stack, tmp_path) -> None:
    emulator = stack.emulator
    emulator.clear()
    unconfirmed = stack.inv("rds.encrypt", *LOCAL)
    assert unconfirmed.code == 2, unconfirmed.output
    assert "stop the app's writes" in unconfirmed.stderr and "--yes" in unconfirmed.stderr
    assert emulator.mutating() == []

    # Interrupted while the snapshot is being made; the wait line names the snapshot.
    emulator.set_rds_seconds(600)
    run = Running(emulator, "rds.encrypt", *LOCAL, "--yes")
    run.wait_for_line("waiting for snapshot iotile-cloud-local-encrypted-from-iotile-cloud-local: creating")
    assert run.interrupt() < 2.0 and run.process.returncode == 130, run.stderr

    emulator.set_rds_seconds(0)
    emulator.clear()
    resumed = stack.inv("rds.encrypt", *LOCAL, "--yes")
    assert resumed.code == 0, resumed.output
    made = [m.removeprefix("rds:") for m in emulator.mutating() if m.startswith("rds:")]
    # The snapshot is not taken again: the run goes on from the copy (and then storage autoscaling).
    assert made == ["CopyDBSnapshot", "RestoreDBInstanceFromDBSnapshot", "ModifyDBInstance"]

    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    emulator.clear()
    again = stack.inv("rds.encrypt", *LOCAL, env={"DEPLOY_CONFIG_DIR": str(config)})
    assert again.code == 0, again.output
    assert emulator.mutating() == []
    left = " ".join(again.stdout.partition("left to do:")[2].split())
    assert f"in {config / 'local.yaml'} and run `inv up --stage local`" in left
    options = f"--region us-east-1 --endpoint-url {emulator.endpoint_url}"
    assert (
        f"--db-instance-identifier iotile-cloud-local --no-deletion-protection --apply-immediately {options}`"
        in left
    )
    assert f"--final-db-snapshot-identifier iotile-cloud-local-final {options}`" in left
    # Made by hand with its own password: the copy has that one, not a stored one.
    assert "which this tool did not generate" in left and "is unchanged" not in left
    assert "Beanstalk takes the database endpoint" in left and "workers" in left
    assert rds_status(emulator, "iotile-cloud-local-encrypted") == "available"
