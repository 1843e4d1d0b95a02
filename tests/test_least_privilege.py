"""The security hardening of IAM and KMS, asserted on every policy of every stage: no AWS managed
policy that writes outside the stage, SNS publishers can use the notifications key, every secret
read by exact name and only by the roles that use it, MFA for developers on production, listing of
shared buckets limited to the stage's folder, and every ARN in the stage's partition."""

from __future__ import annotations

import pytest

from deploy.areas import iam, kms
from deploy.errors import ConfigError
from deploy.policies import dns_suffix, partition
from deploy.stage import Stage
from tests.helpers import changed, converge

STAGES = ["dev", "stage", "prod", "local"]
PUBLISH_KEY_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey*"]
READ_SECRET = ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath")
S3_WRITES = ("s3:PutObject", "s3:DeleteObject", "s3:PutObjectAcl", "s3:RestoreObject")


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def documents(stage: Stage) -> dict[str, dict]:
    return {spec.name: spec.document for spec in iam.policy_specs(stage)}


def role_statements(stage: Stage) -> dict[str, list[dict]]:
    """Every role's statements: those of all the customer policies it holds."""
    docs = documents(stage)
    return {
        spec.name: [s for policy in spec.customer_policies for s in docs[policy]["Statement"]]
        for spec in iam.role_specs(stage)
    }


def secrets_read(stage: Stage, statements: list[dict]) -> set[str]:
    prefix = f":parameter{stage.config.secrets.prefix}/"
    return {
        resource.split(prefix, 1)[1]
        for s in statements
        if set(as_list(s["Action"])) & set(READ_SECRET)
        for resource in as_list(s["Resource"])
    }


def strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [text for item in items for text in strings(item)]


# -- 1, 2: no AWS managed policy writing outside the stage; instances scoped to their stage -------


@pytest.mark.parametrize("stage_name", STAGES)
def test_only_the_beanstalk_service_role_holds_aws_managed_policies(make_stage, stage_name: str) -> None:
    stage = make_stage(stage_name)
    held = {spec.name: spec.managed_policies for spec in iam.role_specs(stage)}
    service_role = stage.config.iam.eb_service_role
    assert {name for name, managed in held.items() if managed} == {service_role}
    assert {arn.rsplit("/", 1)[1] for arn in held[service_role]} == {
        "AWSElasticBeanstalkEnhancedHealth",
        "AWSElasticBeanstalkManagedUpdatesCustomerRolePolicy",
    }
    text = repr(held)
    assert "AWSElasticBeanstalkWebTier" not in text and "AmazonEC2ContainerServiceforEC2Role" not in text


@pytest.mark.aws_managed_policies
def test_converged_roles_hold_no_other_aws_managed_policy(make_stage) -> None:
    stage = make_stage("dev")
    converge(stage, "iam")
    client = stage.client("iam")
    for spec in iam.role_specs(stage):
        attached = client.list_attached_role_policies(RoleName=spec.name)["AttachedPolicies"]
        managed = {p["PolicyArn"] for p in attached if ":iam::aws:policy/" in p["PolicyArn"]}
        assert managed == set(spec.managed_policies), spec.name
    assert changed(converge(stage, "iam").resources) == []


