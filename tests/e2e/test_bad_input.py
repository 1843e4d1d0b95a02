"""Bad input: a corpus of broken configs and arguments, each exit 2 with one line naming the file
and key (or the argument), and not a single AWS request."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import CONFIG, add_to_config

pytestmark = pytest.mark.e2e

# (case id, file to write, text appended to it, what stderr must say after "error: ")
BROKEN_CONFIGS = [
    ("unparsable-yaml", "dev.yaml", "rds: [unclosed\n", "config/dev.yaml: line "),
    ("top-level-list", "dev.yaml", None, "config/dev.yaml: top level must be a mapping"),
    ("unknown-top-key", "dev.yaml", "rdss:\n  multi_az: true\n", "config/dev.yaml: rdss: unknown key"),
    (
        "unknown-nested-key",
        "dev.yaml",
        "rds:\n  instance_clas: db.t3.micro\n",
        "config/dev.yaml: rds.instance_clas: unknown key",
    ),
    (
        "wrong-type-int",
        "dev.yaml",
        "rds:\n  allocated_storage: lots\n",
        "config/dev.yaml: rds.allocated_storage: ",
    ),
    ("wrong-type-bool", "dev.yaml", "rds:\n  multi_az: 'yes'\n", "config/dev.yaml: rds.multi_az: "),
    (
        "instance-class-pattern",
        "dev.yaml",
        "rds:\n  instance_class: m5.large\n",
        "config/dev.yaml: rds.instance_class: ",
    ),
    (
        "bucket-name-uppercase",
        "dev.yaml",
        "s3:\n  buckets:\n    media:\n      name: Iotile_Media\n",
        "config/dev.yaml: s3.buckets.media.name: bucket name 'Iotile_Media'",
    ),
    (
        "bucket-name-ip",
        "dev.yaml",
        "s3:\n  buckets:\n    reports:\n      name: 10.0.0.1\n",
        "config/dev.yaml: s3.buckets.reports.name: ",
    ),
    (
        "unknown-bucket",
        "dev.yaml",
        "s3:\n  buckets:\n    extra:\n      name: iotile-extra\n",
        "config/dev.yaml: s3.buckets.extra: unknown key",
    ),
    (
        "queue-name-space",
        "dev.yaml",
        "sqs:\n  queues:\n    worker: 'iotile worker {stage}'\n",
        "config/dev.yaml: sqs.queues.worker: queue name 'iotile worker dev'",
    ),
    (
        "topic-name-slash",
        "dev.yaml",
        "sns:\n  topics:\n    dynamodb: dyn/amo\n",
        "config/dev.yaml: sns.topics.dynamodb: ",
    ),
    (
        "receive-count-zero",
        "dev.yaml",
        "sqs:\n  max_receive_count: 0\n",
        "config/dev.yaml: sqs.max_receive_count: ",
    ),
    (
        "retention-too-long",
        "dev.yaml",
        "sqs:\n  retention_seconds: 99999999\n",
        "config/dev.yaml: sqs.retention_seconds: ",
    ),
    ("bad-region", "dev.yaml", "region: mars-1\n", "config/dev.yaml: region: "),
    (
        "cors-wildcard",
        "dev.yaml",
        "s3:\n  cors_origins: ['*']\n",
        "config/dev.yaml: s3.cors_origins: CORS origin '*'",
    ),
    (
        "cors-localhost-lookalike",
        "dev.yaml",
        "s3:\n  cors_origins: ['http://localhost.evil.example']\n",
        "config/dev.yaml: s3.cors_origins: CORS origin 'http://localhost.evil.example' must be https://",
    ),
    (
        "ssh-two-halves-of-the-internet",
        "dev.yaml",
        "network:\n  ssh_cidrs: ['0.0.0.0/1', '128.0.0.0/1']\n",
        "config/dev.yaml: network.ssh_cidrs: SSH CIDR '0.0.0.0/1' is wider than /16",
    ),
    (
        "ssh-wide-public-range",
        "dev.yaml",
        "network:\n  ssh_cidrs: ['203.0.113.0/24', '198.0.0.0/15']\n",
        "config/dev.yaml: network.ssh_cidrs: SSH CIDR '198.0.0.0/15' is wider than /16",
    ),
    (
        "rds-double-hyphen",
        "dev.yaml",
        "rds:\n  identifier: iotile--db\n",
        "config/dev.yaml: rds.identifier: ",
    ),
    (
        "backup-under-7-days",
        "dev.yaml",
        "rds:\n  backup_retention_days: 1\n",
        "config/dev.yaml: rds.backup_retention_days: ",
    ),
    ("aws-tag-prefix", "dev.yaml", "tags:\n  'aws:owner': me\n", "config/dev.yaml: tags: tag 'aws:owner'"),
    (
        "subscription-protocol",
        "dev.yaml",
        "sns:\n  staff_subscriptions:\n    - {protocol: pigeon, endpoint: roof}\n",
        "config/dev.yaml: sns.staff_subscriptions.0.protocol: ",
    ),
    (
        "schedule-name-too-long",
        "dev.yaml",
        "lambdas:\n  health_schedules: ['" + "x" * 65 + "']\n",
        "config/dev.yaml: lambdas.health_schedules.0: schedule name",
    ),
    (
        "missing-key-in-defaults",
        "defaults.yaml",
        "DELETE region",
        "config/defaults.yaml: region: required key is missing",
    ),
    (
        "secret-name-in-required",
        "dev.yaml",
        "secrets:\n  required: ['has space']\n",
        "config/dev.yaml: secrets.required.0: secret name",
    ),
]


@pytest.fixture
def broken_config(tmp_path):
    def make(file: str, text: str | None):
        folder = tmp_path / "config"
        shutil.copytree(CONFIG, folder)
        path = folder / file
        if text is None:
            path.write_text("- a\n- b\n", encoding="utf-8")
        elif text.startswith("DELETE "):
            key = text.removeprefix("DELETE ")
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            path.write_text(
                "".join(line for line in lines if not line.startswith(f"{key}:")), encoding="utf-8"
            )
        else:
            add_to_config(path, text)
        return folder

    return make


def assert_bad_input(result, emulator, expected: str) -> None:
    assert result.code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: " + expected), lines[0]
    assert "Traceback" not in result.output
    assert emulator.requests() == []


@pytest.mark.parametrize(
    ("file", "text", "expected"),
    [case[1:] for case in BROKEN_CONFIGS],
    ids=[case[0] for case in BROKEN_CONFIGS],
)
def test_broken_config_exits_2_naming_file_and_key(
    inv, emulator, broken_config, file, text, expected
) -> None:
    folder = broken_config(file, text)

    result = inv("up", "--stage", "dev", env={"DEPLOY_CONFIG_DIR": str(folder)})

    assert_bad_input(result, emulator, expected.replace("config/", f"{folder}/"))


def test_missing_stage_file(inv, emulator) -> None:
    assert_bad_input(inv("s3.create", "--stage", "qa"), emulator, "config/qa.yaml: file not found")


def test_invalid_stage_name(inv, emulator) -> None:
    assert_bad_input(inv("plan", "--stage", "Prod!"), emulator, "--stage: stage name 'Prod!'")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["s3.create", "--no-such-flag"], "No idea what '--no-such-flag' is!"),
        (["secrets.get"], "'secrets.get' did not receive required positional arguments: 'name'"),
        (["secrets.get", "bad/name", "--stage", "dev"], "NAME: secret name 'bad/name'"),
        (["secrets.import", "/nonexistent/prod.env", "--stage", "dev"], "/nonexistent/prod.env: cannot read"),
        (["no-such-task"], "No idea what 'no-such-task' is!"),
    ],
    ids=["unknown-flag", "missing-positional", "bad-secret-name", "missing-env-file", "unknown-task"],
)
def test_bad_arguments(inv, emulator, args, expected) -> None:
    assert_bad_input(inv(*args), emulator, expected)


def test_broken_local_config_does_not_start_the_emulator(inv, emulator, broken_config, tmp_path) -> None:
    folder = broken_config("local.yaml", "sqs:\n  visibility_timeout: -1\n")
    state = tmp_path / "state"

    result = inv(
        "up",
        "--stage",
        "local",
        env={
            "DEPLOY_CONFIG_DIR": str(folder),
            "DEPLOY_STATE_DIR": str(state),
            "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
        },
    )

    assert_bad_input(result, emulator, f"{folder}/local.yaml: sqs.visibility_timeout: ")
    assert not (state / "emulator.pid").exists()
