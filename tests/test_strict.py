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


def new_table(region: str):
    """A client of DynamoDB, and a table `t` made just now."""
    dynamodb = boto3.client("dynamodb", region_name=region)
    dynamodb.create_table(
        TableName="t",
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return dynamodb


def test_ttl_changes_once_an_hour(region, emulator_clock) -> None:
    dynamodb = new_table(region)
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
    dynamodb = new_table(region)
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


def _redshift_cluster(redshift, identifier: str, *, public: bool, routing: bool) -> str:
    """A cluster as the test wants it; returns the JDBC URL Firehose would be given."""
    found = redshift.create_cluster(
        ClusterIdentifier=identifier,
        NodeType="ra3.xlplus",
        ClusterType="single-node",
        DBName="iotile",
        MasterUsername="iotile",
        MasterUserPassword="Passw0rdPassw0rd",
        PubliclyAccessible=public,
        EnhancedVpcRouting=routing,
    )["Cluster"]
    endpoint = (
        found.get("Endpoint")
        or redshift.describe_clusters(ClusterIdentifier=identifier)["Clusters"][0]["Endpoint"]
    )
    return f"jdbc:redshift://{endpoint['Address']}:{endpoint['Port']}/iotile"


def _redshift_destination(url: str) -> dict:
    return {
        "RoleARN": "arn:aws:iam::123456789012:role/firehose",
        "ClusterJDBCURL": url,
        "CopyCommand": {"DataTableName": "streamdata"},
        "Username": "iotile",
        "Password": "Passw0rdPassw0rd",
        "S3Configuration": {
            "RoleARN": "arn:aws:iam::123456789012:role/firehose",
            "BucketARN": "arn:aws:s3:::iotile-stream-in",
        },
    }


@pytest.mark.parametrize(
    ("public", "routing", "refusal"),
    [
        (True, False, None),
        (False, False, "is not publicly accessible"),
        (True, True, "has enhanced VPC routing enabled"),
        (False, True, "is not publicly accessible and has enhanced VPC routing enabled"),
    ],
)
def test_firehose_delivers_only_into_a_public_cluster_without_enhanced_vpc_routing(
    region, public: bool, routing: bool, refusal: str | None
) -> None:
    redshift = boto3.client("redshift", region_name=region)
    firehose = boto3.client("firehose", region_name=region)
    url = _redshift_cluster(redshift, "dw", public=public, routing=routing)

    def create() -> None:
        firehose.create_delivery_stream(
            DeliveryStreamName="into-dw", RedshiftDestinationConfiguration=_redshift_destination(url)
        )

    if refusal is None:
        create()
        assert firehose.list_delivery_streams()["DeliveryStreamNames"] == ["into-dw"]
    else:
        with pytest.raises(ClientError, match="InvalidArgumentException") as refused:
            create()
        assert f"cluster dw: the cluster {refusal}" in str(refused.value)
        assert firehose.list_delivery_streams()["DeliveryStreamNames"] == []


def test_firehose_update_into_a_cluster_made_private_is_refused(region) -> None:
    redshift = boto3.client("redshift", region_name=region)
    firehose = boto3.client("firehose", region_name=region)
    url = _redshift_cluster(redshift, "dw", public=True, routing=False)
    firehose.create_delivery_stream(
        DeliveryStreamName="into-dw", RedshiftDestinationConfiguration=_redshift_destination(url)
    )
    redshift.modify_cluster(ClusterIdentifier="dw", EnhancedVpcRouting=True)
    found = firehose.describe_delivery_stream(DeliveryStreamName="into-dw")["DeliveryStreamDescription"]
    version, destination = found["VersionId"], found["Destinations"][0]["DestinationId"]

    def update(**change: object) -> None:
        firehose.update_destination(
            DeliveryStreamName="into-dw",
            CurrentDeliveryStreamVersionId=version,
            DestinationId=destination,
            **change,
        )

    # The update keeps the URL: it still delivers into the cluster that now routes through its VPC.
    with pytest.raises(ClientError, match="enhanced VPC routing"):
        update(RedshiftDestinationUpdate={"CopyCommand": {"DataTableName": "other"}})
    private = _redshift_cluster(redshift, "private-dw", public=False, routing=False)
    with pytest.raises(ClientError, match="private-dw: the cluster is not publicly accessible"):
        update(RedshiftDestinationUpdate={"ClusterJDBCURL": private})
    # Away from Redshift altogether is fine: the rule is about Redshift destinations only.
    update(ExtendedS3DestinationUpdate={"BucketARN": "arn:aws:s3:::iotile-stream-in", "Prefix": "dev/data/"})


def _encrypted_and_plain_topics(region: str) -> tuple[str, str]:
    sns = boto3.client("sns", region_name=region)
    encrypted = sns.create_topic(Name="sealed", Attributes={"KmsMasterKeyId": "alias/aws/sns"})["TopicArn"]
    return encrypted, sns.create_topic(Name="plain")["TopicArn"]


def test_elasticache_refuses_an_encrypted_topic(region) -> None:
    encrypted, plain = _encrypted_and_plain_topics(region)
    elasticache = boto3.client("elasticache", region_name=region)
    group = {"ReplicationGroupDescription": "d", "CacheNodeType": "cache.t4g.micro", "Engine": "redis"}
    with pytest.raises(ClientError, match="InvalidParameterValue"):
        elasticache.create_replication_group(
            ReplicationGroupId="rg1", NotificationTopicArn=encrypted, **group
        )
    elasticache.create_replication_group(ReplicationGroupId="rg2", NotificationTopicArn=plain, **group)
    with pytest.raises(ClientError, match="InvalidParameterValue"):
        elasticache.modify_replication_group(ReplicationGroupId="rg2", NotificationTopicArn=encrypted)


def test_opensearch_in_a_vpc_needs_its_service_linked_role(region) -> None:
    ec2, iam = boto3.client("ec2", region_name=region), boto3.client("iam", region_name=region)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    opensearch = boto3.client("opensearch", region_name=region)
    domain = {"EngineVersion": "OpenSearch_2.13", "VPCOptions": {"SubnetIds": [subnet]}}
    with pytest.raises(ClientError, match="service-linked role"):
        opensearch.create_domain(DomainName="search", **domain)
    iam.create_service_linked_role(AWSServiceName="opensearchservice.amazonaws.com")
    opensearch.create_domain(DomainName="search", **domain)


def test_a_service_linked_role_taken_is_invalid_input(region) -> None:
    iam = boto3.client("iam", region_name=region)
    iam.create_service_linked_role(AWSServiceName="ecs.amazonaws.com")
    with pytest.raises(ClientError) as taken:
        iam.create_service_linked_role(AWSServiceName="ecs.amazonaws.com")
    assert taken.value.response["Error"]["Code"] == "InvalidInput"
    assert "has been taken" in taken.value.response["Error"]["Message"]


def _distribution(region: str) -> tuple[object, str]:
    cloudfront = boto3.client("cloudfront", region_name=region)
    origin = {
        "Id": "s3",
        "DomainName": "bucket.s3.us-east-1.amazonaws.com",
        "S3OriginConfig": {"OriginAccessIdentity": ""},
        "OriginAccessControlId": "E2OAC",
    }
    config = {
        "CallerReference": "strict",
        "Comment": "strict",
        "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [origin]},
        "DefaultCacheBehavior": {"TargetOriginId": "s3", "ViewerProtocolPolicy": "redirect-to-https"},
    }
    return cloudfront, cloudfront.create_distribution(DistributionConfig=config)["Distribution"]["Id"]


def test_cloudfront_update_with_a_stale_etag_is_refused(region) -> None:
    cloudfront, distribution = _distribution(region)
    found = cloudfront.get_distribution_config(Id=distribution)
    config, etag = found["DistributionConfig"], found["ETag"]

    with pytest.raises(ClientError, match="PreconditionFailed"):
        cloudfront.update_distribution(Id=distribution, IfMatch="STALE", DistributionConfig=config)
    updated = cloudfront.update_distribution(Id=distribution, IfMatch=etag, DistributionConfig=config)

    assert updated["ETag"] != etag, "an update gives a new ETag"
    with pytest.raises(ClientError, match="PreconditionFailed"):
        cloudfront.update_distribution(Id=distribution, IfMatch=etag, DistributionConfig=config)


def test_cloudfront_deletes_only_a_disabled_distribution_with_its_current_etag(region) -> None:
    cloudfront, distribution = _distribution(region)
    found = cloudfront.get_distribution_config(Id=distribution)

    with pytest.raises(ClientError, match="DistributionNotDisabled"):
        cloudfront.delete_distribution(Id=distribution, IfMatch=found["ETag"])
    config = {**found["DistributionConfig"], "Enabled": False}
    etag = found["ETag"]
    disabled = cloudfront.update_distribution(Id=distribution, IfMatch=etag, DistributionConfig=config)
    with pytest.raises(ClientError, match="PreconditionFailed"):
        cloudfront.delete_distribution(Id=distribution, IfMatch=found["ETag"])
    cloudfront.delete_distribution(Id=distribution, IfMatch=disabled["ETag"])

    assert cloudfront.list_distributions()["DistributionList"].get("Items") is None


def test_cloudfront_origin_keeps_its_access_control(region) -> None:
    cloudfront, distribution = _distribution(region)

    origin = cloudfront.get_distribution_config(Id=distribution)["DistributionConfig"]["Origins"]["Items"][0]

    assert origin["OriginAccessControlId"] == "E2OAC"
    assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}


