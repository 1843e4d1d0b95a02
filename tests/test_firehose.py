"""Firehose and auto-copy against moto with the emulator's rules and fill-ins: the streams stage
records in S3 (Firehose cannot write into the private cluster with enhanced VPC routing that the
redshift area makes), encrypted, errors logged to CloudWatch, drift repaired by UpdateDestination;
Redshift loads them itself, by an S3 event integration and a COPY JOB made through the Data API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from deploy.areas import autocopy, firehose, redshift
from deploy.emulator.fillins.inprocess import serving_in_process
from deploy.errors import AwsError
from deploy.plan import REDACTED, Wait
from deploy.report import Reporter
from deploy.stack import status_of
from deploy.stage import Stage
from tests.helpers import changed, converge, operations

STREAM = "iotile-stream-data-dev"
TIMESERIES = "iotile-timeseries-dev"
LOG_GROUP = "/aws/kinesisfirehose/iotile-cloud-dev"
TIMESERIES_ON = "redshift:\n  timeseries:\n    enabled: true\n"
INTEGRATION = "iotile-dev-stream-data"
JOB = "iotile_dev_stream_data"
COPY_ROLE = "arn:aws:iam::123456789012:role/iotile-redshift-copy-dev"


@pytest.fixture(autouse=True)
def fillins() -> Iterator[None]:
    """The emulator's fill-ins (S3 event integrations, the Data API) for the in-process mock too."""
    with serving_in_process():
        yield


def described(stage: Stage, name: str = STREAM) -> dict[str, Any]:
    return stage.client("firehose").describe_delivery_stream(DeliveryStreamName=name)[
        "DeliveryStreamDescription"
    ]


def destination(stage: Stage, name: str = STREAM) -> dict[str, Any]:
    return described(stage, name)["Destinations"][0]["ExtendedS3DestinationDescription"]


def moto_stream(stage: Stage, name: str = STREAM) -> Any:
    from moto.firehose.models import firehose_backends

    return firehose_backends[stage.account_id][stage.region].delivery_streams[name]


def ready(stage: Stage) -> None:
    """The earlier waves: network, then the staging buckets and the clusters."""
    converge(stage, "network")
    converge(stage, "s3", "redshift")


@pytest.fixture
def dev(make_stage) -> Stage:
    stage = make_stage("dev")
    ready(stage)
    return stage


def update_destination(stage: Stage, name: str = STREAM, **update: Any) -> None:
    found = described(stage, name)
    stage.client("firehose").update_destination(
        DeliveryStreamName=name,
        CurrentDeliveryStreamVersionId=found["VersionId"],
        DestinationId=found["Destinations"][0]["DestinationId"],
        **update,
    )


def run_sql(stage: Stage, sql: str, cluster: str = STREAM, database: str = "iotile") -> dict[str, Any]:
    """One statement through the Data API, as an operator would run it; its description."""
    data = stage.client("redshift-data")
    found = data.execute_statement(ClusterIdentifier=cluster, Database=database, DbUser="iotile", Sql=sql)
    return data.describe_statement(Id=found["Id"])


def copy_jobs(stage: Stage, cluster: str = STREAM, database: str = "iotile") -> dict[str, dict[str, Any]]:
    """SYS_COPY_JOB of a cluster's database, by job name."""
    statement = run_sql(
        stage, "SELECT job_name, iam_role, job_text, is_auto FROM sys_copy_job", cluster, database
    )
    result = stage.client("redshift-data").get_statement_result(Id=statement["Id"])
    columns = [column["name"] for column in result["ColumnMetadata"]]
    rows = [
        dict(zip(columns, (next(iter(f.values())) for f in record), strict=True))
        for record in result["Records"]
    ]
    return {row["job_name"]: row for row in rows}


def integration(stage: Stage, name: str = INTEGRATION) -> dict[str, Any]:
    (found,) = [
        i
        for i in stage.client("redshift").describe_integrations()["Integrations"]
        if i["IntegrationName"] == name
    ]
    return found


# -- the stream ----------------------------------------------------------------------------------


