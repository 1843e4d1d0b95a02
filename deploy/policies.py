"""IAM policy documents: the templates in deploy/templates/iam rendered for one stage's resources."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy.aws import dns_suffix, partition

if TYPE_CHECKING:
    import jinja2

    from deploy.stage import Stage

TEMPLATES = Path(__file__).parent / "templates" / "iam"
# Buckets whose objects live under per-stage folders (`{stage}/...`): access is scoped to them.
DATA_BUCKETS = ("media", "reports", "stream_event_data", "streamers", "streamer_dropdown")
STAGING_BUCKETS = ("stream_in", "timeseries_kinesis")
# Fields AWS takes as one string or a list of them, in any order.
LIST_FIELDS = ("Action", "NotAction", "Resource", "NotResource", "AWS", "Service")


def known_secrets(stage: Stage) -> set[str]:
    """Every secret config names: the required ones and the data stores' generated ones."""
    config = stage.config
    return {
        *config.secrets.required,
        config.rds.master_password_secret,
        config.redshift.stream_data.password_secret,
        config.redshift.timeseries.password_secret,
        config.redis.auth_token_secret,
    }


def secret_arns(stage: Stage, reader: str) -> list[str]:
    """The exact parameter ARNs one reader (a key of secrets.readers) may read; [] for none."""
    from deploy.errors import ConfigError

    config = stage.config
    readers: dict[str, list[str]] = dict(config.secrets.readers)
    wanted = readers.get(reader, [])
    unknown = sorted(set(wanted) - known_secrets(stage))
    if unknown:
        # A misspelt or renamed name would grant a parameter nothing stores, and the role would
        # lack the one it needs: say so instead.
        raise ConfigError(
            "config",
            f"secrets.readers.{reader}",
            f"{', '.join(unknown)} is neither in secrets.required nor a data store's secret",
        )
    base = f"arn:{partition(stage.region)}:ssm:{stage.region}:{stage.account_id}:parameter"
    return [f"{base}{config.secrets.prefix}/{name}" for name in sorted(set(wanted))]


def log_groups(stage: Stage) -> dict[str, str]:
    """CloudWatch log groups other areas write to; named here so policies can name them."""
    return {
        "worker": f"/ecs/iotile-cloud-worker-{stage.name}",
        "firehose": f"/aws/kinesisfirehose/iotile-cloud-{stage.name}",
        "beanstalk": f"/aws/elasticbeanstalk/{stage.config.eb.environment}",
    }


@cache
def _environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        bytecode_cache=_bytecode_cache(),
    )

    @jinja2.pass_context
    def bucket_arn(context: Any, bucket: str) -> str:
        return f"arn:{context['partition']}:s3:::{bucket}"

    @jinja2.pass_context
    def object_arn(context: Any, bucket: str, key: str) -> str:
        return f"arn:{context['partition']}:s3:::{bucket}/{key}"

    env.filters["bucket_arn"] = bucket_arn
    env.filters["object_arn"] = object_arn
    return env


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """The templates compiled once per user, not on every run (jinja2 keys each entry by the
    template's source, so an edited template compiles afresh); none when the folder can't be made."""
    import jinja2

    from deploy.aws.models import user_cache_dir

    folder = user_cache_dir() / "templates"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(folder))