@pytest.mark.parametrize("stage_name", STAGES)
def test_no_role_writes_where_beanstalk_keeps_what_it_runs(make_stage, stage_name: str) -> None:
    stage = make_stage(stage_name)
    config = stage.config
    bucket = f"arn:aws:s3:::elasticbeanstalk-{stage.region}-{stage.account_id}"
    for name, statements in role_statements(stage).items():
        for statement in statements:
            actions, resources = as_list(statement["Action"]), as_list(statement["Resource"])
            beanstalk = [r for r in resources if r.startswith(("arn:aws:s3:::elasticbeanstalk", "*"))]
            if beanstalk and set(actions) & set(S3_WRITES):
                # Nothing under logs/ is ever run: no instance can replace another stage's bundle.
                assert actions == ["s3:PutObject"], (name, statement)
                assert beanstalk == [f"{bucket}/resources/environments/logs/*"], (name, statement)
    for name in (config.iam.production_role, config.iam.eb_ec2_role):
        statements = role_statements(stage)[name]
        logs = [
            r
            for s in statements
            if "logs:PutLogEvents" in as_list(s["Action"])
            for r in as_list(s["Resource"])
        ]
        assert logs == [
            f"arn:aws:logs:{stage.region}:{stage.account_id}:log-group:/aws/elasticbeanstalk/{config.eb.environment}/*"
        ]
        health = [s for s in statements if "elasticbeanstalk:PutInstanceStatistics" in as_list(s["Action"])]
        assert [r for r in as_list(health[0]["Resource"]) if ":environment/" in r] == [
            f"arn:aws:elasticbeanstalk:{stage.region}:{stage.account_id}:environment/"
            f"{config.eb.application}/{config.eb.environment}"
        ]


@pytest.mark.parametrize("stage_name", STAGES)
def test_ecs_instances_serve_only_their_stage_cluster(make_stage, stage_name: str) -> None:
    stage = make_stage(stage_name)
    cluster = f"arn:aws:ecs:{stage.region}:{stage.account_id}:cluster/{stage.config.ecs.cluster}"
    statements = role_statements(stage)[stage.config.iam.ecs_instance_role]
    granted = {action for s in statements for action in as_list(s["Action"])}
    assert {"ecs:RegisterContainerInstance", "ecs:Poll", "ecs:SubmitTaskStateChange"} <= granted
    for statement in statements:
        actions, resources = as_list(statement["Action"]), as_list(statement["Resource"])
        if resources == ["*"]:
            assert actions == ["ecs:DiscoverPollEndpoint"]  # AWS scopes it to nothing
        elif "ecs:Poll" in actions:
            # Container instance ARNs carry the cluster in their path; the condition says it again.
            assert statement["Condition"] == {"ArnEquals": {"ecs:cluster": cluster}}
        else:
            assert resources == [cluster], statement


def test_stages_have_their_own_ecs_cluster(make_stage) -> None:
    assert len({make_stage(name).config.ecs.cluster for name in STAGES}) == len(STAGES)


# -- 3: SNS publishers use the notifications key, through SNS only --------------------------------


@pytest.mark.parametrize("stage_name", STAGES)
def test_every_sns_publisher_may_use_the_key_through_sns_only(make_stage, stage_name: str) -> None:
    stage = make_stage(stage_name)
    via_sns = {"StringEquals": {"kms:ViaService": f"sns.{stage.region}.amazonaws.com"}}
    publishers = set()
    for name, statements in role_statements(stage).items():
        if not any("sns:Publish" in as_list(s["Action"]) for s in statements):
            continue
        publishers.add(name)
        key_use = [s for s in statements if set(as_list(s["Action"])) & set(PUBLISH_KEY_ACTIONS)]
        key_use = [s for s in key_use if "sns." in repr(s.get("Condition"))]
        assert len(key_use) == 1, name
        assert sorted(as_list(key_use[0]["Action"])) == PUBLISH_KEY_ACTIONS
        assert key_use[0]["Condition"] == via_sns
    config = stage.config.iam
    assert publishers == {
        config.production_role,
        config.ecs_task_role,
        config.lambda_roles.health,
        config.lambda_roles.delete_s3_obj,
    }


@pytest.mark.parametrize("stage_name", STAGES)
def test_no_role_may_use_a_key_for_sns_without_publishing(make_stage, stage_name: str) -> None:
    stage = make_stage(stage_name)
    # Beanstalk's service role publishes through its AWS managed policy (checked below).
    beanstalk = stage.config.iam.eb_service_role
    for name, statements in role_statements(stage).items():
        if name != beanstalk and any("sns." in repr(s.get("Condition")) for s in statements):
            assert any("sns:Publish" in as_list(s["Action"]) for s in statements), name


