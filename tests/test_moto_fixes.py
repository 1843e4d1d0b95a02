"""moto corrected where it departs from AWS: each fix seen through boto3, in-process and over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from deploy.emulator import fixes
from deploy.emulator.server import EmulatorServer

QUEUE_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "123456789012"},
                "Action": "sqs:SendMessage",
                "Resource": "*",
            }
        ],
    }
)
ALLOW_ALL = json.dumps({"redrivePermission": "allowAll"})


@pytest.fixture(autouse=True)
def no_default_amis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Subnets are all these tests need from EC2; loading moto's default AMIs would be most of the time."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


@pytest.fixture
def client(aws: None) -> Any:
    return lambda service: boto3.client(service, region_name="us-east-1")


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        yield server


def publish_verification_record(client: Any, domain: str) -> None:
    """What SES needs before it takes notification settings (the emulator is as strict as AWS):
    the identity's `_amazonses` TXT record in a hosted zone."""
    token = client("ses").get_identity_verification_attributes(Identities=[domain])["VerificationAttributes"][
        domain
    ]["VerificationToken"]
    route53 = client("route53")
    zone = route53.create_hosted_zone(Name=domain.split(".", 1)[1], CallerReference=domain)["HostedZone"]
    record = {
        "Name": f"_amazonses.{domain}",
        "Type": "TXT",
        "TTL": 300,
        "ResourceRecords": [{"Value": f'"{token}"'}],
    }
    change = {"Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}]}
    route53.change_resource_record_sets(HostedZoneId=zone["Id"], ChangeBatch=change)


def default_subnets(ec2: Any) -> list[str]:
    return sorted(
        subnet["SubnetId"] for subnet in ec2.describe_subnets()["Subnets"] if subnet["DefaultForAz"]
    )


def members(group: dict[str, Any]) -> set[str]:
    return {subnet["SubnetIdentifier"] for subnet in group["Subnets"]}


def error_code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return error.value.response["Error"]["Code"]


def test_apply_is_idempotent_and_installs_every_fix() -> None:
    from moto.redshift.responses import RedshiftResponse
    from moto.sqs.models import Queue

    installed = RedshiftResponse.modify_cluster_subnet_group, Queue._set_attributes
    fixes.apply()
    fixes.apply()

    assert fixes.applied() == sorted(fix.__name__ for fix in fixes.FIXES)
    assert (RedshiftResponse.modify_cluster_subnet_group, Queue._set_attributes) == installed
    assert Queue.BASE_ATTRIBUTES.count("RedriveAllowPolicy") == 1
    for fix in fixes.FIXES:
        fix()  # each fix on its own is a no-op the second time, too
    assert Queue._set_attributes is installed[1]


def test_a_moto_that_changed_fails_loudly() -> None:
    class Renamed:
        pass

    with pytest.raises(fixes.MotoFixError, match=r"no .*Renamed\.modify_db_subnet_group"):
        fixes._replaced(Renamed, "modify_db_subnet_group", "rds", lambda self: None)

    class Implemented:
        def modify_cache_subnet_group(self) -> None:
            pass

    with pytest.raises(fixes.MotoFixError, match=r"moto now has .*Implemented\.modify_cache_subnet_group"):
        fixes._added(Implemented, "modify_cache_subnet_group", "elasticache", lambda self: None)


def test_rds_modify_db_subnet_group_keeps_the_group(client) -> None:
    rds = client("rds")
    subnets = default_subnets(client("ec2"))
    rds.create_db_subnet_group(
        DBSubnetGroupName="db", DBSubnetGroupDescription="first", SubnetIds=subnets[:2]
    )

    modified = rds.modify_db_subnet_group(DBSubnetGroupName="db", SubnetIds=subnets[1:4])["DBSubnetGroup"]

    assert members(modified) == set(subnets[1:4])
    (found,) = rds.describe_db_subnet_groups(DBSubnetGroupName="db")["DBSubnetGroups"]
    assert members(found) == set(subnets[1:4])
    assert found["DBSubnetGroupDescription"] == "first"
    rds.modify_db_subnet_group(
        DBSubnetGroupName="db", DBSubnetGroupDescription="second", SubnetIds=subnets[:2]
    )
    (found,) = rds.describe_db_subnet_groups(DBSubnetGroupName="db")["DBSubnetGroups"]
    assert (found["DBSubnetGroupDescription"], members(found)) == ("second", set(subnets[:2]))
    with pytest.raises(ClientError) as missing:
        rds.modify_db_subnet_group(DBSubnetGroupName="nope", SubnetIds=subnets[:2])
    assert error_code(missing) == "DBSubnetGroupNotFoundFault"


def test_redshift_modify_cluster_subnet_group(client) -> None:
    redshift = client("redshift")
    ec2 = client("ec2")
    subnets = default_subnets(ec2)
    created = redshift.create_cluster_subnet_group(
        ClusterSubnetGroupName="rs",
        Description="first",
        SubnetIds=subnets[:2],
        Tags=[{"Key": "Stage", "Value": "dev"}],
    )["ClusterSubnetGroup"]

    modified = redshift.modify_cluster_subnet_group(ClusterSubnetGroupName="rs", SubnetIds=subnets[2:4])[
        "ClusterSubnetGroup"
    ]

    assert modified.keys() == created.keys()
    assert (modified["ClusterSubnetGroupName"], modified["Description"]) == ("rs", "first")
    assert members(modified) == set(subnets[2:4])
    (found,) = redshift.describe_cluster_subnet_groups(ClusterSubnetGroupName="rs")["ClusterSubnetGroups"]
    assert members(found) == set(subnets[2:4])
    assert found["Tags"] == [{"Key": "Stage", "Value": "dev"}]
    redshift.modify_cluster_subnet_group(
        ClusterSubnetGroupName="rs", Description="second", SubnetIds=subnets[:1]
    )
    (found,) = redshift.describe_cluster_subnet_groups(ClusterSubnetGroupName="rs")["ClusterSubnetGroups"]
    assert (found["Description"], members(found)) == ("second", {subnets[0]})

    with pytest.raises(ClientError) as missing:
        redshift.modify_cluster_subnet_group(ClusterSubnetGroupName="nope", SubnetIds=subnets[:1])
    assert error_code(missing) == "ClusterSubnetGroupNotFoundFault"
    other_vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    elsewhere = ec2.create_subnet(VpcId=other_vpc, CidrBlock="10.7.1.0/24")["Subnet"]["SubnetId"]
    for wrong in ([subnets[0], elsewhere], [subnets[0], "subnet-00000000"]):
        with pytest.raises(ClientError) as invalid:
            redshift.modify_cluster_subnet_group(ClusterSubnetGroupName="rs", SubnetIds=wrong)
        assert error_code(invalid) == "InvalidSubnet"
    (found,) = redshift.describe_cluster_subnet_groups(ClusterSubnetGroupName="rs")["ClusterSubnetGroups"]
    assert members(found) == {subnets[0]}


def test_elasticache_modify_cache_subnet_group(client) -> None:
    elasticache = client("elasticache")
    subnets = default_subnets(client("ec2"))
    created = elasticache.create_cache_subnet_group(
        CacheSubnetGroupName="cache",
        CacheSubnetGroupDescription="first",
        SubnetIds=subnets[:2],
        Tags=[{"Key": "Stage", "Value": "dev"}],
    )["CacheSubnetGroup"]

    modified = elasticache.modify_cache_subnet_group(CacheSubnetGroupName="cache", SubnetIds=subnets[2:4])[
        "CacheSubnetGroup"
    ]

    assert modified.keys() == created.keys()
    assert (modified["ARN"], modified["CacheSubnetGroupDescription"]) == (created["ARN"], "first")
    assert members(modified) == set(subnets[2:4])
    (found,) = elasticache.describe_cache_subnet_groups(CacheSubnetGroupName="cache")["CacheSubnetGroups"]
    assert members(found) == set(subnets[2:4])
    assert elasticache.list_tags_for_resource(ResourceName=created["ARN"])["TagList"] == [
        {"Key": "Stage", "Value": "dev"}
    ]
    # SubnetIds is optional on AWS: a description change alone keeps the subnets.
    elasticache.modify_cache_subnet_group(CacheSubnetGroupName="cache", CacheSubnetGroupDescription="second")
    (found,) = elasticache.describe_cache_subnet_groups(CacheSubnetGroupName="cache")["CacheSubnetGroups"]
    assert (found["CacheSubnetGroupDescription"], members(found)) == ("second", set(subnets[2:4]))

    with pytest.raises(ClientError) as missing:
        elasticache.modify_cache_subnet_group(CacheSubnetGroupName="nope", SubnetIds=subnets[:1])
    assert error_code(missing) == "CacheSubnetGroupNotFoundFault"


def test_dynamodb_update_table_applies_sse_specification(client) -> None:
    dynamodb, kms = client("dynamodb"), client("kms")
    dynamodb.create_table(
        TableName="logs",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    assert "SSEDescription" not in dynamodb.describe_table(TableName="logs")["Table"]

    updated = dynamodb.update_table(
        TableName="logs", SSESpecification={"Enabled": True, "SSEType": "KMS"}, DeletionProtectionEnabled=True
    )["TableDescription"]

    managed = kms.describe_key(KeyId="alias/aws/dynamodb")["KeyMetadata"]["Arn"]
    expected = {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": managed}
    assert updated["SSEDescription"] == expected
    found = dynamodb.describe_table(TableName="logs")["Table"]
    assert found["SSEDescription"] == expected
    assert found["DeletionProtectionEnabled"] is True  # the rest of the call still applies

    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/logs", TargetKeyId=key["KeyId"])
    dynamodb.update_table(
        TableName="logs", SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": "alias/logs"}
    )
    # AWS reports the key by ARN, however the call named it.
    assert (
        dynamodb.describe_table(TableName="logs")["Table"]["SSEDescription"]["KMSMasterKeyArn"] == key["Arn"]
    )

    dynamodb.update_table(TableName="logs", SSESpecification={"Enabled": False})
    assert "SSEDescription" not in dynamodb.describe_table(TableName="logs")["Table"]
    with pytest.raises(ClientError) as missing:
        dynamodb.update_table(TableName="nope", SSESpecification={"Enabled": True})
    assert error_code(missing) == "ResourceNotFoundException"


def test_sqs_set_queue_attributes_keeps_what_it_does_not_name(client) -> None:
    sqs = client("sqs")
    url = sqs.create_queue(
        QueueName="work", Attributes={"Policy": QUEUE_POLICY, "RedriveAllowPolicy": ALLOW_ALL}
    )["QueueUrl"]

    def attributes(*names: str) -> dict[str, str]:
        return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(names)).get("Attributes", {})

    assert attributes("RedriveAllowPolicy") == {"RedriveAllowPolicy": ALLOW_ALL}
    assert json.loads(attributes("All")["RedriveAllowPolicy"]) == {"redrivePermission": "allowAll"}

    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "120"})

    kept = attributes("All")
    assert kept["VisibilityTimeout"] == "120"
    assert json.loads(kept["Policy"]) == json.loads(QUEUE_POLICY)
    assert kept["RedriveAllowPolicy"] == ALLOW_ALL

    deny = json.dumps({"redrivePermission": "denyAll"})
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedriveAllowPolicy": deny})
    assert attributes("RedriveAllowPolicy", "Policy").keys() == {"RedriveAllowPolicy", "Policy"}
    assert attributes("RedriveAllowPolicy")["RedriveAllowPolicy"] == deny

    # An empty value removes an attribute, as on AWS.
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": "", "RedriveAllowPolicy": ""})
    assert attributes("Policy", "RedriveAllowPolicy") == {}
    plain = sqs.create_queue(QueueName="plain")["QueueUrl"]
    assert (
        "RedriveAllowPolicy"
        not in sqs.get_queue_attributes(QueueUrl=plain, AttributeNames=["All"])["Attributes"]
    )


