"""Lambdas against moto in-process: packages byte for byte, functions and their triggers with the
original names, nothing changed twice, one function's code change updates it alone, the media
bucket's other notifications kept, invoke permissions scoped, and Invoke run by the fill-in."""

from __future__ import annotations

import base64
import json
import os
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from deploy.errors import ConfigError, DeployError
from deploy.ship import functions
from deploy.stage import Stage
from tests.helpers import changed, converge, operations
from tests.lambda_fixtures import tiny_wheel, write_functions

SCHEDULES = [
    "hour-worker-check-dev",
    "device_check-dev",
    "hour-stream-data-check-dev",
    "day-clean-up-dev",
    "day-collect-stats-dev",
    "day-collect-dbstats-dev",
]


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEPLOY_CACHE_DIR", str(tmp_path / "cache"))
    return write_functions(tmp_path)


@pytest.fixture
def stage_with_functions(make_stage, config_copy, source, call_log):
    """A dev stage whose functions are the fixtures, with what the lambdas area needs made first
    (roles, the media bucket, the topics: the other areas' work, made directly)."""
    config = config_copy("dev", f"lambdas:\n  source: {source}\n")

    def make(*, read_only: bool = False) -> Stage:
        return make_stage("dev", read_only=read_only, log=call_log, config_dir=config)

    stage = make()
    iam = stage.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    for _, role in stage.config.iam.lambda_roles:
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
    stage.client("s3").create_bucket(Bucket="iotile-cloud-media")
    for topic in ("iotile--delete-s3--dev", "iotile--upload-sxd--dev", "StaffNotifications"):
        stage.client("sns").create_topic(Name=topic)
    call_log.clear()
    return make


# -- packaging ---------------------------------------------------------------------------------


def test_package_is_reproducible_byte_for_byte(source: Path, tmp_path: Path) -> None:
    folder = source / "health"
    first = functions.package_function(folder, "x86_64", cache=tmp_path / "one")
    os.utime(folder / "handler.py", (1_000_000_000, 1_000_000_000))
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "handler.cpython-312.pyc").write_bytes(b"compiled")
    second = functions.package_function(folder, "x86_64", cache=tmp_path / "two")

    assert first.data == second.data
    assert first.code_sha256 == second.code_sha256
    with zipfile.ZipFile(BytesIO(first.data)) as archive:
        assert archive.namelist() == ["handler.py"], "no function.yaml, requirements or bytecode"
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}

    (folder / "handler.py").write_text("def main(event, context):\n    return 1\n")
    changed_package = functions.package_function(folder, "x86_64", cache=tmp_path / "one")
    assert changed_package.code_sha256 != first.code_sha256


def test_package_comes_from_the_cache_and_skips_pip_without_requirements(
    source: Path, tmp_path: Path
) -> None:
    def no_pip(command):
        raise AssertionError(f"pip ran: {command}")

    built = functions.package_function(source / "utils", "x86_64", cache=tmp_path / "c", run=no_pip)
    cached = tmp_path / "c" / "packages" / f"{built.input_hash}.zip"
    assert cached.read_bytes() == built.data
    cached.write_bytes(built.data)
    again = functions.package_function(source / "utils", "x86_64", cache=tmp_path / "c", run=no_pip)
    assert again.data == built.data


def test_pip_builds_for_the_lambda_platform_from_the_local_wheel_cache() -> None:
    command = functions.install_command(Path("req.txt"), Path("t"), Path("w"), "arm64")
    joined = " ".join(command)
    assert "--platform manylinux2014_aarch64" in joined
    assert "--only-binary=:all:" in command and "--python-version 3.12" in joined
    assert "--no-index" in command and "--find-links w" in joined and "--target t" in joined
    local = functions.install_command(Path("req.txt"), Path("t"), Path("w"), functions.LOCAL)
    assert "--platform" not in local and "--only-binary=:all:" in local, "the emulator's: this Python's"
    download = " ".join(functions.download_command(Path("req.txt"), Path("w"), "x86_64"))
    assert "download" in download and "--dest w" in download and "manylinux2014_x86_64" in download