def test_the_key_policy_leaves_its_use_to_the_account_iam_policies(make_stage) -> None:
    """A grant in a role's own policy counts only when the key policy delegates to the account."""
    stage = make_stage("dev")
    (spec,) = kms.key_specs(stage)
    root = next(s for s in spec.policy["Statement"] if s["Sid"] == kms.ROOT_SID)
    assert root["Principal"] == {"AWS": f"arn:aws:iam::{stage.account_id}:root"}
    assert (root["Effect"], root["Action"]) == ("Allow", "kms:*")
    services = next(s for s in spec.policy["Statement"] if s["Sid"] == kms.SERVICES_SID)
    assert services["Condition"]["StringLike"] == {
        kms.SNS_CONTEXT: f"arn:aws:sns:{stage.region}:{stage.account_id}:*"
    }


# -- 4: every secret by exact name, and only by the roles that use it -----------------------------


@pytest.mark.parametrize("stage_name", STAGES)
def test_no_secret_is_readable_by_wildcard(make_stage, stage_name: str) -> None:
    stage = make_stage(stage_name)
    for name, document in documents(stage).items():
        for statement in document["Statement"]:
            actions = as_list(statement["Action"])
            if any(action.startswith("ssm:GetParameter") for action in actions):
                assert "ssm:GetParametersByPath" not in actions, name
                assert not any("*" in r for r in as_list(statement["Resource"])), name
            if "kms:Decrypt" in actions and "ssm." in repr(statement.get("Condition")):
                exact = statement["Condition"]["StringEquals"]["kms:EncryptionContext:PARAMETER_ARN"]
                assert not any("*" in arn for arn in as_list(exact)), name


@pytest.mark.parametrize("stage_name", STAGES)
def test_each_role_reads_exactly_the_secrets_config_gives_it(make_stage, stage_name: str) -> None:
    stage = make_stage(stage_name)
    config = stage.config
    readers = {
        config.iam.production_role: "app",
        config.iam.ecs_task_role: "workers",
        config.iam.ecs_execution_role: "worker_task_definition",
        **{name: key for key, name in config.iam.lambda_roles},
    }
    for name, statements in role_statements(stage).items():
        wanted = config.secrets.readers.get(readers.get(name, ""), [])
        assert secrets_read(stage, statements) == set(wanted), name


@pytest.mark.parametrize("stage_name", STAGES)
def test_store_credentials_are_read_only_by_the_app_and_the_workers(make_stage, stage_name: str) -> None:
    """The app and the workers connect to RDS, Redshift and Redis as the master users (the only users
    this tool makes), so they read those passwords; no other role reads any secret by default."""
    stage = make_stage(stage_name)
    config = stage.config
    store_secrets = {
        config.rds.master_password_secret,
        config.redshift.stream_data.password_secret,
        config.redis.auth_token_secret,
    }
    readers_of = {
        secret: {name for name, st in role_statements(stage).items() if secret in secrets_read(stage, st)}
        for secret in (*store_secrets, config.redshift.timeseries.password_secret, "SECRET_KEY")
    }
    app_and_workers = {config.iam.production_role, config.iam.ecs_task_role}
    for secret in (*store_secrets, "SECRET_KEY"):
        assert readers_of[secret] == app_and_workers, secret
    # The time series cluster is off by default: nobody reads its password.
    assert readers_of[config.redshift.timeseries.password_secret] == set()


