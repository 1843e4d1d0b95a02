"""SQS planner against moto: queues with dead-letter queues, encryption, drift repaired."""

from __future__ import annotations

import json

from deploy.stage import Stage
from tests.helpers import changed, converge, operations


def attributes(stage: Stage, name: str) -> dict[str, str]:
    sqs = stage.client("sqs")
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def test_creates_queues_with_dead_letter_queues_and_encryption(make_stage) -> None:
    stage = make_stage("dev")

    outcome = converge(stage, "sqs")

    names = [r.name for r in outcome.resources]
    assert names == [
        "iotile-worker-dev-dlq",
        "iotile-worker-dev",
        "iotile-report-dev-dlq",
        "iotile-report-dev",
    ]
    config = stage.config.sqs
    for queue in ("iotile-worker-dev", "iotile-report-dev"):
        found = attributes(stage, queue)
        assert found["SqsManagedSseEnabled"] == "true"
        assert found["VisibilityTimeout"] == str(config.visibility_timeout)
        assert found["MessageRetentionPeriod"] == str(config.retention_seconds)
        redrive = json.loads(found["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == stage.arn("sqs", f"{queue}-dlq")
        assert int(redrive["maxReceiveCount"]) == config.max_receive_count
        dead_letter = attributes(stage, f"{queue}-dlq")
        assert dead_letter["SqsManagedSseEnabled"] == "true"
        assert json.loads(dead_letter["RedriveAllowPolicy"]) == {
            "redrivePermission": "byQueue",
            "sourceQueueArns": [stage.arn("sqs", queue)],
        }


def test_kms_key_from_config(make_stage, config_copy) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", "sqs:\n  kms_key: alias/iotile\n"))

    converge(stage, "sqs")

    assert attributes(stage, "iotile-worker-dev")["KmsMasterKeyId"] == "alias/iotile"


def test_changed_attribute_is_set_back_alone(make_stage) -> None:
    stage = make_stage("dev")
    converge(stage, "sqs")
    sqs = stage.client("sqs")
    url = sqs.get_queue_url(QueueName="iotile-report-dev")["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "5"})

    drifted = converge(stage, "sqs")

    assert changed(drifted.resources) == ["iotile-report-dev"]
    step = drifted.resources[3].steps[0]
    assert step.operation == "SetQueueAttributes"
    assert step.params["Attributes"] == {"VisibilityTimeout": str(stage.config.sqs.visibility_timeout)}
    assert attributes(stage, "iotile-report-dev")["VisibilityTimeout"] != "5"


def test_second_run_and_dry_run_make_no_mutating_call(make_stage, call_log) -> None:
    preview = converge(make_stage("dev", read_only=True, log=call_log), "sqs", dry_run=True)
    assert operations(preview.resources) == ["CreateQueue"] * 4
    assert call_log.mutating == []

    stage = make_stage("dev", log=call_log)
    converge(stage, "sqs")
    call_log.clear()
    assert changed(converge(stage, "sqs").resources) == []
    assert call_log.mutating == []


def test_dead_letter_queue_opened_to_every_queue_by_hand_is_closed_again(make_stage) -> None:
    stage = make_stage("dev")
    converge(stage, "sqs")
    sqs = stage.client("sqs")
    url = sqs.get_queue_url(QueueName="iotile-worker-dev-dlq")["QueueUrl"]
    sqs.set_queue_attributes(
        QueueUrl=url, Attributes={"RedriveAllowPolicy": json.dumps({"redrivePermission": "allowAll"})}
    )

    drifted = converge(stage, "sqs")

    assert operations(drifted.resources) == ["SetQueueAttributes"]
    (reason,) = drifted.resources[0].drift
    assert reason.startswith('RedriveAllowPolicy is {"redrivePermission": "allowAll"}, config says {')
    assert '"byQueue"' in reason
    allow = json.loads(attributes(stage, "iotile-worker-dev-dlq")["RedriveAllowPolicy"])
    assert allow["redrivePermission"] == "byQueue"
    assert changed(converge(stage, "sqs").resources) == []