def test_ses_notification_topics_read_back(client) -> None:
    ses, sns = client("ses"), client("sns")
    ses.verify_domain_identity(Domain="notify.example.com")
    publish_verification_record(client, "notify.example.com")
    topic = sns.create_topic(Name="SESIssues")["TopicArn"]
    for kind in ("Bounce", "Complaint"):
        ses.set_identity_notification_topic(
            Identity="notify.example.com", NotificationType=kind, SnsTopic=topic
        )

    found = ses.get_identity_notification_attributes(Identities=["notify.example.com"])[
        "NotificationAttributes"
    ]

    attributes = found["notify.example.com"]
    assert (attributes["BounceTopic"], attributes["ComplaintTopic"]) == (topic, topic)
    assert "DeliveryTopic" not in attributes
    assert attributes["ForwardingEnabled"] is True


def test_the_emulator_serves_the_fixes_over_http(emulator: EmulatorServer) -> None:
    emulator.reset()
    emulator.clear_requests()

    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=emulator.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    subnets = default_subnets(client("ec2"))
    redshift, elasticache, sqs = client("redshift"), client("elasticache"), client("sqs")
    redshift.create_cluster_subnet_group(ClusterSubnetGroupName="rs", Description="d", SubnetIds=subnets[:2])
    elasticache.create_cache_subnet_group(
        CacheSubnetGroupName="cache", CacheSubnetGroupDescription="d", SubnetIds=subnets[:2]
    )
    url = sqs.create_queue(
        QueueName="work", Attributes={"Policy": QUEUE_POLICY, "RedriveAllowPolicy": ALLOW_ALL}
    )["QueueUrl"]

    redshift.modify_cluster_subnet_group(ClusterSubnetGroupName="rs", SubnetIds=subnets[2:4])
    elasticache.modify_cache_subnet_group(CacheSubnetGroupName="cache", SubnetIds=subnets[2:4])
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "120"})

    (rs,) = redshift.describe_cluster_subnet_groups(ClusterSubnetGroupName="rs")["ClusterSubnetGroups"]
    (cache,) = elasticache.describe_cache_subnet_groups(CacheSubnetGroupName="cache")["CacheSubnetGroups"]
    assert members(rs) == members(cache) == set(subnets[2:4])
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (found["Policy"], found["RedriveAllowPolicy"]) == (QUEUE_POLICY, ALLOW_ALL)
    with pytest.raises(ClientError) as missing:
        redshift.modify_cluster_subnet_group(ClusterSubnetGroupName="nope", SubnetIds=subnets[:1])
    assert error_code(missing) == "ClusterSubnetGroupNotFoundFault"
    ses = client("ses")
    ses.verify_domain_identity(Domain="notify.example.com")
    publish_verification_record(client, "notify.example.com")
    topic = client("sns").create_topic(Name="SESIssues")["TopicArn"]
    ses.set_identity_notification_topic(
        Identity="notify.example.com", NotificationType="Bounce", SnsTopic=topic
    )
    notes = ses.get_identity_notification_attributes(Identities=["notify.example.com"])[
        "NotificationAttributes"
    ]
    assert notes["notify.example.com"]["BounceTopic"] == topic
    operations = {(call["service"], call["operation"]) for call in emulator.requests()}
    assert {("redshift", "ModifyClusterSubnetGroup"), ("elasticache", "ModifyCacheSubnetGroup")} <= operations