def test_acm_certificate_is_pending_until_its_validation_records_exist(
    region, emulator_clock, monkeypatch
) -> None:
    from moto import settings

    # moto alone issues every certificate once this many seconds passed since the request.
    monkeypatch.setattr(settings, "ACM_VALIDATION_WAIT", 0)
    acm = boto3.client("acm", region_name=region)
    route53 = boto3.client("route53", region_name=region)
    arn = acm.request_certificate(
        DomainName="dev.example.com", SubjectAlternativeNames=["*.dev.example.com"], ValidationMethod="DNS"
    )["CertificateArn"]

    def certificate() -> dict:
        return acm.describe_certificate(CertificateArn=arn)["Certificate"]

    emulator_clock.advance(3600)
    assert certificate()["Status"] == "PENDING_VALIDATION", "no records: not issued, however long"

    zone = route53.create_hosted_zone(Name="example.com", CallerReference="acm")["HostedZone"]["Id"]
    record = certificate()["DomainValidationOptions"][0]["ResourceRecord"]
    change = {
        "Action": "UPSERT",
        "ResourceRecordSet": {
            "Name": record["Name"],
            "Type": "CNAME",
            "TTL": 300,
            "ResourceRecords": [{"Value": record["Value"]}],
        },
    }
    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [change]})
    assert certificate()["Status"] == "PENDING_VALIDATION", "ACM takes a moment after the records appear"

    emulator_clock.advance(strict.ACM_VALIDATION_SECONDS)
    assert certificate()["Status"] == "ISSUED"