def test_creates_an_encrypted_stream_into_the_staging_bucket(dev: Stage) -> None:
    outcome = converge(dev, "firehose")

    assert [(r.name, r.state) for r in outcome.resources] == [(LOG_GROUP, "missing"), (STREAM, "missing")]
    assert outcome.resources[1].depends_on == (LOG_GROUP,)
    found = described(dev)
    assert found["DeliveryStreamType"] == "DirectPut"
    assert found["DeliveryStreamEncryptionConfiguration"]["KeyType"] == "AWS_OWNED_CMK"
    assert "RedshiftDestinationDescription" not in found["Destinations"][0]
    staging = destination(dev)
    assert staging["RoleARN"] == f"arn:aws:iam::{dev.account_id}:role/iotile-firehose-dev"
    assert staging["BucketARN"] == "arn:aws:s3:::iotile-stream-in"
    # Errors beside the records, not under them: the COPY JOB loads every new object under its prefix.
    assert (staging["Prefix"], staging["ErrorOutputPrefix"]) == ("dev/data/", "dev/errors/")
    assert staging["BufferingHints"] == {"SizeInMBs": 5, "IntervalInSeconds": 60}
    assert staging["CompressionFormat"] == "UNCOMPRESSED"
    assert staging["CloudWatchLoggingOptions"] == {
        "Enabled": True,
        "LogGroupName": LOG_GROUP,
        "LogStreamName": "S3Delivery",
    }
    tags = dev.client("firehose").list_tags_for_delivery_stream(DeliveryStreamName=STREAM)["Tags"]
    assert {"Key": "Stage", "Value": "dev"} in tags
    logs = dev.client("logs")
    (group,) = logs.describe_log_groups(logGroupNamePrefix=LOG_GROUP)["logGroups"]
    assert group["retentionInDays"] == 30
    streams = logs.describe_log_streams(logGroupName=LOG_GROUP)["logStreams"]
    assert [s["logStreamName"] for s in streams] == ["S3Delivery"]
    names = dev.client("firehose").list_delivery_streams()["DeliveryStreamNames"]
    assert names == [STREAM]  # time series is off by default


def test_the_private_cluster_refuses_direct_delivery(dev: Stage) -> None:
    """Why the streams stage in S3: the cluster `up` makes is what Firehose cannot deliver into."""
    cluster = redshift.read_cluster(dev, STREAM)
    assert (cluster.publicly_accessible, cluster.enhanced_vpc_routing) == (False, True)
    into_redshift = {
        "RoleARN": f"arn:aws:iam::{dev.account_id}:role/iotile-firehose-dev",
        "ClusterJDBCURL": redshift.jdbc_url(dev),
        "CopyCommand": {"DataTableName": "streamdata"},
        "Username": "iotile",
        "Password": "not-needed-any-more",
        "S3Configuration": {
            "RoleARN": "arn:aws:iam::123456789012:role/x",
            "BucketARN": "arn:aws:s3:::iotile-stream-in",
        },
    }
    with pytest.raises(ClientError, match="not publicly accessible and has enhanced VPC routing"):
        dev.client("firehose").create_delivery_stream(
            DeliveryStreamName="direct", RedshiftDestinationConfiguration=into_redshift
        )


def test_firehose_never_reads_the_redshift_password(dev: Stage, call_log) -> None:
    dev.on_call(call_log)

    outcome = converge(dev, "firehose")

    steps = json.dumps([s.describe() for r in outcome.resources for s in r.steps])
    assert "Password" not in steps and "REDSHIFT_PASSWORD" not in steps
    assert not [call for call in call_log.calls if call[0] in ("ssm", "redshift")]


def test_dry_run_on_an_empty_account_plans_and_calls_nothing(make_stage, call_log) -> None:
    preview = converge(make_stage("dev", read_only=True, log=call_log), "firehose", dry_run=True)

    assert operations(preview.resources) == [
        "CreateLogGroup",
        "PutRetentionPolicy",
        "CreateLogStream",
        "CreateDeliveryStream",
    ]
    create = preview.resources[1].steps[0].shown_params()
    assert create["ExtendedS3DestinationConfiguration"]["Prefix"] == "dev/data/"
    assert "RedshiftDestinationConfiguration" not in create
    assert isinstance(preview.resources[1].steps[-1], Wait)
    assert call_log.mutating == []