def listing_bodies(client: Any, bucket: str) -> list[bytes]:
    """The raw documents of a few listings: paged, by prefix, empty, and one moto keeps for itself."""
    s3 = client("s3")
    bodies: list[bytes] = []
    s3.meta.events.register(
        "before-parse.s3.ListObjectsV2", lambda response_dict, **_: bodies.append(response_dict["body"])
    )
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="static/", MaxKeys=2):
        assert page["KeyCount"] <= 2
    s3.list_objects_v2(Bucket=bucket)
    s3.list_objects_v2(Bucket=bucket, Prefix="nothing/")
    s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    return bodies


def test_the_fast_listing_writes_motos_own_document(client, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.s3.responses import S3Response

    s3 = client("s3")
    s3.create_bucket(Bucket="listing-bucket")
    for key in ("static/a&b<c>'q\".js", "static/ü/é.css", "static/z.js", "media/x.png"):
        s3.put_object(Bucket="listing-bucket", Key=key, Body=b"x", ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket="listing-bucket", Key="static/plain.txt", Body=b"y")
    written: list[bytes] = []
    monkeypatch.setattr(
        fixes,
        "_listing_xml",
        lambda result, real=fixes._listing_xml: written.append(real(result)) or written[-1],
    )

    fast = listing_bodies(client, "listing-bucket")
    monkeypatch.delattr(S3Response, "serialized")  # moto's own serializer, for every listing
    slow = listing_bodies(client, "listing-bucket")

    assert fast == slow
    assert len(written) == len(fast) - 1  # all but the listing with a delimiter took the fast path
    assert b"<Key>static/a%26b%3Cc%3E%27q%22.js</Key>" in fast[0]  # boto3 asks for URL-encoded keys


@pytest.mark.parametrize("timestamp_format", ["iso8601", "rfc822", "unixtimestamp", "iso8601_zeroed"])
def test_fast_timestamps_write_what_moto_writes(timestamp_format: str) -> None:
    from moto.core.serialize import TimestampSerializer

    fixes.apply()
    serializer = TimestampSerializer(timestamp_format)
    original = TimestampSerializer._convert_timestamp_to_str.__wrapped__
    for value in (
        "2026-11-28T16:03:47.000Z",
        "2026-11-28T16:03:47.123456+00:00",
        "2026-11-28T16:03:47",
        "2026-11-28",
        "1700000000",
    ):
        assert serializer._convert_timestamp_to_str(value, timestamp_format) == original(
            serializer, value, timestamp_format
        )


class Members:
    """Each kind of class member that inspect.getmembers can meet."""

    def method(self) -> None:
        pass

    @staticmethod
    def static() -> None:
        pass

    @classmethod
    def klass(cls) -> None:
        pass

    @property
    def prop(self) -> None:
        return None

    lambda_attribute = staticmethod(lambda: None)
    plain = lambda self: None  # noqa: E731
    value = 3
    builtin = len


class Refuses:
    def __get__(self, instance: object, owner: type | None = None) -> Any:
        raise AttributeError("refuses")


class MoreMembers(Members):
    def method(self) -> None:  # overridden
        pass

    refuses_function = Refuses()
    static = None  # type: ignore[assignment]  # the base class's function, shadowed


MoreMembers.added_later = lambda self: None  # type: ignore[attr-defined]


def test_action_lookup_answers_as_motos_list_of_methods() -> None:
    import importlib

    import moto.core.responses
    from moto.core.utils import method_names_from_class as motos

    fixes.apply()
    classes: list[type] = [Members, MoreMembers, moto.core.responses.BaseResponse]
    for service in ("s3", "sqs", "sts", "ec2", "iam", "rds", "dynamodb", "sns", "events", "redshift"):
        module = importlib.import_module(f"moto.{service}.responses")
        classes += [
            value
            for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, moto.core.responses.BaseResponse)
        ]
    for clazz in classes:
        fast = moto.core.responses.method_names_from_class(clazz)
        listed = motos(clazz)
        assert list(fast) == listed and len(fast) == len(listed) and fast == listed
        for name in [*dir(clazz), "nothing_of_the_kind", "", "__init__", "create_queue", "list_buckets"]:
            assert (name in fast) == (name in listed), (clazz, name)
    assert 3 not in moto.core.responses.method_names_from_class(Members)


