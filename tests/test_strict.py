"""The emulator's strict rules (deploy/emulator/strict.py): moto refuses what AWS refuses."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from deploy.emulator import strict

DOMAIN = "notify.example.com"


@pytest.fixture
def region(aws) -> str:
    return "us-east-1"


def test_every_rule_is_applied_once() -> None:
    strict.apply()
    strict.apply()
    assert strict.applied() == sorted(rule.__name__ for rule in strict.RULES)


def test_ses_identity_is_pending_until_its_txt_record_exists(region) -> None:
    ses = boto3.client("ses", region_name=region)
    route53 = boto3.client("route53", region_name=region)
    ses.verify_domain_identity(Domain=DOMAIN)

    def attributes() -> dict:
        return ses.get_identity_verification_attributes(Identities=[DOMAIN])["VerificationAttributes"][DOMAIN]

    def status() -> str:
        return attributes()["VerificationStatus"]

    # The token the status reports (moto's VerifyDomainIdentity answer carries another constant).
    token = attributes()["VerificationToken"]

    assert status() == "Pending"
    with pytest.raises(ClientError, match="InvalidParameterValue"):
        ses.set_identity_notification_topic(Identity=DOMAIN, NotificationType="Bounce", SnsTopic="arn:x")
    with pytest.raises(ClientError, match="InvalidParameterValue"):
        ses.set_identity_feedback_forwarding_enabled(Identity=DOMAIN, ForwardingEnabled=False)

    zone = route53.create_hosted_zone(Name="example.com", CallerReference="t")["HostedZone"]["Id"]
    record = {
        "Name": f"_amazonses.{DOMAIN}",
        "Type": "TXT",
        "TTL": 300,
        "ResourceRecords": [{"Value": '"wrong"'}],
    }
    change = {"Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}]}
    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch=change)
    assert status() == "Pending", "a TXT record with another token verifies nothing"

    record["ResourceRecords"] = [{"Value": f'"{token}"'}]
    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch=change)
    assert status() == "Success"
    ses.set_identity_notification_topic(Identity=DOMAIN, NotificationType="Bounce", SnsTopic="arn:x")


def test_ttl_changes_once_an_hour(region, emulator_clock) -> None:
    dynamodb = boto3.client("dynamodb", region_name=region)
    dynamodb.create_table(
        TableName="t",
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName="t", TimeToLiveSpecification={"Enabled": True, "AttributeName": "a"}
    )
    with pytest.raises(ClientError, match="modified multiple times"):
        dynamodb.update_time_to_live(
            TableName="t", TimeToLiveSpecification={"Enabled": False, "AttributeName": "a"}
        )
    emulator_clock.advance(3599)
    with pytest.raises(ClientError, match="ValidationException"):
        dynamodb.update_time_to_live(
            TableName="t", TimeToLiveSpecification={"Enabled": False, "AttributeName": "a"}
        )
    emulator_clock.advance(2)
    dynamodb.update_time_to_live(
        TableName="t", TimeToLiveSpecification={"Enabled": False, "AttributeName": "a"}
    )


def test_point_in_time_recovery_is_refused_right_after_create(region, emulator_clock) -> None:
    dynamodb = boto3.client("dynamodb", region_name=region)
    dynamodb.create_table(
        TableName="t",
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    on = {"PointInTimeRecoveryEnabled": True}
    with pytest.raises(ClientError) as refused:
        dynamodb.update_continuous_backups(TableName="t", PointInTimeRecoverySpecification=on)
    assert refused.value.response["Error"]["Code"] == "ContinuousBackupsUnavailableException"
    emulator_clock.advance(strict.PITR_UNAVAILABLE_SECONDS)
    dynamodb.update_continuous_backups(TableName="t", PointInTimeRecoverySpecification=on)


@pytest.mark.parametrize(
    ("version", "accepted"),
    [("16", True), ("16.8", True), ("17.4", True), ("16.4", False), ("12", False), ("16.x", False)],
)
def test_rds_creates_only_offered_postgres_versions(region, version: str, accepted: bool) -> None:
    rds = boto3.client("rds", region_name=region)

    def create():
        return rds.create_db_instance(
            DBInstanceIdentifier="db",
            Engine="postgres",
            EngineVersion=version,
            DBInstanceClass="db.t4g.medium",
            AllocatedStorage=20,
            MasterUsername="u",
            MasterUserPassword="password-1234",
        )

    if accepted:
        create()
    else:
        with pytest.raises(ClientError, match=r"InvalidParameterCombination.*Cannot find version"):
            create()