def test_second_run_makes_no_mutating_call(dev: Stage, call_log) -> None:
    converge(dev, "firehose")
    dev.on_call(call_log)

    again = converge(dev, "firehose")

    assert changed(again.resources) == []
    assert {r.state for r in again.resources} == {"present"}
    assert call_log.mutating == []


def test_buffering_changed_by_hand_is_set_back_by_update_destination(dev: Stage, call_log) -> None:
    converge(dev, "firehose")
    hints = {"SizeInMBs": 64, "IntervalInSeconds": 300}
    update_destination(dev, ExtendedS3DestinationUpdate={"BufferingHints": hints})
    version = described(dev)["VersionId"]
    dev.on_call(call_log)

    drifted = converge(dev, "firehose")

    assert changed(drifted.resources) == [STREAM]
    (call,) = drifted.resources[1].calls
    assert call.operation == "UpdateDestination"
    assert call.reason.startswith("buffering is {") and ", config says {" in call.reason
    assert call.params["CurrentDeliveryStreamVersionId"] == version
    assert set(call.params) >= {"ExtendedS3DestinationUpdate"}
    assert [op for _, op in call_log.mutating] == ["UpdateDestination"]
    assert destination(dev)["BufferingHints"] == {"SizeInMBs": 5, "IntervalInSeconds": 60}
    assert changed(converge(dev, "firehose").resources) == []


def test_a_stream_into_redshift_from_before_becomes_an_s3_stream(dev: Stage, call_log) -> None:
    """The old stack delivered into a public cluster without enhanced VPC routing; once the
    cluster is private, its stream is drift, put right with UpdateDestination to S3."""
    rs = dev.client("redshift")
    rs.modify_cluster(ClusterIdentifier=STREAM, PubliclyAccessible=True, EnhancedVpcRouting=False)
    role = f"arn:aws:iam::{dev.account_id}:role/iotile-firehose-dev"
    dev.client("firehose").create_delivery_stream(
        DeliveryStreamName=STREAM,
        DeliveryStreamEncryptionConfigurationInput={"KeyType": "AWS_OWNED_CMK"},
        Tags=dev.tag_list(dev.tags(STREAM)),
        RedshiftDestinationConfiguration={
            "RoleARN": role,
            "ClusterJDBCURL": redshift.jdbc_url(dev),
            "CopyCommand": {"DataTableName": "streamdata"},
            "Username": "iotile",
            "Password": "the-old-password",
            "S3Configuration": {
                "RoleARN": role,
                "BucketARN": "arn:aws:s3:::iotile-stream-in",
                "Prefix": "dev/",
            },
        },
    )
    assert operations(converge(dev, "redshift").resources) == ["ModifyCluster"]
    # The old destination cannot even be touched now: the cluster is out of Firehose's reach.
    with pytest.raises(ClientError, match="InvalidArgumentException"):
        update_destination(dev, RedshiftDestinationUpdate={"CopyCommand": {"DataTableName": "streamdata"}})
    dev.on_call(call_log)

    drifted = converge(dev, "firehose")

    assert drifted.resources[1].state == "drifted"
    (call,) = drifted.resources[1].calls
    assert (call.operation, call.reason) == ("UpdateDestination", "destination is Redshift, not S3")
    assert "Password" not in json.dumps(call.params)
    assert [op for service, op in call_log.mutating if service == "firehose"] == ["UpdateDestination"]
    staging = destination(dev)
    assert (staging["BucketARN"], staging["Prefix"]) == ("arn:aws:s3:::iotile-stream-in", "dev/data/")
    assert staging["BufferingHints"] == {"SizeInMBs": 5, "IntervalInSeconds": 60}
    call_log.clear()
    assert changed(converge(dev, "firehose").resources) == []
    assert call_log.mutating == []