def test_backend_for_host_remembered_is_motos_answer() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    fixes.apply()
    dispatcher = DomainDispatcherApplication(create_backend_app)
    motos = DomainDispatcherApplication.get_backend_for_host.__wrapped__
    hosts = [None, "moto_api", "instance_metadata", "s3control", "dynamodb", "dynamodbstreams", "sesv2"]
    hosts += [f"{name}.us-east-1.amazonaws.com" for name in ("sts", "sqs", "s3", "ec2", "iam", "rds", "logs")]
    hosts += [
        "events.eu-west-1.amazonaws.com",
        "cloudfront.amazonaws.com",
        "s3.amazonaws.com",
        "unknown.example",
    ]
    for host in hosts * 2:
        assert dispatcher.get_backend_for_host(host) == motos(dispatcher, host), host
    assert dispatcher.get_backend_for_host("sts.us-east-1.amazonaws.com") == "sts"
    assert None not in dispatcher._backend_of_host and "unknown.example" not in dispatcher._backend_of_host


def test_a_module_function_moto_no_longer_has_fails_loudly() -> None:
    import types

    module = types.ModuleType("moto.somewhere")
    with pytest.raises(fixes.MotoFixError, match=r"moto has no moto\.somewhere\.helper"):
        fixes._wrapped(module, "helper", "fix", lambda original: original)


