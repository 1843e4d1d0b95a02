"""Bad input: a corpus of broken configs and arguments, each exit 2 with one line naming the file
and key (or the argument), and not a single AWS request."""

from __future__ import annotations

import shutil

import pytest

from deploy.config import load_config
from deploy.errors import EXIT_BAD_INPUT, ConfigError
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
        "password-in-environment",
        "dev.yaml",
        "ecs:\n  environment:\n    DB_PASSWORD: hunter2hunter2\n",
        "config/dev.yaml: ecs.environment: DB_PASSWORD looks like a secret",
    ),
    (
        "redshift-open-to-the-world",
        "dev.yaml",
        "firehose:\n  delivery: direct\n  direct_cidrs: ['0.0.0.0/0']\n",
        "config/dev.yaml: firehose.direct_cidrs: CIDR '0.0.0.0/0'",
    ),
    (
        "secret-name-in-required",
        "dev.yaml",
        "secrets:\n  required: ['has space']\n",
        "config/dev.yaml: secrets.required.0: secret name",
    ),
]


# A stage file each, over the defaults: every top-level section, wrong types, unknown keys, names
# AWS refuses, CIDRs open to the world, impossible sizes, secrets written into config.
# (case id, text of the stage file, key named ("" when the message names it), start of the message)
STAGE_CORPUS = [
    ("project-uppercase", "project: IOTile\n", "project", "String should match pattern"),
    ("profile-number", "profile: 42\n", "profile", "must be text, not a number"),
    ("endpoint-ftp", "endpoint_url: ftp://10.0.0.1:21\n", "endpoint_url", "String should match"),
    ("domain-no-tld", "domain: localhost\n", "domain", "String should match pattern"),
    (
        "emulator-enabled-text",
        "emulator:\n  enabled: maybe\n",
        "emulator.enabled",
        "Input should be a valid boolean",
    ),
    ("aws-retry-mode", "aws:\n  retry_mode: legacy\n", "aws.retry_mode", "Input should be"),
    (
        "waits-poll-zero",
        "waits:\n  poll_seconds: 0\n",
        "waits.poll_seconds",
        "Input should be greater than 0",
    ),
    ("waits-section-list", "waits: [5, 600]\n", "waits", "must be a section of `key: value` lines"),
    (
        "iam-role-space",
        "iam:\n  firehose_role: 'iotile firehose'\n",
        "iam.firehose_role",
        "IAM name 'iotile firehose'",
    ),
    ("iam-role-too-long", "iam:\n  redshift_role: '" + "r" * 65 + "'\n", "iam.redshift_role", "IAM name"),
    (
        "iam-unknown-lambda-role",
        "iam:\n  lambda_roles:\n    resize: iotile-resize\n",
        "iam.lambda_roles.resize",
        "unknown key",
    ),
    (
        "dynamodb-capacity-min-above-max",
        "dynamodb:\n  read_capacity: {min: 60, max: 50, target: 70}\n",
        "dynamodb.read_capacity",
        "min (60) is above max (50)",
    ),
    (
        "dynamodb-table-short",
        "dynamodb:\n  tables:\n    filter_log: ab\n",
        "dynamodb.tables.filter_log",
        "table name 'ab'",
    ),
    (
        "dynamodb-capacity-mode",
        "dynamodb:\n  capacity_mode: serverless\n",
        "dynamodb.capacity_mode",
        "Input should be",
    ),
    ("ses-domain-space", "ses:\n  domain: 'notify me'\n", "ses.domain", "String should match pattern"),
    (
        "dns-zone-uppercase",
        "dns:\n  hosted_zone: IOTile.Cloud\n",
        "dns.hosted_zone",
        "String should match pattern",
    ),
    (
        "acm-eleven-names",
        "acm:\n  domains: [" + ", ".join(f"a{i}.iotile.cloud" for i in range(11)) + "]\n",
        "acm.domains",
        "List should have at most 10 items",
    ),
    (
        "kms-alias-prefix",
        "kms:\n  notifications:\n    alias: iotile-notify\n",
        "kms.notifications.alias",
        "String should match",
    ),
    (
        "kms-principal-not-aws",
        "kms:\n  notifications:\n    service_principals: [evil.example.com]\n",
        "kms.notifications.service_principals.0",
        "String should match",
    ),
    (
        "rds-storage-below-minimum",
        "rds:\n  allocated_storage: 10\n",
        "rds.allocated_storage",
        "Input should be greater than or equal to 20",
    ),
    (
        "rds-ceiling-below-storage",
        "rds:\n  allocated_storage: 200\n  max_allocated_storage: 100\n",
        "rds",
        "max_allocated_storage is below allocated_storage",
    ),
    (
        "rds-password-in-config",
        "rds:\n  master_password: hunter2hunter2\n",
        "rds.master_password",
        "unknown key; a secret never goes in config",
    ),
    (
        "redshift-identifier-uppercase",
        "redshift:\n  stream_data:\n    identifier: Iotile-Stream\n",
        "redshift.stream_data.identifier",
        "cluster identifier 'Iotile-Stream'",
    ),
    (
        "redshift-no-nodes",
        "redshift:\n  stream_data:\n    nodes: 0\n",
        "redshift.stream_data.nodes",
        "Input should be greater than or equal to 1",
    ),
    (
        "redshift-password-value",
        "redshift:\n  stream_data:\n    password: 'Sup3rS3cret!'\n",
        "redshift.stream_data.password",
        "unknown key; a secret never goes in config",
    ),
    (
        "redis-too-many-replicas",
        "redis:\n  replicas: 9\n",
        "redis.replicas",
        "Input should be less than or equal to 5",
    ),
    (
        "redis-failover-no-replica",
        "redis:\n  replicas: 0\n  automatic_failover: true\n",
        "redis",
        "automatic_failover needs at least 1 replica",
    ),
    (
        "redis-auth-token-value",
        "redis:\n  auth_token: 'abcdefghijklmnopqrstuvwxyz012345'\n",
        "redis.auth_token",
        "unknown key; a secret never goes in config",
    ),
    ("search-odd-instances", "search:\n  instances: 3\n", "search", "instances must be 1 or even"),
    (
        "search-domain-too-long",
        "search:\n  domain: iotile-search-domain-far-too-long\n",
        "search.domain",
        "search domain",
    ),
    (
        "search-volume-tiny",
        "search:\n  volume_gb: 1\n",
        "search.volume_gb",
        "Input should be greater than or equal to 10",
    ),
    (
        "firehose-buffer-too-big",
        "firehose:\n  stream_data:\n    buffer_mb: 500\n",
        "firehose.stream_data.buffer_mb",
        "Input should be less than or equal to 128",
    ),
    (
        "firehose-stream-name-space",
        "firehose:\n  timeseries:\n    name: 'iotile stream'\n",
        "firehose.timeseries.name",
        "stream name 'iotile stream'",
    ),
    (
        "firehose-direct-world",
        "firehose:\n  delivery: direct\n  direct_cidrs: ['0.0.0.0/0']\n",
        "firehose.direct_cidrs",
        "CIDR '0.0.0.0/0': Redshift's port 5439 must never be open to the world",
    ),
    (
        "firehose-direct-wide",
        "firehose:\n  delivery: direct\n  direct_cidrs: ['52.0.0.0/8']\n",
        "firehose.direct_cidrs",
        "CIDR '52.0.0.0/8' is wider than /24",
    ),
    (
        "firehose-direct-private",
        "firehose:\n  delivery: direct\n  direct_cidrs: ['10.1.0.0/24']\n",
        "firehose.direct_cidrs",
        "CIDR '10.1.0.0/24' is not a public range",
    ),
    (
        "firehose-delivery-mode",
        "firehose:\n  delivery: jdbc\n",
        "firehose.delivery",
        "Input should be 'staged' or 'direct'",
    ),
    (
        "eb-min-above-max",
        "eb:\n  min_instances: 5\n  max_instances: 4\n",
        "eb",
        "min_instances (5) is above max_instances (4)",
    ),
    ("eb-environment-short", "eb:\n  environment: abc\n", "eb.environment", "env 'abc'"),
    (
        "eb-password-variable",
        "eb:\n  environment_variables:\n    DATABASE_PASSWORD: hunter2hunter2\n",
        "",
        "eb.environment_variables: DATABASE_PASSWORD looks like a secret",
    ),
    (
        "eb-url-with-password",
        "eb:\n  environment_variables:\n    DATABASE_URL: 'postgres://iotile:hunter2@db:5432/iotile'\n",
        "",
        "eb.environment_variables: DATABASE_URL holds a password",
    ),
    ("ecs-memory-tiny", "ecs:\n  memory: 64\n", "ecs.memory", "Input should be greater than or equal to 128"),
    (
        "ecs-instances-min-above-max",
        "ecs:\n  min_instances: 4\n  max_instances: 3\n",
        "ecs",
        "min_instances must not be above max_instances",
    ),
    (
        "ecs-repository-uppercase",
        "ecs:\n  repository: IOTile-Worker\n",
        "ecs.repository",
        "repository name 'IOTile-Worker'",
    ),
    ("ecs-cluster-space", "ecs:\n  cluster: 'iotile cluster'\n", "ecs.cluster", "ECS name 'iotile cluster'"),
    (
        "ecs-access-key-value",
        "ecs:\n  environment:\n    UPLOADER: AKIAIOSFODNN7EXAMPLE\n",
        "",
        "ecs.environment: UPLOADER holds an AWS access key id",
    ),
    ("ecs-workers-text", "ecs:\n  workers: three\n", "ecs.workers", "Input should be a valid integer"),
    (
        "lambdas-function-dot",
        "lambdas:\n  functions:\n    s3image: iotile.s3image\n",
        "lambdas.functions.s3image",
        "function name 'iotile.s3image'",
    ),
    (
        "lambdas-retention-42",
        "lambdas:\n  log_retention_days: 42\n",
        "lambdas.log_retention_days",
        "42 is not a CloudWatch Logs retention",
    ),
    (
        "lambdas-secret-variable",
        "lambdas:\n  environment:\n    health:\n      SLACK_TOKEN: xoxb-123456789\n",
        "lambdas.environment",
        "health.SLACK_TOKEN looks like a secret",
    ),
    (
        "lambdas-deployment-bucket",
        "lambdas:\n  deployment_buckets:\n    health: Cloud_Serverless\n",
        "lambdas.deployment_buckets.health",
        "bucket name 'Cloud_Serverless'",
    ),
    ("cdn-price-class", "cdn:\n  price_class: PriceClass_50\n", "cdn.price_class", "Input should be"),
    (
        "cdn-no-upload-workers",
        "cdn:\n  statics:\n    upload_workers: 0\n",
        "cdn.statics.upload_workers",
        "Input should be greater than or equal to 1",
    ),
    (
        "network-ssh-world",
        "network:\n  ssh_cidrs: ['0.0.0.0/0']\n",
        "network.ssh_cidrs",
        "SSH CIDR '0.0.0.0/0' would open SSH to the whole internet",
    ),
    (
        "network-ssh-world-v6",
        "network:\n  ssh_cidrs: ['::/0']\n",
        "network.ssh_cidrs",
        "SSH CIDR '::/0' would open SSH",
    ),
    (
        "network-vpc-public-range",
        "network:\n  cidr: 52.20.0.0/16\n",
        "network.cidr",
        "VPC CIDR '52.20.0.0/16' must be a range",
    ),
    (
        "network-one-zone",
        "network:\n  zones: 1\n",
        "network.zones",
        "Input should be greater than or equal to 2",
    ),
    (
        "sqs-queue-too-long",
        "sqs:\n  queues:\n    report: '" + "q" * 80 + "'\n",
        "sqs.queues.report",
        "queue name",
    ),
    (
        "sns-topic-space",
        "sns:\n  topics:\n    staff_notifications: 'Staff Notifications'\n",
        "sns.topics.staff_notifications",
        "topic name 'Staff Notifications'",
    ),
    (
        "secrets-unknown-reader",
        "secrets:\n  readers:\n    nginx: [SECRET_KEY]\n",
        "secrets.readers.nginx",
        "Input should be 'app', 'workers'",
    ),
    (
        "s3-bucket-too-short",
        "s3:\n  buckets:\n    statics:\n      name: ab\n",
        "s3.buckets.statics.name",
        "bucket name 'ab'",
    ),
    (
        "tags-not-a-mapping",
        "tags: [Project, iotile]\n",
        "tags",
        "must be a section of `key: value` lines, not a list",
    ),
    (
        "firehose-direct-unknown-region",
        "region: ap-southeast-3\nfirehose:\n  delivery: direct\n",
        "",
        "firehose.direct_cidrs: the published Firehose range for ap-southeast-3",
    ),
    (
        "firehose-cidrs-when-staged",
        "firehose:\n  direct_cidrs: ['52.70.63.192/27']\n",
        "firehose",
        "direct_cidrs is for delivery: direct only",
    ),
]