def test_encryption_turned_off_is_turned_back_on(dev: Stage) -> None:
    converge(dev, "firehose")
    dev.client("firehose").stop_delivery_stream_encryption(DeliveryStreamName=STREAM)

    drifted = converge(dev, "firehose")

    assert operations(drifted.resources) == ["StartDeliveryStreamEncryption"]
    assert described(dev)["DeliveryStreamEncryptionConfiguration"]["Status"] == "ENABLED"
    assert changed(converge(dev, "firehose").resources) == []


def test_buffering_from_config(make_stage, config_copy) -> None:
    stage = make_stage("dev")
    ready(stage)
    converge(stage, "firehose")
    edited = "firehose:\n  stream_data:\n    buffer_mb: 16\n    buffer_seconds: 120\n"
    changed_stage = make_stage("dev", config_dir=config_copy("dev", edited))

    drifted = converge(changed_stage, "firehose")

    (call,) = drifted.resources[1].calls
    assert call.reason == (
        'buffering is {"IntervalInSeconds":60,"SizeInMBs":5}, '
        'config says {"IntervalInSeconds":120,"SizeInMBs":16}'
    )
    assert destination(stage)["BufferingHints"] == {"SizeInMBs": 16, "IntervalInSeconds": 120}
    assert changed(converge(changed_stage, "firehose").resources) == []


def test_log_retention_and_a_deleted_log_stream_are_restored(dev: Stage) -> None:
    converge(dev, "firehose")
    logs = dev.client("logs")
    logs.put_retention_policy(logGroupName=LOG_GROUP, retentionInDays=3)
    logs.delete_log_stream(logGroupName=LOG_GROUP, logStreamName="S3Delivery")

    drifted = converge(dev, "firehose")

    assert operations(drifted.resources) == ["PutRetentionPolicy", "CreateLogStream"]
    assert logs.describe_log_groups(logGroupNamePrefix=LOG_GROUP)["logGroups"][0]["retentionInDays"] == 30
    assert changed(converge(dev, "firehose").resources) == []


def test_stream_still_creating_is_only_awaited(dev: Stage) -> None:
    converge(dev, "firehose")
    moto_stream(dev).delivery_stream_status = "CREATING"
    moto_stream(dev).delivery_stream_encryption_configuration = None  # drift too: still only the wait

    stream = firehose.plan(dev)[1]

    assert stream.state == "pending"
    (step,) = stream.steps
    assert isinstance(step, Wait) and step.ready == {"ACTIVE"}
    assert step.probe(dev) == "CREATING"
    moto_stream(dev).delivery_stream_status = "ACTIVE"
    assert operations([firehose.plan(dev)[1]]) == ["StartDeliveryStreamEncryption"]


# -- the auto-copy -------------------------------------------------------------------------------