def test_requirements_install_offline_from_cached_wheels(source: Path, tmp_path: Path) -> None:
    folder = source / "s3image"
    (folder / "requirements.txt").write_text("tinydep==1.0\n")
    cache = tmp_path / "cache"
    tiny_wheel(cache / "wheels" / functions.PLATFORMS["x86_64"])

    package = functions.package_function(folder, "x86_64", cache=cache)

    assert "tinydep/__init__.py" in package.files and "handler.py" in package.files
    assert not any("__pycache__" in name or name.startswith("bin/") for name in package.files)
    import shutil

    shutil.rmtree(cache / "packages")
    again = functions.package_function(folder, "x86_64", cache=cache)
    assert again.data == package.data, "pip's output zipped the same way: same bytes"


def test_missing_wheel_is_a_one_line_failure(source: Path, tmp_path: Path) -> None:
    folder = source / "s3image"
    (folder / "requirements.txt").write_text("nosuchpackage-iotile==9.9\n")

    def offline(command):
        import subprocess

        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found")

    with pytest.raises(DeployError, match=r"pip could not install .*No matching distribution"):
        functions.package_function(folder, "x86_64", cache=tmp_path / "c", run=offline)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("handler: handler.main\nruntime: python3.12\nmemory: 64\ntimeout: 3\n", "memory"),
        ("handler: handler.main\nruntime: python3.9\nmemory: 128\ntimeout: 3\n", "runtime"),
        ("handler: main\nruntime: python3.12\nmemory: 128\ntimeout: 3\n", "handler"),
        (
            "handler: h.main\nruntime: python3.12\nmemory: 128\ntimeout: 3\ntriggers: {sqs: []}\n",
            "triggers.sqs",
        ),
    ],
)
def test_bad_function_yaml_names_file_and_key(source: Path, text: str, key: str) -> None:
    (source / "health" / "function.yaml").write_text(text)
    with pytest.raises(ConfigError) as raised:
        functions.load_function(source / "health")
    assert raised.value.key == key
    assert raised.value.path.endswith("health/function.yaml")


def test_boto3_in_requirements_is_refused(source: Path) -> None:
    (source / "utils" / "requirements.txt").write_text("boto3>=1.30\n")
    with pytest.raises(ConfigError, match="line 1: boto3 comes with the Lambda runtime"):
        functions.load_function(source / "utils")


# -- the area ----------------------------------------------------------------------------------


def test_creates_functions_and_triggers_with_original_names(stage_with_functions) -> None:
    stage = stage_with_functions()
    converge(stage, "lambdas")

    client = stage.client("lambda")
    names = sorted(f["FunctionName"] for f in client.list_functions()["Functions"])
    assert names == sorted(name for _, name in stage.config.lambdas.functions)
    health = client.get_function_configuration(FunctionName="iotile-health-dev")
    assert health["Environment"]["Variables"]["WORKER_QUEUE_NAME"] == "iotile-worker-dev"
    assert health["Role"].endswith(":role/iotile-lambda-health-dev")
    assert (health["Runtime"], health["MemorySize"], health["Timeout"]) == ("python3.12", 256, 60)
    s3image = client.get_function_configuration(FunctionName="iotile-s3image-dev")["Environment"]["Variables"]
    assert json.loads(s3image["IMAGE_SIZES"]) == {"tiny": 64, "small": 256, "medium": 800}
    assert s3image["INCOMING_PREFIX"] == "dev/incoming/"
    utils = client.get_function_configuration(FunctionName="iotile-utils-deleteS3Obj-dev")["Environment"]
    assert utils["Variables"]["ALLOWED_BUCKETS"].split(",") == stage.config.lambdas.allowed_buckets

    events = stage.client("events")
    rules = {r["Name"]: r for r in events.list_rules()["Rules"]}
    assert sorted(rules) == sorted(SCHEDULES)
    assert rules["day-collect-stats-dev"]["State"] == "DISABLED"
    assert rules["device_check-dev"]["ScheduleExpression"] == "rate(30 minutes)"
    (target,) = events.list_targets_by_rule(Rule="hour-worker-check-dev")["Targets"]
    assert target["Arn"].endswith(":function:iotile-health-dev")
    assert json.loads(target["Input"]) == {"action": "worker_healthcheck"}

    sns = stage.client("sns")
    topic = stage.arn("sns", "iotile--delete-s3--dev")
    (subscription,) = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert (subscription["Protocol"], subscription["Endpoint"]) == (
        "lambda",
        stage.arn("lambda", "function:iotile-utils-deleteS3Obj-dev"),
    )

    s3 = stage.client("s3")
    for _, bucket in stage.config.lambdas.deployment_buckets:
        rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert all(block.values())
        (statement,) = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    groups = stage.client("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/iotile-health-dev")
    assert groups["logGroups"][0]["retentionInDays"] == stage.config.lambdas.log_retention_days


