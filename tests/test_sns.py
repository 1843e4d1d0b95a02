"""SNS planner against moto: topics encrypted with KMS, staff subscriptions, drift repaired."""

from __future__ import annotations

from deploy.stage import Stage
from tests.helpers import changed, converge, operations

TOPICS = {
    "SESIssues",
    "StaffNotifications",
    "IotileCloudEBNotifications",
    "iotile--delete-s3--dev",
    "iotile--upload-sxd--dev",
    "dynamodb",
}
# ElastiCache cannot publish to an encrypted topic: its events have a plain one of their own.
CACHE_EVENTS = "iotile-cache-events-dev"
STAFF = "sns:\n  staff_subscriptions:\n    - {protocol: email, endpoint: ops@example.com}\n"


def topic_names(stage: Stage) -> set[str]:
    topics = stage.client("sns").list_topics()["Topics"]
    return {topic["TopicArn"].rsplit(":", 1)[1] for topic in topics}


def test_creates_six_topics_encrypted_and_tagged(make_stage) -> None:
    stage = make_stage("dev")

    converge(stage, "sns")

    assert topic_names(stage) == TOPICS | {CACHE_EVENTS}
    sns = stage.client("sns")
    for name in TOPICS:
        arn = stage.arn("sns", name)
        attributes = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
        assert attributes["KmsMasterKeyId"] == stage.config.sns.kms_key
        tags = {t["Key"]: t["Value"] for t in sns.list_tags_for_resource(ResourceArn=arn)["Tags"]}
        assert tags["Stage"] == ("dev" if name.endswith("--dev") else "shared")


def test_staff_subscriptions_come_from_config_and_are_made_once(make_stage, config_copy) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", STAFF))

    converge(stage, "sns")
    second = converge(stage, "sns")

    subs = stage.client("sns").list_subscriptions_by_topic(TopicArn=stage.arn("sns", "StaffNotifications"))[
        "Subscriptions"
    ]
    assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [("email", "ops@example.com")]
    assert changed(second.resources) == []


def test_encryption_removed_by_hand_is_restored(make_stage) -> None:
    stage = make_stage("dev")
    converge(stage, "sns")
    arn = stage.arn("sns", "iotile--upload-sxd--dev")
    stage.client("sns").set_topic_attributes(TopicArn=arn, AttributeName="KmsMasterKeyId", AttributeValue="")

    drifted = converge(stage, "sns")

    assert operations(drifted.resources) == ["SetTopicAttributes"]
    assert drifted.resources[4].drift == ("not encrypted with the configured key",)
    attributes = stage.client("sns").get_topic_attributes(TopicArn=arn)["Attributes"]
    assert attributes["KmsMasterKeyId"] == stage.config.sns.kms_key


def test_second_run_and_dry_run_make_no_mutating_call(make_stage, call_log) -> None:
    stage = make_stage("dev", log=call_log)
    preview = converge(make_stage("dev", read_only=True), "sns", dry_run=True)
    assert operations(preview.resources).count("CreateTopic") == 7
    assert topic_names(stage) == set()

    converge(stage, "sns")
    call_log.clear()
    assert changed(converge(stage, "sns").resources) == []
    assert call_log.mutating == []


def test_cache_events_topic_is_plain_and_open_to_this_account_only(make_stage, call_log) -> None:
    import json

    stage = make_stage("dev", log=call_log)
    converge(stage, "sns")
    sns, arn = stage.client("sns"), stage.arn("sns", CACHE_EVENTS)
    attributes = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    assert not attributes.get("KmsMasterKeyId")
    (statement,) = json.loads(attributes["Policy"])["Statement"]
    assert statement["Condition"] == {"StringEquals": {"AWS:SourceOwner": stage.account_id}}
    assert statement["Resource"] == arn

    sns.set_topic_attributes(TopicArn=arn, AttributeName="KmsMasterKeyId", AttributeValue="alias/aws/sns")
    opened = {"Version": "2012-10-17", "Statement": [{**statement, "Condition": {}}]}
    sns.set_topic_attributes(TopicArn=arn, AttributeName="Policy", AttributeValue=json.dumps(opened))
    drifted = converge(stage, "sns")

    assert [r.name for r in drifted.resources if r.steps] == [CACHE_EVENTS]
    assert [s.params["AttributeName"] for s in drifted.resources[-1].steps] == ["KmsMasterKeyId", "Policy"]
    attributes = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    assert not attributes.get("KmsMasterKeyId")
    assert json.loads(attributes["Policy"])["Statement"][0]["Condition"]["StringEquals"]
    call_log.clear()
    assert changed(converge(stage, "sns").resources) == [] and call_log.mutating == []