def test_copy_job_is_made_once_through_the_data_api(dev: Stage, call_log) -> None:
    dev.on_call(call_log)

    outcome = converge(dev, "firehose", "autocopy")

    made = [op for service, op in call_log.mutating if service in ("redshift", "redshift-data")]
    assert made == ["PutResourcePolicy", "CreateIntegration", "ExecuteStatement", "ModifyIntegration"]
    by_name = {r.name: r for r in outcome.resources}
    assert by_name[JOB].depends_on == (INTEGRATION,)
    execute = next(c for c in by_name[JOB].calls if c.operation == "ExecuteStatement")
    # Temporary credentials of the master user through the Data API: no password anywhere.
    assert {k: execute.params[k] for k in ("ClusterIdentifier", "Database", "DbUser")} == {
        "ClusterIdentifier": STREAM,
        "Database": "iotile",
        "DbUser": "iotile",
    }
    assert execute.params["Sql"] == (
        f"COPY streamdata FROM 's3://iotile-stream-in/dev/data/' IAM_ROLE '{COPY_ROLE}' "
        "json 'auto' timeformat 'auto' truncatecolumns JOB CREATE iotile_dev_stream_data AUTO ON"
    )
    (job,) = copy_jobs(dev).values()
    assert (job["job_name"], job["iam_role"], job["is_auto"]) == (JOB, COPY_ROLE, 1)
    assert job["job_text"].startswith("COPY streamdata FROM 's3://iotile-stream-in/dev/data/'")
    found = integration(dev)
    namespace = redshift.namespace_arn(dev)
    assert (found["SourceArn"], found["TargetArn"], found["Status"]) == (
        "arn:aws:s3:::iotile-stream-in",
        namespace,
        "active",
    )
    assert f"COPY JOB {JOB}" in found["Description"]
    policy = json.loads(
        dev.client("redshift").get_resource_policy(ResourceArn=namespace)["ResourcePolicy"]["Policy"]
    )
    assert {s["Action"] for s in policy["Statement"]} == {
        "redshift:AuthorizeInboundIntegration",
        "redshift:CreateInboundIntegration",
    }
    assert {s["Condition"]["StringEquals"]["aws:SourceArn"] for s in policy["Statement"]} == {
        "arn:aws:s3:::iotile-stream-in"
    }
    bucket = json.loads(dev.client("s3").get_bucket_policy(Bucket="iotile-stream-in")["Policy"])
    (grant,) = [s for s in bucket["Statement"] if s["Sid"] == "iotile-deploy-dev-redshift-autocopy"]
    assert grant["Principal"] == {"Service": "redshift.amazonaws.com"}
    assert grant["Condition"]["StringEquals"] == {"aws:SourceAccount": dev.account_id}
    call_log.clear()

    again = converge(dev, "firehose", "autocopy")

    assert changed(again.resources) == [] and again.calls == 0
    assert {r.state for r in again.resources} == {"present"}
    assert call_log.mutating == [], "reading the job must not run SQL"
    assert len(copy_jobs(dev)) == 1


def test_autocopy_dry_run_on_an_empty_account_calls_nothing(make_stage, call_log) -> None:
    preview = converge(make_stage("dev", read_only=True, log=call_log), "autocopy", dry_run=True)

    assert [(r.kind, r.name, r.state) for r in preview.resources] == [
        ("S3 event integration", INTEGRATION, "missing"),
        ("COPY job", JOB, "missing"),
    ]
    assert operations(preview.resources) == [
        "PutResourcePolicy",
        "CreateIntegration",
        "ExecuteStatement",
        "ModifyIntegration",
    ]
    create = next(c for c in preview.resources[0].calls if c.operation == "CreateIntegration")
    assert create.shown_params()["TargetArn"] == f"<namespace ARN of Redshift cluster {STREAM}>"
    assert call_log.mutating == []


def test_copy_options_changed_in_config_drop_and_make_the_job_again(
    make_stage, config_copy, call_log
) -> None:
    stage = make_stage("dev")
    ready(stage)
    converge(stage, "firehose", "autocopy")
    edited = "firehose:\n  stream_data:\n    copy_options: \"json 'auto' gzip\"\n"
    changed_stage = make_stage("dev", config_dir=config_copy("dev", edited), log=call_log)

    drifted = converge(changed_stage, "autocopy")

    (job,) = [r for r in drifted.resources if r.name == JOB]
    assert job.drift == ("COPY JOB command differs from config",)
    statements = [c.params["Sql"] for c in job.calls if c.operation == "ExecuteStatement"]
    assert statements[0] == f"COPY JOB DROP {JOB}"
    assert statements[1].endswith("json 'auto' gzip JOB CREATE iotile_dev_stream_data AUTO ON")
    assert [op for _, op in call_log.mutating] == [
        "ExecuteStatement",
        "ExecuteStatement",
        "ModifyIntegration",
    ]
    assert copy_jobs(stage)[JOB]["job_text"].endswith("json 'auto' gzip")
    call_log.clear()
    assert changed(converge(changed_stage, "autocopy").resources) == []
    assert call_log.mutating == []


def test_a_job_dropped_by_hand_is_made_again_when_config_changes(make_stage, config_copy) -> None:
    stage = make_stage("dev")
    ready(stage)
    converge(stage, "autocopy")
    assert run_sql(stage, f"COPY JOB DROP {JOB}")["Status"] == "FINISHED"
    edited = "firehose:\n  stream_data:\n    copy_options: \"json 'auto'\"\n"

    converge(make_stage("dev", config_dir=config_copy("dev", edited)), "autocopy")

    assert copy_jobs(stage)[JOB]["job_text"].endswith("json 'auto'")