def request_handler(headers: list[tuple[str, str]]) -> Any:
    """moto's server request handler with a request read, as make_environ finds it."""
    import http.client
    import io
    import types

    from moto.moto_server.werkzeug_app import MotoRequestHandler

    handler = object.__new__(MotoRequestHandler)
    handler.headers = http.client.HTTPMessage()
    for name, value in headers:
        handler.headers[name] = value
    handler.path, handler.command, handler.request_version = "/bucket/key?x=%20y", "PUT", "HTTP/1.1"
    handler.client_address = ("127.0.0.1", 40000)
    handler.rfile = io.BytesIO(b"")
    handler.connection = object()  # no TLS
    handler.server = types.SimpleNamespace(
        ssl_context=None,
        server_address=("127.0.0.1", 4566),
        multithread=True,
        multiprocess=False,
        _server_version="Werkzeug/test",
    )
    return handler


@pytest.mark.parametrize(
    "headers",
    [
        [("Host", "s3.amazonaws.com"), ("Content-Type", "text/plain"), ("Content-Length", "0")],
        [("X-Amz-Meta-Dashed", "1"), ("x-amz-meta-twice", "a"), ("X-Amz-Meta-Twice", "b")],
        [("x-amz-meta-my_key", "u"), ("Host", "x")],
        [("x-amz-meta-my-key", "dashed"), ("x-amz-meta-my_key", "underscored")],
        [("Other_Header", "dropped by werkzeug"), ("Host", "x")],
        [],
    ],
)
def test_server_environ_is_motos_own(headers: list[tuple[str, str]]) -> None:
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    fixes.apply()
    motos = MotoRequestHandler.make_environ.__wrapped__

    handler = request_handler(headers)

    assert MotoRequestHandler.make_environ(handler) == motos(handler)