def test_a_role_left_without_a_store_secret_cannot_read_it(make_stage, config_copy) -> None:
    text = (
        "secrets:\n  required: [SECRET_KEY, HEALTH_API_TOKEN]\n  readers:\n"
        "    app: [SECRET_KEY]\n    workers: [SECRET_KEY, RDS_MASTER_PASSWORD]\n"
        "    worker_task_definition: [REDIS_AUTH_TOKEN]\n    health: [HEALTH_API_TOKEN]\n"
    )
    stage = make_stage("dev", config_dir=config_copy("dev", text))
    config = stage.config.iam
    statements = role_statements(stage)

    assert secrets_read(stage, statements[config.production_role]) == {"SECRET_KEY"}
    assert secrets_read(stage, statements[config.ecs_task_role]) == {"SECRET_KEY", "RDS_MASTER_PASSWORD"}
    assert secrets_read(stage, statements[config.ecs_execution_role]) == {"REDIS_AUTH_TOKEN"}
    assert secrets_read(stage, statements[config.lambda_roles.health]) == {"HEALTH_API_TOKEN"}
    assert secrets_read(stage, statements[config.lambda_roles.s3image]) == set()


def test_a_reader_with_no_secret_holds_no_credentials_policy(make_stage, config_copy) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", "secrets:\n  readers:\n    app: []\n"))
    config = stage.config.iam
    app_role = next(spec for spec in iam.role_specs(stage) if spec.name == config.production_role)
    assert config.credentials_policy not in app_role.customer_policies
    assert config.credentials_policy not in documents(stage)
    assert secrets_read(stage, role_statements(stage)[config.production_role]) == set()


def test_a_secret_config_does_not_know_stops_the_plan(make_stage, config_copy, call_log) -> None:
    text = "secrets:\n  readers:\n    app: [SECRET_KEY, RDS_PASWORD]\n"
    stage = make_stage("dev", config_dir=config_copy("dev", text), log=call_log)

    with pytest.raises(ConfigError) as raised:
        iam.plan(stage)

    assert raised.value.key == "secrets.readers.app" and "RDS_PASWORD" in raised.value.message
    assert call_log.mutating == []


# -- 7: MFA for developers on production ----------------------------------------------------------


@pytest.mark.parametrize("stage_name", STAGES)
def test_developers_need_mfa_where_config_says_so(make_stage, stage_name: str) -> None:
    stage = make_stage(stage_name)
    document = documents(stage)[stage.config.iam.dev_policy]
    mfa = [
        s.get("Condition", {}).get("Bool") == {"aws:MultiFactorAuthPresent": "true"}
        for s in document["Statement"]
    ]
    assert stage.config.iam.dev_requires_mfa is (stage_name == "prod")
    assert mfa == [stage.config.iam.dev_requires_mfa] * len(mfa)


# -- should fix: listing shared buckets, partitions -----------------------------------------------


@pytest.mark.parametrize("stage_name", STAGES)
def test_listing_a_shared_bucket_is_limited_to_the_stage_folder(make_stage, stage_name: str) -> None:
    stage = make_stage(stage_name)
    shared = {f"arn:aws:s3:::{bucket.name}" for _, bucket in stage.config.s3.buckets}
    listed = 0
    for name, document in documents(stage).items():
        for statement in document["Statement"]:
            if "s3:ListBucket" in as_list(statement["Action"]):
                assert set(as_list(statement["Resource"])) <= shared, name
                prefix = statement["Condition"]["StringLike"]["s3:prefix"]
                # The stage's folder, or a folder inside it (COPY reads only {stage}/data/).
                assert as_list(prefix) in ([f"{stage_name}/*"], [f"{stage_name}/data/*"]), name
                listed += 1
    assert listed >= 4  # dev, production, Firehose, Redshift COPY


@pytest.mark.parametrize(
    ("region", "expected"),
    [("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov"), ("eu-west-1", "aws")],
)
def test_every_arn_is_in_the_partition_of_the_region(
    make_stage, config_copy, region: str, expected: str
) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", f"region: {region}\n"))
    assert partition(stage.region) == expected
    texts = strings(
        [
            [spec.document for spec in iam.policy_specs(stage)],
            [(spec.trust, spec.managed_policies) for spec in iam.role_specs(stage)],
            [spec.policy for spec in kms.key_specs(stage)],
            iam.policy_arn(stage, "x"),
            iam.role_arn(stage, "x"),
        ]
    )
    arns = [text for text in texts if text.startswith("arn:")]
    assert len(arns) > 100
    assert [arn for arn in arns if not arn.startswith(f"arn:{expected}:")] == []
    via = [t for t in texts if t.startswith(("sns.", "ssm.")) and t.count(".") >= 3]
    assert via and all(t.endswith(f".{region}.{dns_suffix(region)}") for t in via)