def test_stream_and_copy_job_show_in_status(make_stage, config_copy, capsys) -> None:
    stage = make_stage("dev")
    ready(stage)

    def states(at: Stage) -> dict[str, str]:
        capsys.readouterr()
        Reporter(as_json=True).status(status_of(at, ["firehose", "autocopy"]))
        rows = json.loads(capsys.readouterr().out)["resources"]
        return {row["name"]: row["state"] for row in rows if row["name"] in (STREAM, INTEGRATION, JOB)}

    assert states(stage) == {STREAM: "missing", INTEGRATION: "missing", JOB: "missing"}
    converge(stage, "firehose", "autocopy")
    assert states(stage) == {STREAM: "present", INTEGRATION: "present", JOB: "present"}
    edited = "firehose:\n  stream_data:\n    table: streamdata2\n"
    assert states(make_stage("dev", config_dir=config_copy("dev", edited))) == {
        STREAM: "present",
        INTEGRATION: "present",
        JOB: "drifted",
    }


def test_an_integration_the_bucket_does_not_allow_fails_naming_the_policy(dev: Stage) -> None:
    dev.client("s3").delete_bucket_policy(Bucket="iotile-stream-in")

    with pytest.raises(AwsError, match=r"needs_attention.*bucket policy of arn:aws:s3:::iotile-stream-in"):
        converge(dev, "autocopy")

    converge(dev, "s3")  # the bucket policy, with the integration's statement, is put back
    assert integration(dev)["Status"] == "active"
    assert operations(converge(dev, "autocopy").resources) == ["ExecuteStatement", "ModifyIntegration"]
    assert JOB in copy_jobs(dev)


def test_timeseries_stream_and_job_only_when_its_cluster_is_enabled(make_stage, config_copy) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", TIMESERIES_ON))
    ready(stage)

    outcome = converge(stage, "firehose", "autocopy")

    assert [r.name for r in outcome.resources] == [
        LOG_GROUP,
        STREAM,
        TIMESERIES,
        INTEGRATION,
        JOB,
        "iotile-dev-timeseries",
        "iotile_dev_timeseries",
    ]
    assert destination(stage, TIMESERIES)["BucketARN"] == "arn:aws:s3:::iotile-timeseries-kinesis"
    (job,) = copy_jobs(stage, TIMESERIES, "timeseries").values()
    assert job["job_text"].startswith("COPY timeseries FROM 's3://iotile-timeseries-kinesis/dev/data/'")
    assert integration(stage, "iotile-dev-timeseries")["TargetArn"] == redshift.namespace_arn(
        stage, "timeseries"
    )
    assert autocopy.bucket_policy_statements(stage, "iotile-timeseries-kinesis")
    assert autocopy.bucket_policy_statements(stage, "iotile-cloud-reports") == []


def test_a_cluster_made_again_gets_its_integration_and_job_made_again(dev: Stage, call_log) -> None:
    converge(dev, "autocopy")
    old = integration(dev)
    dev.client("redshift").delete_cluster(ClusterIdentifier=STREAM, SkipFinalClusterSnapshot=True)
    converge(dev, "redshift")
    dev.on_call(call_log)

    remade = converge(dev, "autocopy")

    assert [op for _, op in call_log.mutating] == [
        "PutResourcePolicy",
        "DeleteIntegration",
        "CreateIntegration",
        "ExecuteStatement",  # the drop: the new cluster has no job, which is as good as dropped
        "ExecuteStatement",
        "ModifyIntegration",
    ]
    assert {r.name: r.drift for r in remade.resources}[JOB] == ("its integration is made again",)
    new = integration(dev)
    assert new["IntegrationArn"] != old["IntegrationArn"]
    assert (new["TargetArn"], new["Status"]) == (redshift.namespace_arn(dev), "active")
    assert JOB in copy_jobs(dev)
    assert changed(converge(dev, "autocopy").resources) == []