def test_invoke_permissions_are_scoped_to_source_and_account(stage_with_functions) -> None:
    stage = stage_with_functions()
    converge(stage, "lambdas")

    def statements(name: str) -> list[dict]:
        return json.loads(stage.client("lambda").get_policy(FunctionName=name)["Policy"])["Statement"]

    health = statements("iotile-health-dev")
    assert len(health) == len(SCHEDULES)
    for statement in health:
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert statement["Condition"]["StringEquals"]["AWS:SourceAccount"] == stage.account_id
        assert statement["Condition"]["ArnLike"]["AWS:SourceArn"].startswith(stage.arn("events", "rule/"))
    (image,) = statements("iotile-s3image-dev")
    assert image["Principal"] == {"Service": "s3.amazonaws.com"}
    assert image["Condition"]["ArnLike"]["AWS:SourceArn"] == "arn:aws:s3:::iotile-cloud-media"
    assert image["Condition"]["StringEquals"]["AWS:SourceAccount"] == stage.account_id
    (sxd,) = statements("iotile-process-upload-sxd-dev")
    assert sxd["Condition"]["ArnLike"]["AWS:SourceArn"] == stage.arn("sns", "iotile--upload-sxd--dev")


def test_dry_run_then_second_run_make_no_mutating_call(stage_with_functions, call_log) -> None:
    preview = converge(stage_with_functions(read_only=True), "lambdas", dry_run=True)
    assert operations(preview.resources).count("CreateFunction") == 4
    assert {r.state for r in preview.resources} == {"missing"}, "nothing made yet: all missing"
    assert call_log.mutating == []

    stage = stage_with_functions()
    converge(stage, "lambdas")
    call_log.clear()

    again = converge(stage, "lambdas")

    assert changed(again.resources) == []
    assert call_log.mutating == []


def test_code_change_updates_that_function_alone(stage_with_functions, source) -> None:
    stage = stage_with_functions()
    converge(stage, "lambdas")
    before = stage.client("lambda").get_function_configuration(FunctionName="iotile-utils-deleteS3Obj-dev")
    with (source / "utils" / "handler.py").open("a") as handle:
        handle.write("\n# changed\n")

    again = converge(stage, "lambdas")

    assert changed(again.resources) == ["iotile-utils-deleteS3Obj-dev"]
    assert operations(again.resources) == ["PutObject", "UpdateFunctionCode"]
    after = stage.client("lambda").get_function_configuration(FunctionName="iotile-utils-deleteS3Obj-dev")
    assert after["CodeSha256"] != before["CodeSha256"]
    assert changed(converge(stage, "lambdas").resources) == []


def test_a_dropped_schedule_loses_its_rule_and_permission(stage_with_functions, source) -> None:
    stage = stage_with_functions()
    converge(stage, "lambdas")
    events = stage.client("events")
    events.put_targets(Rule="day-clean-up-dev", Targets=[{"Id": "theirs", "Arn": stage.arn("sqs", "q")}])
    path = source / "health" / "function.yaml"
    text = path.read_text()
    start = text.index("    - name: day-clean-up-{stage}")
    end = text.index("    - name: day-collect-stats-{stage}")
    path.write_text(text[:start] + text[end:])
    path.write_text(
        path.read_text().replace("    - name: hour-stream-data-check-{stage}", "    - name: gone-{stage}", 1)
    )

    converge(stage, "lambdas")

    rules = {r["Name"] for r in events.list_rules()["Rules"]}
    assert "hour-stream-data-check-dev" not in rules and "gone-dev" in rules
    kept = events.list_targets_by_rule(Rule="day-clean-up-dev")["Targets"]
    assert [t["Id"] for t in kept] == ["theirs"], "a rule with another target stays, without ours"
    policy = json.loads(stage.client("lambda").get_policy(FunctionName="iotile-health-dev")["Policy"])
    sources = {s["Condition"]["ArnLike"]["AWS:SourceArn"].rsplit("/", 1)[1] for s in policy["Statement"]}
    assert sources == set(SCHEDULES) - {"day-clean-up-dev", "hour-stream-data-check-dev"} | {"gone-dev"}
    assert changed(converge(stage, "lambdas").resources) == []