def _expected(folder, stage: str, key: str, message: str) -> str:
    return f"{folder}/{stage}.yaml: {key + ': ' if key else ''}{message}"


@pytest.fixture(scope="module")
def corpus_folder(tmp_path_factory):
    """defaults.yaml and one stage file per corpus case, stage cNN for case NN."""
    folder = tmp_path_factory.mktemp("corpus") / "config"
    folder.mkdir()
    shutil.copy(CONFIG / "defaults.yaml", folder)
    for number, (_, text, _, _) in enumerate(STAGE_CORPUS):
        (folder / f"c{number:02d}.yaml").write_text(text, encoding="utf-8")
    return folder


def test_corpus_covers_every_section() -> None:
    sections = {line.split(":")[0] for line in (CONFIG / "defaults.yaml").read_text().splitlines()}
    sections = {name for name in sections if name and not name.startswith((" ", "#"))}
    named = {text.split(":")[0] for _, text, _, _ in STAGE_CORPUS}
    assert sections - named == set()
    assert len(STAGE_CORPUS) + len(BROKEN_CONFIGS) >= 30


@pytest.mark.parametrize(
    ("number", "key", "message"),
    [(number, case[2], case[3]) for number, case in enumerate(STAGE_CORPUS)],
    ids=[case[0] for case in STAGE_CORPUS],
)
def test_stage_corpus_in_process(corpus_folder, number, key, message) -> None:
    stage = f"c{number:02d}"

    with pytest.raises(ConfigError) as caught:
        load_config(stage, corpus_folder)

    assert caught.value.exit_code == EXIT_BAD_INPUT
    assert str(caught.value).startswith(_expected(corpus_folder, stage, key, message)), str(caught.value)
    assert "\n" not in str(caught.value)