# -- direct delivery (firehose.delivery: direct) ---------------------------------------------------

DIRECT = "firehose:\n  delivery: direct\n"
FIREHOSE_US_EAST_1 = "52.70.63.192/27"  # AWS's published range for Firehose in us-east-1


def port_5439_sources(stage: Stage) -> set[str]:
    """Where the data group admits Redshift's port from: CIDRs, or group ids."""
    ec2 = stage.client("ec2")
    name = stage.config.network.data_security_group
    (group,) = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])[
        "SecurityGroups"
    ]
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group["GroupId"]]}])
    return {
        rule.get("CidrIpv4") or rule.get("CidrIpv6") or rule["ReferencedGroupInfo"]["GroupId"]
        for rule in rules["SecurityGroupRules"]
        if not rule["IsEgress"] and rule.get("FromPort") == 5439
    }


def world_rules(stage: Stage) -> list[dict[str, Any]]:
    rules = stage.client("ec2").describe_security_group_rules()["SecurityGroupRules"]
    return [r for r in rules if not r["IsEgress"] and r.get("CidrIpv4") in ("0.0.0.0/0",)]


def subnet_names(stage: Stage, group: str) -> set[str]:
    found = stage.client("redshift").describe_cluster_subnet_groups(ClusterSubnetGroupName=group)
    ids = [s["SubnetIdentifier"] for s in found["ClusterSubnetGroups"][0]["Subnets"]]
    subnets = stage.client("ec2").describe_subnets(SubnetIds=ids)["Subnets"]
    return {next(t["Value"] for t in s["Tags"] if t["Key"] == "Name") for s in subnets}


def test_staged_delivery_keeps_the_cluster_private_and_5439_closed_to_every_address(dev: Stage) -> None:
    converge(dev, "firehose", "autocopy")

    app_group = redshift.network.security_group_id(dev, dev.config.network.app_security_group)
    assert port_5439_sources(dev) == {app_group}
    assert world_rules(dev) == []
    assert all("-private-" in name for name in subnet_names(dev, dev.config.network.redshift_subnet_group))
    cluster = redshift.read_cluster(dev, STREAM)
    assert (cluster.publicly_accessible, cluster.enhanced_vpc_routing) == (False, True)
    assert described(dev)["Destinations"][0].keys() >= {"ExtendedS3DestinationDescription"}
    assert [r.kind for r in autocopy.plan(dev)] == [autocopy.INTEGRATION_KIND, autocopy.JOB_KIND]


def test_direct_delivery_opens_5439_to_firehose_only_and_delivers_into_a_public_cluster(
    make_stage, config_copy, call_log
) -> None:
    from deploy.secrets import read_secret

    direct = make_stage("dev", config_dir=config_copy("dev", DIRECT))
    ready(direct)

    outcome = converge(direct, "firehose", "autocopy")

    app_group = redshift.network.security_group_id(direct, direct.config.network.app_security_group)
    assert port_5439_sources(direct) == {app_group, FIREHOSE_US_EAST_1}
    assert world_rules(direct) == []
    assert all(
        "-public-" in name for name in subnet_names(direct, direct.config.network.redshift_subnet_group)
    )
    cluster = redshift.read_cluster(direct, STREAM)
    assert (cluster.publicly_accessible, cluster.enhanced_vpc_routing) == (True, False)
    into = described(direct)["Destinations"][0]["RedshiftDestinationDescription"]
    assert into["ClusterJDBCURL"] == redshift.jdbc_url(direct)
    assert (into["Username"], into["CopyCommand"]["DataTableName"]) == ("iotile", "streamdata")
    assert into["S3DestinationDescription"]["Prefix"] == "dev/data/"
    # No integration nor COPY JOB: Firehose runs the COPY.
    assert autocopy.plan(direct) == []
    # The password went to Firehose, and nowhere else: not in a step of the plan or the report.
    password = read_secret(direct, "REDSHIFT_PASSWORD")[1]
    shown = json.dumps([s.describe() for r in outcome.resources for s in r.steps])
    create = outcome.resources[1].steps[0].shown_params()
    assert create["RedshiftDestinationConfiguration"]["Password"] == REDACTED
    assert password not in shown
    direct.on_call(call_log)
    again = converge(direct, "network", "redshift", "firehose", "autocopy")
    assert changed(again.resources) == []
    assert call_log.mutating == []