@pytest.mark.parametrize(
    "name",
    ["Name", "ns:Name", "@attr", "?pi", "!x", "a<b", "a/b", 'a"b', "a=b", "a b", "a\tb", "é", "", 3, None],
)
def test_xml_names_are_checked_as_xmltodict_checks_them(name: Any) -> None:
    import xmltodict

    fixes.apply()
    motos = xmltodict._validate_name.__wrapped__
    for _ in range(2):  # the second time, from what the fix remembers
        for kind in ("element", "attribute"):
            try:
                expected: Any = motos(name, kind)
            except ValueError as error:
                expected = str(error)
            try:
                got: Any = xmltodict._validate_name(name, kind)
            except ValueError as error:
                got = str(error)
            assert got == expected


def test_xml_answers_are_what_xmltodict_wrote() -> None:
    import xmltodict

    document = {
        "DescribeThingsResponse": {
            "@xmlns": "https://example.com/doc/",
            "Things": {"member": [{"Name": "a & b", "Size": 3, "On": True}, {"Name": None}]},
            "Empty": "",
            "List": [],
        }
    }
    fixes.apply()
    fast = xmltodict.unparse(document, full_document=False, short_empty_elements=True)
    for bad in ({"a b": "x"}, {"Ok": {"@bad=": "1"}}):
        with pytest.raises(ValueError, match="Invalid"):
            xmltodict.unparse(bad, full_document=False)
    original = xmltodict._validate_name
    try:
        xmltodict._validate_name = original.__wrapped__
        slow = xmltodict.unparse(document, full_document=False, short_empty_elements=True)
    finally:
        xmltodict._validate_name = original
    assert fast == slow