def test_s3_denial_of_plain_http_leaves_tls_requests_alone(region) -> None:
    import json

    s3 = boto3.client("s3", region_name=region)
    s3.create_bucket(Bucket="strict-tls")
    arn = "arn:aws:s3:::strict-tls"
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": [arn, f"{arn}/*"]}
    tls_only = {**deny, "Sid": "tls", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    document = {"Version": "2012-10-17", "Statement": [tls_only]}
    s3.put_bucket_policy(Bucket="strict-tls", Policy=json.dumps(document))

    s3.put_object(Bucket="strict-tls", Key="k", Body=b"1")

    document = {"Version": "2012-10-17", "Statement": [tls_only, {**deny, "Sid": "all"}]}
    s3.put_bucket_policy(Bucket="strict-tls", Policy=json.dumps(document))
    with pytest.raises(ClientError, match="403"):
        s3.put_object(Bucket="strict-tls", Key="k", Body=b"2")


def test_s3_put_object_checks_its_content_md5(region) -> None:
    import base64
    import hashlib

    s3 = boto3.client("s3", region_name=region)
    s3.create_bucket(Bucket="strict-md5")
    right = base64.b64encode(hashlib.md5(b"bundle").digest()).decode()
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()

    s3.put_object(Bucket="strict-md5", Key="ok", Body=b"bundle", ContentMD5=right)
    with pytest.raises(ClientError, match="BadDigest"):
        s3.put_object(Bucket="strict-md5", Key="bad", Body=b"bundle", ContentMD5=wrong)
    with pytest.raises(ClientError, match="InvalidDigest"):
        s3.put_object(Bucket="strict-md5", Key="bad", Body=b"bundle", ContentMD5="not-a-digest")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="strict-md5")["Contents"]]
    assert keys == ["ok"]


def test_acm_request_without_dns_validation_has_no_record_and_tokens_are_checked(region) -> None:
    acm = boto3.client("acm", region_name=region)

    by_mail = acm.request_certificate(DomainName="mail.example.com")["CertificateArn"]
    [option] = acm.describe_certificate(CertificateArn=by_mail)["Certificate"]["DomainValidationOptions"]
    assert option["ValidationMethod"] == "EMAIL" and "ResourceRecord" not in option

    by_dns = acm.request_certificate(DomainName="dns.example.com", ValidationMethod="DNS")["CertificateArn"]
    [option] = acm.describe_certificate(CertificateArn=by_dns)["Certificate"]["DomainValidationOptions"]
    assert option["ValidationMethod"] == "DNS" and option["ResourceRecord"]["Type"] == "CNAME"

    for token in ("x" * 33, "has-dashes"):
        with pytest.raises(ClientError, match="ValidationException"):
            acm.request_certificate(DomainName="t.example.com", IdempotencyToken=token)
    acm.request_certificate(DomainName="t.example.com", IdempotencyToken="a" * 32)


def test_rds_instances_and_snapshots_are_busy_for_a_while(region, emulator_clock, monkeypatch) -> None:
    monkeypatch.setitem(strict.CREATION_SECONDS, "rds", 60.0)
    rds = boto3.client("rds", region_name=region)
    rds.create_db_instance(
        DBInstanceIdentifier="slow",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="root",
        MasterUserPassword="x" * 20,
    )

    def instance() -> str:
        return rds.describe_db_instances(DBInstanceIdentifier="slow")["DBInstances"][0]["DBInstanceStatus"]

    def snapshot() -> str:
        return rds.describe_db_snapshots(DBSnapshotIdentifier="slow-snap")["DBSnapshots"][0]["Status"]

    assert instance() == "creating"
    emulator_clock.advance(60)
    assert instance() == "available"
    rds.modify_db_instance(DBInstanceIdentifier="slow", BackupRetentionPeriod=3, ApplyImmediately=True)
    assert instance() == "modifying"
    emulator_clock.advance(60)
    assert instance() == "available"
    rds.create_db_snapshot(DBSnapshotIdentifier="slow-snap", DBInstanceIdentifier="slow")
    assert snapshot() == "creating"
    emulator_clock.advance(60)
    assert snapshot() == "available"


def test_other_stores_are_busy_for_a_while(region, emulator_clock, monkeypatch) -> None:
    for store, seconds in {"redshift": 30.0, "redis": 25.0, "search": 15.0}.items():
        monkeypatch.setitem(strict.CREATION_SECONDS, store, seconds)
    redshift = boto3.client("redshift", region_name=region)
    redshift.create_cluster(
        ClusterIdentifier="slow",
        NodeType="ra3.xlplus",
        MasterUsername="root",
        MasterUserPassword="Password1234",
        ClusterType="single-node",
    )
    cache = boto3.client("elasticache", region_name=region)
    cache.create_replication_group(ReplicationGroupId="slow", ReplicationGroupDescription="slow")
    search = boto3.client("opensearch", region_name=region)
    search.create_domain(DomainName="slow")

    def states() -> tuple[str, str, bool]:
        return (
            redshift.describe_clusters(ClusterIdentifier="slow")["Clusters"][0]["ClusterStatus"],
            cache.describe_replication_groups(ReplicationGroupId="slow")["ReplicationGroups"][0]["Status"],
            search.describe_domain(DomainName="slow")["DomainStatus"]["Processing"],
        )

    assert states() == ("creating", "creating", True)
    emulator_clock.advance(15)
    assert states() == ("creating", "creating", False)
    emulator_clock.advance(10)
    assert states() == ("creating", "available", False)
    emulator_clock.advance(5)
    assert states() == ("available", "available", False)