def test_stage_corpus_through_the_cli(inv, emulator, corpus_folder) -> None:
    """One `inv config.validate` over every case: one line each, exit 2, not one AWS request."""
    result = inv("config.validate", env={"DEPLOY_CONFIG_DIR": str(corpus_folder)})

    assert result.code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(STAGE_CORPUS) + 1, result.stderr
    for number, (line, (_, _, key, message)) in enumerate(zip(lines, STAGE_CORPUS, strict=False)):
        assert line.startswith("error: " + _expected(corpus_folder, f"c{number:02d}", key, message)), line
    assert lines[-1] == f"error: {len(STAGE_CORPUS)} of {len(STAGE_CORPUS)} stage(s) invalid"
    assert "Traceback" not in result.output
    assert emulator.requests() == []


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
        (["secrets.set", "has%space", "--stage", "dev"], "NAME: secret name 'has%space'"),
        (["up", "--stage", ""], "--stage: this task changes AWS resources and will not guess the stage"),
        (
            ["plan", "--stage", "averyveryverylongstagename"],
            "--stage: stage name 'averyveryverylongstagename'",
        ),
    ],
    ids=[
        "unknown-flag",
        "missing-positional",
        "bad-secret-name",
        "missing-env-file",
        "unknown-task",
        "secret-name-on-set",
        "empty-stage-on-up",
        "stage-name-too-long",
    ],
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