def test_random_strings_draw_what_moto_draws() -> None:
    from moto.moto_api._internal.moto_random import MotoRandom

    fixes.apply()
    motos = MotoRandom.get_random_string.__wrapped__
    ours, theirs = MotoRandom(20261128), MotoRandom(20261128)
    for length, digits, lower in [
        (52, True, False),
        (20, True, False),
        (8, False, True),
        (1, True, True),
        (0, True, False),
    ]:
        for _ in range(50):
            assert ours.get_random_string(length, digits, lower) == motos(theirs, length, digits, lower)
    assert ours.get_random_string() == motos(theirs)
    assert ours.uuid4() == theirs.uuid4(), "the two generators are in the same state afterwards"


def alike(one: Any, other: Any, depth: int = 0) -> bool:
    """Equal, or objects of one class holding alike values (a property may make a new view each
    time it is read)."""
    if one is other or (type(one) is type(other) and one == other):
        return True
    if type(one) is not type(other) or depth > 6:
        return False
    if isinstance(one, list | tuple):
        return len(one) == len(other) and all(alike(a, b, depth + 1) for a, b in zip(one, other, strict=True))
    if isinstance(one, dict):
        return one.keys() == other.keys() and all(alike(one[k], other[k], depth + 1) for k in one)
    return hasattr(one, "__dict__") and alike(vars(one), vars(other), depth + 1)