def test_switching_delivery_converges_both_ways(dev: Stage, make_stage, config_copy) -> None:
    converge(dev, "firehose")
    direct = make_stage("dev", config_dir=config_copy("dev", DIRECT))

    to_direct = converge(direct, "network", "redshift", "firehose")

    assert "AuthorizeSecurityGroupIngress" in operations(to_direct.resources)
    assert "ModifyCluster" in operations(to_direct.resources)
    assert "RedshiftDestinationDescription" in described(direct)["Destinations"][0]
    assert FIREHOSE_US_EAST_1 in port_5439_sources(direct)

    back = converge(dev, "network", "redshift", "firehose")

    assert "RevokeSecurityGroupIngress" in operations(back.resources)
    assert FIREHOSE_US_EAST_1 not in port_5439_sources(dev)
    cluster = redshift.read_cluster(dev, STREAM)
    assert (cluster.publicly_accessible, cluster.enhanced_vpc_routing) == (False, True)
    assert "ExtendedS3DestinationDescription" in described(dev)["Destinations"][0]
    assert changed(converge(dev, "network", "redshift", "firehose").resources) == []


def test_direct_dry_run_on_an_empty_account_reads_no_password_and_changes_nothing(
    make_stage, config_copy, call_log
) -> None:
    direct = make_stage("dev", read_only=True, log=call_log, config_dir=config_copy("dev", DIRECT))

    preview = converge(direct, "network", "redshift", "firehose", dry_run=True)

    create = next(
        s for r in preview.resources for s in r.steps if getattr(s, "operation", "") == "CreateDeliveryStream"
    )
    into = create.shown_params()["RedshiftDestinationConfiguration"]
    assert into["Password"] == REDACTED
    assert into["ClusterJDBCURL"] == "<JDBC URL of Redshift cluster iotile-stream-data-dev>"
    cluster = next(
        s for r in preview.resources for s in r.steps if getattr(s, "operation", "") == "CreateCluster"
    )
    assert (cluster.params["PubliclyAccessible"], cluster.params["EnhancedVpcRouting"]) == (True, False)
    ingress = [
        p
        for r in preview.resources
        for s in r.steps
        if getattr(s, "operation", "") == "AuthorizeSecurityGroupIngress"
        for p in s.params["IpPermissions"]
    ]
    assert [r["CidrIp"] for p in ingress for r in p.get("IpRanges", [])] == [FIREHOSE_US_EAST_1]
    assert call_log.mutating == []
    # The stream's plan reads no secret: the password is read only when the create call runs.
    call_log.clear()
    converge(direct, "firehose", dry_run=True)
    assert [call for call in call_log.calls if call[0] == "ssm"] == []


def test_a_job_made_by_a_run_killed_before_it_recorded_it_is_recorded_not_made_again(dev: Stage) -> None:
    converge(dev, "autocopy")
    job = next(r for r in converge(dev, "autocopy").resources if r.name == JOB)
    sql = autocopy.job_specs(dev)[0].copy_sql
    # As a killed run leaves it: the job made inside the database, its integration without a record.
    run_sql(dev, f"COPY JOB DROP {JOB}")
    found = integration(dev)
    dev.client("redshift").modify_integration(IntegrationArn=found["IntegrationArn"], Description="")
    assert run_sql(dev, sql)["Status"] == "FINISHED"

    resumed = converge(dev, "autocopy")

    assert operations(resumed.resources, JOB) == ["ExecuteStatement", "ModifyIntegration"]
    assert f"COPY JOB {JOB}" in integration(dev)["Description"]
    assert list(copy_jobs(dev)) == [JOB]
    assert job.state == "present" and changed(converge(dev, "autocopy").resources) == []