@pytest.mark.parametrize("stage_name", STAGES)
def test_beanstalk_publishes_with_its_service_role_not_a_key_policy_principal(make_stage, stage_name) -> None:
    """Beanstalk publishes to SNS with its service role: the key policy naming its service
    principal had no effect, the role's own grant does."""
    stage = make_stage(stage_name)
    statements = role_statements(stage)[stage.config.iam.eb_service_role]
    (grant,) = statements
    assert sorted(as_list(grant["Action"])) == PUBLISH_KEY_ACTIONS
    assert grant["Condition"] == {"StringEquals": {"kms:ViaService": f"sns.{stage.region}.amazonaws.com"}}
    (spec,) = kms.key_specs(stage)
    services = next(s for s in spec.policy["Statement"] if s["Sid"] == kms.SERVICES_SID)
    assert not {"elasticbeanstalk.amazonaws.com", "elasticache.amazonaws.com"} & set(
        as_list(services["Principal"]["Service"])
    )


# -- the functions' roles allow the calls their handlers make -------------------------------------


def allows(statements: list[dict], action: str, resource: str) -> bool:
    from fnmatch import fnmatchcase

    return any(
        s["Effect"] == "Allow"
        and any(fnmatchcase(action, a) for a in as_list(s["Action"]))
        and any(fnmatchcase(resource, r) for r in as_list(s["Resource"]))
        for s in statements
    )


@pytest.mark.parametrize("stage_name", STAGES)
def test_function_roles_allow_what_their_handlers_call(make_stage, stage_name: str) -> None:
    stage = make_stage(stage_name)
    config, roles = stage.config, role_statements(stage)
    queue = stage.arn("sqs", config.sqs.queues.worker)
    table = stage.arn("dynamodb", f"table/{config.dynamodb.tables.worker_logs}")
    upload = f"arn:aws:s3:::{config.s3.buckets.streamers.name}/{stage.name}/sxd/file.sxd"
    calls = {
        config.iam.lambda_roles.health: [
            ("sqs:GetQueueUrl", queue),
            ("sqs:SendMessage", queue),
            ("dynamodb:Scan", table),
            ("dynamodb:BatchWriteItem", table),
            ("sns:Publish", stage.arn("sns", config.sns.topics.staff_notifications)),
        ],
        config.iam.lambda_roles.process_upload_sxd: [
            ("sqs:GetQueueUrl", queue),
            ("sqs:SendMessage", queue),
            ("s3:GetObject", upload),
        ],
    }
    for role, needed in calls.items():
        for action, resource in needed:
            assert allows(roles[role], action, resource), f"{role} may not {action} {resource}"
    assert not allows(
        roles[config.iam.lambda_roles.health], "dynamodb:Scan", stage.arn("dynamodb", "table/other")
    )


def test_senders_to_kms_queues_may_use_the_key_through_sqs_only(make_stage, config_copy) -> None:
    stage = make_stage("dev", config_dir=config_copy("dev", "sqs:\n  kms_key: alias/iotile-queues\n"))
    roles = role_statements(stage)
    for role in (stage.config.iam.lambda_roles.health, stage.config.iam.lambda_roles.process_upload_sxd):
        (key_use,) = [s for s in roles[role] if "sqs." in repr(s.get("Condition"))]
        assert key_use["Condition"] == {
            "StringEquals": {"kms:ViaService": f"sqs.{stage.region}.amazonaws.com"}
        }