def test_serializer_reads_each_member_as_moto_does(client, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every member value the serializer reads, by the names it remembers, against moto's own
    reading, over answers of services with and without response transformers and aliases."""
    from moto.core.serialize import ResponseSerializer

    fixes.apply()
    remembered = ResponseSerializer.get_value
    motos = remembered.__wrapped__
    compared: list[str] = []

    def both(self: Any, value: Any, key: str, shape: Any) -> Any:
        got = remembered(self, value, key, shape)
        expected = motos(self, value, key, shape)
        assert alike(got, expected), (self.operation_name, ".".join(self.path), key)
        compared.append(key)
        return got

    monkeypatch.setattr(ResponseSerializer, "get_value", both)
    ec2, iam, sns, sqs = client("ec2"), client("iam"), client("sns"), client("sqs")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.1.0/24")
    ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)
    iam.create_role(RoleName="r", AssumeRolePolicyDocument=QUEUE_POLICY, Tags=[{"Key": "k", "Value": "v"}])
    iam.create_policy(PolicyName="p", PolicyDocument=QUEUE_POLICY)
    topic = sns.create_topic(Name="t")["TopicArn"]
    sqs.create_queue(QueueName="q", Attributes={"Policy": QUEUE_POLICY})
    cloudformation = client("cloudformation")
    template = json.dumps(
        {"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "cq"}}}}
    )
    cloudformation.create_stack(StackName="s", TemplateBody=template)
    for _ in range(2):  # the second time, by the names remembered
        ec2.describe_vpcs()
        ec2.describe_subnets()
        ec2.describe_security_groups()
        ec2.describe_route_tables()
        iam.get_role(RoleName="r")
        iam.list_roles()
        iam.get_account_authorization_details()
        sns.get_topic_attributes(TopicArn=topic)
        sns.list_topics()
        cloudformation.describe_stacks()
        cloudformation.describe_stack_resources(StackName="s")
        cloudformation.list_stack_resources(StackName="s")
        with pytest.raises(ClientError):
            iam.get_role(RoleName="missing")

    assert len(compared) > 1000


@pytest.mark.parametrize(
    "name", ["DescribeVpcs", "GetQueueURL", "ListDBInstances", "x", "", "ABC", "already_snake", "With Space"]
)
def test_action_names_are_converted_as_moto_converts_them(name: str) -> None:
    import moto.core.responses
    from moto.core.utils import camelcase_to_underscores

    fixes.apply()
    for _ in range(2):
        assert moto.core.responses.camelcase_to_underscores(name) == camelcase_to_underscores(name)


def random_xml_value(draw: Any, depth: int) -> Any:
    """A value as moto's serializers hand xmltodict, odd ones included."""
    texts = ["", "plain", "a & b < c > d", "quote \" and ' both", "line\nbreak\ttab\r", "ü é ☃", " "]
    scalars = [*texts, 0, 7, -1.5, True, False, None, b"bytes \xff", bytearray(b"ba")]
    if depth > 3 or draw.random() < 0.35:
        return draw.choice(scalars)
    kind = draw.random()
    if kind < 0.2:
        return [random_xml_value(draw, depth + 1) for _ in range(draw.randrange(0, 4))]
    if kind < 0.25:
        return tuple(random_xml_value(draw, depth + 1) for _ in range(draw.randrange(0, 3)))
    names = ["Name", "member", "item", "Tags", "ns:Prefixed", "x-y.z_1", "Value"]
    mapping: dict[Any, Any] = {}
    for _ in range(draw.randrange(0, 5)):
        roll = draw.random()
        if roll < 0.15:
            mapping["@" + draw.choice(["id", "type", "xmlns:xsi"])] = draw.choice(scalars)
        elif roll < 0.22:
            mapping["@xmlns"] = draw.choice(["https://example.com/doc/", {"": "u", "p": None, "q": 1}])
        elif roll < 0.3:
            mapping["#text"] = draw.choice(scalars)
        elif roll < 0.35:
            mapping[draw.choice(names)] = []
        else:
            mapping[draw.choice(names)] = random_xml_value(draw, depth + 1)
    return mapping


@pytest.mark.parametrize("full_document", [True, False])
@pytest.mark.parametrize("short_empty_elements", [True, False])
def test_xml_written_plainly_is_what_xmltodict_writes(
    full_document: bool, short_empty_elements: bool
) -> None:
    import random

    import xmltodict

    fixes.apply()
    draw = random.Random(20261128)
    documents: list[Any] = [
        {"Only": None},
        {"Only": ""},
        {"Only": []},
        {"Only": [1, 2]},
        {"One": 1, "Two": 2},
        {},
        {"#comment": "a note", "Root": {"#comment": ["x", None], "A": 1}},
        {"Root": {"bad name": 1}},
        {"Root": {"@bad=": 1}},
        {"Root": {"@xmlns": {"bad prefix": "u"}}},
        {3: "number as a name"},
        {"Root": {"Gen": (x for x in [])}},
    ]
    documents += [{"Root": random_xml_value(draw, 0)} for _ in range(400)]
    documents += [{draw.choice(["A", "B"]): random_xml_value(draw, 1) for _ in range(2)} for _ in range(50)]
    for document in documents:
        outcomes = []
        for unparse in (xmltodict.unparse, xmltodict.unparse.__wrapped__):
            try:
                outcomes.append(
                    unparse(document, full_document=full_document, short_empty_elements=short_empty_elements)
                )
            except ValueError as error:
                outcomes.append(f"ValueError: {error}")
        assert outcomes[0] == outcomes[1], document


def test_backend_lookup_of_a_known_account_registers_as_moto_does() -> None:
    from moto.core.base_backend import BackendDict
    from moto.sqs.models import SQSBackend

    fixes.apply()
    backends = BackendDict(SQSBackend, "sqs")
    motos = BackendDict.__getitem__.__wrapped__

    first = backends["111111111111"]
    assert any(known is backends for known in BackendDict._instances), "registered for reset"
    assert backends["111111111111"] is first is motos(backends, "111111111111")
    assert backends["222222222222"] is not first and set(backends) == {"111111111111", "222222222222"}

    BackendDict.reset()  # empties the dict and the register
    assert not any(known is backends for known in BackendDict._instances) and not backends
    again = backends["111111111111"]
    assert again is not first and any(known is backends for known in BackendDict._instances)

    dict.__setitem__(backends, "333333333333", first)  # there, but never looked up since the reset
    BackendDict._instances.remove(backends)
    BackendDict.reset()
    assert backends["333333333333"] is first  # a dict the reset did not know: as moto, it stays
    assert any(known is backends for known in BackendDict._instances)
    BackendDict.reset()