def test_configuration_change_updates_configuration_only(stage_with_functions, source) -> None:
    stage = stage_with_functions()
    converge(stage, "lambdas")
    text = (source / "health" / "function.yaml").read_text().replace("memory: 256", "memory: 512")
    (source / "health" / "function.yaml").write_text(text)

    again = converge(stage, "lambdas")

    assert operations(again.resources) == ["UpdateFunctionConfiguration"]
    assert (
        stage.client("lambda").get_function_configuration(FunctionName="iotile-health-dev")["MemorySize"]
        == 512
    )


def test_media_notification_is_merged_with_foreign_entries(stage_with_functions, source) -> None:
    stage = stage_with_functions()
    queue = stage.client("sqs").create_queue(QueueName="someone-elses")["QueueUrl"]
    queue_arn = stage.arn("sqs", "someone-elses")
    foreign = {
        "QueueConfigurations": [
            {"Id": "theirs", "QueueArn": queue_arn, "Events": ["s3:ObjectRemoved:*"]},
        ]
    }
    s3 = stage.client("s3")
    s3.put_bucket_notification_configuration(Bucket="iotile-cloud-media", NotificationConfiguration=foreign)
    assert queue

    converge(stage, "lambdas")

    found = s3.get_bucket_notification_configuration(Bucket="iotile-cloud-media")
    assert [q["Id"] for q in found["QueueConfigurations"]] == ["theirs"]
    (mine,) = found["LambdaFunctionConfigurations"]
    assert mine["LambdaFunctionArn"] == stage.arn("lambda", "function:iotile-s3image-dev")
    rules = mine["Filter"]["Key"]["FilterRules"]
    assert [(r["Name"].lower(), r["Value"]) for r in rules] == [("prefix", "dev/incoming/")]
    assert changed(converge(stage, "lambdas").resources) == []

    path = source / "s3image" / "function.yaml"
    path.write_text(path.read_text().split("triggers:")[0])
    converge(stage, "lambdas")
    found = s3.get_bucket_notification_configuration(Bucket="iotile-cloud-media")
    assert "LambdaFunctionConfigurations" not in found, "a dropped trigger's entry is removed"
    assert [q["Id"] for q in found["QueueConfigurations"]] == ["theirs"]
    assert "Policy" not in _policy_or_none(stage, "iotile-s3image-dev"), "its permission goes too"


def _policy_or_none(stage: Stage, name: str) -> dict:
    from botocore.exceptions import ClientError

    try:
        return stage.client("lambda").get_policy(FunctionName=name)
    except ClientError:
        return {}


def test_deploy_of_one_function_plans_that_function_only(stage_with_functions) -> None:
    from deploy.areas import lambdas

    stage = stage_with_functions()
    resources = lambdas.plan_functions(stage, "s3image")
    names = {r.name for r in resources}
    assert "iotile-s3image-dev" in names and "iotile-health-dev" not in names
    with pytest.raises(DeployError, match="NAME: no function 'nope'"):
        lambdas.plan_functions(stage, "nope")


# -- the emulator's Invoke ---------------------------------------------------------------------


def test_invoke_runs_the_deployed_handler_locally(stage_with_functions) -> None:
    from deploy.emulator.fillins.inprocess import serving_in_process

    stage = stage_with_functions()
    converge(stage, "lambdas")
    client = stage.client("lambda")

    with serving_in_process():
        answer = client.invoke(
            FunctionName="iotile-health-dev", LogType="Tail", Payload=json.dumps({"action": "cleanup"})
        )
        failed = client.invoke(FunctionName="iotile-health-dev", Payload=json.dumps({"fail": True}))

    assert json.loads(answer["Payload"].read()) == {
        "action": "cleanup",
        "queue": "iotile-worker-dev",
        "function": "iotile-health-dev",
    }
    assert "FunctionError" not in answer
    log = base64.b64decode(answer["LogResult"]).decode()
    assert 'event: {"action": "cleanup"}' in log and "REPORT RequestId" in log
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["errorMessage"] == "asked to fail"