def context(stage: Stage, **extra: Any) -> dict[str, Any]:
    config = stage.config
    region, account, part = stage.region, stage.account_id, partition(stage.region)
    buckets = {key: bucket.name for key, bucket in config.s3.buckets}
    queues = dict(config.sqs.queues)
    suffix = config.sqs.dead_letter_suffix
    topics = dict(config.sns.topics)
    tables = [name for _, name in config.dynamodb.tables]

    def arn(service: str, resource: str) -> str:
        return f"arn:{part}:{service}:{region}:{account}:{resource}"

    def log_group_arn(name: str) -> str:
        return arn("logs", f"log-group:{name}")

    topic_arns = {key: arn("sns", name) for key, name in topics.items()}
    groups = log_groups(stage)
    eb, cluster = config.eb, config.ecs.cluster
    read_groups = [
        groups["worker"],
        groups["firehose"],
        groups["beanstalk"] + "/*",
        *(f"/aws/lambda/{name}" for _, name in config.lambdas.functions),
    ]
    return {
        "stage": stage.name,
        "region": region,
        "account": account,
        "partition": part,
        "buckets": buckets,
        "data_buckets": [buckets[key] for key in DATA_BUCKETS],
        "staging_buckets": [buckets[key] for key in STAGING_BUCKETS],
        "queue_arn_of": {key: arn("sqs", name) for key, name in queues.items()},
        "queue_arns": [arn("sqs", name) for name in queues.values()],
        "dead_letter_arns": [arn("sqs", name + suffix) for name in queues.values()],
        "topic_arns": topic_arns,
        "app_topic_arns": [topic_arns[k] for k in ("staff_notifications", "delete_s3", "upload_sxd")],
        "table_arn_of": {key: arn("dynamodb", f"table/{name}") for key, name in config.dynamodb.tables},
        "table_and_index_arns": [arn("dynamodb", f"table/{t}{i}") for t in tables for i in ("", "/index/*")],
        "delivery_stream_arns": [
            arn("firehose", f"deliverystream/{stream.name}") for _, stream in config.firehose.streams()
        ],
        "ses_identity_arn": arn("ses", f"identity/{config.ses.domain}"),
        "metrics_namespace": f"IOTileCloud/{stage.name}",
        "ecr_repository": config.ecs.repository,
        "search_domain": config.search.domain,
        "log_groups": groups,
        "log_group_arns": [log_group_arn(name) + ":*" for name in read_groups],
        "log_group_arn": log_group_arn,
        "sns_endpoint": f"sns.{region}.{dns_suffix(region)}",
        "ssm_endpoint": f"ssm.{region}.{dns_suffix(region)}",
        "sqs_endpoint": f"sqs.{region}.{dns_suffix(region)}",
        # Senders to SSE-KMS queues need the key (SSE-SQS queues need nothing).
        "queues_use_kms": bool(config.sqs.kms_key),
        "any_key_arn": arn("kms", "key/*"),
        # Beanstalk keeps every stage's bundles, environment files and logs in this one bucket.
        "eb_bucket": f"elasticbeanstalk-{region}-{account}",
        "eb_application": eb.application,
        "eb_application_arn": arn("elasticbeanstalk", f"application/{eb.application}"),
        "eb_environment_arn": arn("elasticbeanstalk", f"environment/{eb.application}/{eb.environment}"),
        "ecs_cluster_arn": arn("ecs", f"cluster/{cluster}"),
        "ecs_container_instance_arns": arn("ecs", f"container-instance/{cluster}/*"),
        "secret_arns": [],
        **extra,
    }


def render(stage: Stage, template: str, **extra: Any) -> dict[str, Any]:
    """One policy document as a dict (the template must render to valid JSON)."""
    text = _environment().get_template(template).render(context(stage, **extra))
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:  # a broken template is a bug, say where
        raise ValueError(f"{TEMPLATES / template}: not valid JSON after rendering: {exc}") from None


def trust_policy(stage: Stage, service: str) -> dict[str, Any]:
    """Who may assume a role: one AWS service, bound to this account where the service allows."""
    account = stage.account_id
    conditions: dict[str, dict[str, Any]] = {
        "ecs-tasks.amazonaws.com": {
            "StringEquals": {"aws:SourceAccount": account},
            "ArnLike": {"aws:SourceArn": f"arn:{partition(stage.region)}:ecs:{stage.region}:{account}:*"},
        },
        "firehose.amazonaws.com": {"StringEquals": {"sts:ExternalId": account}},
        "elasticbeanstalk.amazonaws.com": {"StringEquals": {"sts:ExternalId": "elasticbeanstalk"}},
    }
    sid = "Allow" + "".join(part.capitalize() for part in service.split(".")[0].split("-"))
    text = (
        _environment()
        .get_template("trust.json.j2")
        .render(sid=sid, service=service, condition=conditions.get(service))
    )
    return json.loads(text)


def canonical(document: Any) -> str:
    """A policy document in one spelling: lists of strings sorted, single items as lists, so two
    documents that mean the same compare equal."""

    def normal(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: normal(v, k) for k, v in sorted(value.items())}
        if isinstance(value, list):
            items = [normal(v) for v in value]
            return sorted(items, key=json.dumps) if key != "Statement" else items
        if isinstance(value, str) and key in ("Action", "NotAction", "Resource", "NotResource"):
            return [value]
        return value

    if isinstance(document, str):
        from urllib.parse import unquote

        document = json.loads(unquote(document) if document.startswith("%7B") else document)
    return json.dumps(normal(document), sort_keys=True)


def _sorted_list(value: Any) -> list[str]:
    return sorted(str(item) for item in ([value] if isinstance(value, str) else value))


def normalised(document: Any, key: str = "") -> Any:
    """A policy in one canonical shape: AWS accepts a string or a list for several fields, a lone
    statement or a list of them, and any order inside them."""
    if key == "Statement":
        statements = [document] if isinstance(document, dict) else document
        return sorted((normalised(s) for s in statements), key=lambda s: json.dumps(s, sort_keys=True))
    if key == "Condition" and isinstance(document, dict):
        return {op: {k: _sorted_list(v) for k, v in test.items()} for op, test in document.items()}
    if isinstance(document, dict):
        return {k: normalised(v, k) for k, v in document.items()}
    if key in LIST_FIELDS and isinstance(document, str | list):
        return _sorted_list(document)
    if isinstance(document, list):
        return [normalised(item) for item in document]
    return document