# -- the emulator's strict rules for functions -------------------------------------------------


def test_s3_refuses_a_function_destination_without_its_permission(stage_with_functions) -> None:
    from botocore.exceptions import ClientError

    stage = stage_with_functions()
    converge(stage, "lambdas")
    client, s3 = stage.client("lambda"), stage.client("s3")
    arn = stage.arn("lambda", "function:iotile-health-dev")
    entry = {"Id": "x", "LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"]}
    document = {"LambdaFunctionConfigurations": [entry]}

    with pytest.raises(ClientError, match=r"InvalidArgument.*Unable to validate"):
        s3.put_bucket_notification_configuration(
            Bucket="iotile-cloud-media", NotificationConfiguration=document
        )
    other_bucket = {"Principal": "s3.amazonaws.com", "SourceArn": "arn:aws:s3:::another-bucket"}
    client.add_permission(
        FunctionName=arn, StatementId="other", Action="lambda:InvokeFunction", **other_bucket
    )
    with pytest.raises(ClientError, match="InvalidArgument"):
        s3.put_bucket_notification_configuration(
            Bucket="iotile-cloud-media", NotificationConfiguration=document
        )

    media = {"Principal": "s3.amazonaws.com", "SourceArn": "arn:aws:s3:::iotile-cloud-media"}
    client.add_permission(FunctionName=arn, StatementId="media", Action="lambda:InvokeFunction", **media)
    s3.put_bucket_notification_configuration(Bucket="iotile-cloud-media", NotificationConfiguration=document)


def test_lambda_refuses_a_statement_id_taken(stage_with_functions) -> None:
    from botocore.exceptions import ClientError

    stage = stage_with_functions()
    converge(stage, "lambdas")
    grant = {"Action": "lambda:InvokeFunction", "Principal": "sns.amazonaws.com"}
    client = stage.client("lambda")
    client.add_permission(FunctionName="iotile-health-dev", StatementId="once", **grant)
    with pytest.raises(ClientError, match="ResourceConflictException"):
        client.add_permission(FunctionName="iotile-health-dev", StatementId="once", **grant)


BAD_SCHEDULES = [
    "rate(1 hours)",
    "rate(5 minute)",
    "rate(0 minutes)",
    "cron(0 12 * * *)",
    "cron(0 12 * * MON *)",
]
GOOD_SCHEDULES = ["rate(1 hour)", "rate(30 minutes)", "cron(0 12 * * ? *)", "cron(0/30 * ? * MON-FRI *)"]


def test_eventbridge_refuses_what_aws_refuses_and_function_yaml_too(aws, source) -> None:
    import boto3
    from botocore.exceptions import ClientError

    events = boto3.client("events", region_name="us-east-1")
    for expression in BAD_SCHEDULES:
        assert functions.schedule_problem(expression), expression
        with pytest.raises(ClientError, match="ScheduleExpression is not valid"):
            events.put_rule(Name="r", ScheduleExpression=expression)
    for expression in GOOD_SCHEDULES:
        assert functions.schedule_problem(expression) is None, expression
        events.put_rule(Name="r", ScheduleExpression=expression)

    path = source / "health" / "function.yaml"
    path.write_text(path.read_text().replace("rate(1 hour)", "rate(1 hours)", 1))
    with pytest.raises(ConfigError, match=r"triggers\.schedules\.0\.expression: .*write rate\(1 hour\)"):
        functions.load_function(source / "health")


def test_the_emulator_names_lambda_invoke_as_the_api_does() -> None:
    from deploy.emulator.calls import describe_call

    auth = "AWS4-HMAC-SHA256 Credential=testing/20261128/us-east-1/lambda/aws4_request, SignedHeaders=host"
    environ = {"REQUEST_METHOD": "POST", "HTTP_AUTHORIZATION": auth}
    invoke = describe_call({**environ, "PATH_INFO": "/2015-03-31/functions/iotile-health-dev/invocations"})
    code = describe_call({**environ, "REQUEST_METHOD": "PUT", "PATH_INFO": "/2015-03-31/functions/f/code"})

    assert (invoke.service, invoke.operation, invoke.mutating) == ("lambda", "Invoke", True)
    assert code.operation == "PUT /2015-03-31/functions/f/code", "other REST calls keep method and path"
