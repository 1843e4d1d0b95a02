"""Stage configuration: the shipped files are valid, hold DESIGN's names, and errors name file + key."""

from __future__ import annotations

import pytest

from deploy.config import load_config, stage_names
from deploy.errors import ConfigError
from tests.conftest import CONFIG


def test_every_shipped_stage_is_valid() -> None:
    assert stage_names(CONFIG) == ["dev", "local", "prod", "stage"]
    for stage in stage_names(CONFIG):
        assert load_config(stage, CONFIG).region


def test_names_are_the_ones_in_design() -> None:
    config = load_config("prod", CONFIG)
    assert [b.name for _, b in config.s3.buckets] == [
        "iotile-cloud-statics",
        "iotile-cloud-media",
        "iotile-cloud-reports",
        "iotile-cloud-stream-event-data",
        "iotile-cloud-streamers",
        "iotile-streamer-dropdown",
        "iotile-stream-in",
        "iotile-timeseries-kinesis",
    ]
    assert dict(config.sqs.queues) == {"worker": "iotile-worker-prod", "report": "iotile-report-prod"}
    assert set(dict(config.sns.topics).values()) == {
        "SESIssues",
        "StaffNotifications",
        "IotileCloudEBNotifications",
        "iotile--delete-s3--prod",
        "iotile--upload-sxd--prod",
        "dynamodb",
        "iotile-cache-events-prod",  # ElastiCache's events: it cannot publish to an encrypted topic
    }
    assert dict(config.dynamodb.tables) == {
        "worker_logs": "iotile-worker-logs-prod",
        "filter_log": "iotile-filter-log-prod",
    }
    assert config.lambdas.health_schedules == [
        "hour-worker-check-prod",
        "device_check-prod",
        "hour-stream-data-check-prod",
        "day-clean-up-prod",
        "day-collect-stats-prod",
        "day-collect-dbstats-prod",
    ]
    assert (config.ecs.cluster, config.ecs.task_definition, config.ecs.service, config.ecs.workers) == (
        "iotile-cloud-cluster",
        "iotile-cloud-sqs-worker-task",
        "iotile-cloud-sqs-worker-service",
        3,
    )
    assert (config.eb.min_instances, config.eb.max_instances, config.eb.health_url) == (
        2,
        4,
        "/api/v1/server/",
    )
    iam = config.iam
    assert (iam.dev_group, iam.production_role, iam.ecs_instance_role, iam.eb_ec2_role) == (
        "IOTileDevGroup",
        "IOTileProductionRole",
        "ECSInstanceIotileRole",
        "aws-elasticbeanstalk-ec2-role",
    )
    assert (iam.streamer_upload_policy, iam.search_policy) == (
        "iotile-streamer-upload-prod",
        "iotile-search-prod",
    )
    assert config.secrets.prefix == "/iotile-cloud/prod"


def test_prod_overrides_defaults() -> None:
    assert load_config("prod", CONFIG).rds.multi_az is True
    assert load_config("dev", CONFIG).rds.multi_az is False


def test_shared_and_stage_scoped_names() -> None:
    config = load_config("dev", CONFIG)
    assert config.is_shared("iotile-cloud-media")
    assert config.is_shared("StaffNotifications")
    assert not config.is_shared("iotile-worker-dev")


def test_error_in_stage_file_names_that_file(config_copy) -> None:
    folder = config_copy("prod", "rds:\n  instance_class: 42\n")
    with pytest.raises(ConfigError) as error:
        load_config("prod", folder)
    assert error.value.path.endswith("prod.yaml")
    assert error.value.key == "rds.instance_class"


def test_error_in_defaults_names_defaults(config_copy) -> None:
    folder = config_copy("dev", "")
    text = (folder / "defaults.yaml").read_text().replace("max_receive_count: 5", "max_receive_count: -1")
    (folder / "defaults.yaml").write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config("dev", folder)
    assert error.value.path.endswith("defaults.yaml")
    assert error.value.key == "sqs.max_receive_count"


GOOD_ORIGINS = [
    "https://iotile.cloud",
    "https://app.iotile.cloud:8443",
    "http://localhost",
    "http://localhost:3000",
    "http://127.0.0.1:8000",
    "https://[::1]:8443",
]


@pytest.mark.parametrize("origin", GOOD_ORIGINS)
def test_cors_origin_accepted(config_copy, origin: str) -> None:
    config = load_config("dev", config_copy("dev", f"s3:\n  cors_origins: ['{origin}']\n"))
    assert config.s3.cors_origins == [origin]


@pytest.mark.parametrize(
    ("origin", "problem"),
    [
        ("http://localhost.evil.example", "must be https:// (plain http only for localhost or 127.0.0.1)"),
        ("http://127.0.0.1.evil.example", "must be https://"),
        ("http://evil.example", "must be https://"),
        ("http://localhost@evil.example", "must not hold a user name"),
        ("https://user:pw@iotile.cloud", "must not hold a user name"),
        ("*", "not a wildcard"),
        ("https://*.iotile.cloud", "not a wildcard"),
        ("iotile.cloud", "must be an https:// origin"),
        ("ftp://iotile.cloud", "must be an https:// origin"),
        ("https://", "must be an https:// origin"),
        ("https://iotile.cloud/", "no path, query or fragment"),
        ("https://iotile.cloud/upload", "no path, query or fragment"),
        ("https://iotile.cloud?x=1", "no path, query or fragment"),
        ("https://iotile.cloud#top", "no path, query or fragment"),
        ("https://IoTile.cloud", "must be written 'https://iotile.cloud'"),
        ("https://iotile.cloud:443", "must be written 'https://iotile.cloud'"),
        ("https://iotile.cloud:99999", "is not an origin"),
        ("https://iotile_cloud.com", "invalid host"),
    ],
)
def test_cors_origin_refused_naming_file_and_key(config_copy, origin: str, problem: str) -> None:
    folder = config_copy("dev", f"s3:\n  cors_origins: ['https://iotile.cloud', '{origin}']\n")
    with pytest.raises(ConfigError) as error:
        load_config("dev", folder)
    assert (error.value.path.endswith("dev.yaml"), error.value.key) == (True, "s3.cors_origins")
    assert error.value.message.startswith(f"CORS origin {origin!r} ")
    assert problem in error.value.message
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("cidrs", "min_prefix"),
    [
        (["203.0.113.0/24", "198.51.100.7/32"], None),
        (["198.51.0.0/16"], None),
        (["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"], None),
        (["2001:db8:1::/48"], None),
        (["203.0.113.0/28"], 28),
        (["10.0.0.0/8"], 28),
    ],
)
def test_ssh_cidrs_accepted(config_copy, cidrs: list[str], min_prefix: int | None) -> None:
    text = f"network:\n  ssh_cidrs: {cidrs}\n"
    if min_prefix is not None:
        text += f"  ssh_min_prefix: {min_prefix}\n"
    config = load_config("prod", config_copy("prod", text))
    assert config.network.ssh_cidrs == cidrs


@pytest.mark.parametrize(
    ("cidrs", "min_prefix", "problem"),
    [
        (["0.0.0.0/1", "128.0.0.0/1"], None, "SSH CIDR '0.0.0.0/1' is wider than /16 "),
        (["198.0.0.0/15"], None, "SSH CIDR '198.0.0.0/15' is wider than /16 "),
        (["172.0.0.0/8"], None, "SSH CIDR '172.0.0.0/8' is wider than /16 "),
        (["2001:db8::/32"], None, "SSH CIDR '2001:db8::/32' is wider than /48 "),
        (["2001::/32"], None, "SSH CIDR '2001::/32' is wider than /48 "),
        (["203.0.113.0/24"], 28, "SSH CIDR '203.0.113.0/24' is wider than /28 "),
        (["0.0.0.0/0"], None, "would open SSH to the whole internet"),
        (["10.0.0.1/8"], None, "is not a network"),
    ],
)
def test_ssh_cidrs_refused_naming_file_and_key(config_copy, cidrs, min_prefix, problem) -> None:
    text = f"network:\n  ssh_cidrs: {cidrs}\n"
    if min_prefix is not None:
        text += f"  ssh_min_prefix: {min_prefix}\n"
    with pytest.raises(ConfigError) as error:
        load_config("prod", config_copy("prod", text))
    assert (error.value.path.endswith("prod.yaml"), error.value.key) == (True, "network.ssh_cidrs")
    assert problem in error.value.message
    if "wider" in problem:
        assert "not inside a private range" in error.value.message
    assert "\n" not in str(error.value)


def test_ssh_min_prefix_cannot_be_loosened_to_nothing(config_copy) -> None:
    with pytest.raises(ConfigError) as error:
        load_config("dev", config_copy("dev", "network:\n  ssh_min_prefix: 1\n  ssh_cidrs: ['0.0.0.0/1']\n"))
    assert error.value.key == "network.ssh_min_prefix"


def test_a_cdn_alias_needs_a_certificate_that_covers_it(config_copy) -> None:
    from deploy.config import covers

    assert covers("*.dev.iotile.cloud", "static.dev.iotile.cloud")
    assert not covers("*.dev.iotile.cloud", "a.static.dev.iotile.cloud")
    assert not covers("dev.iotile.cloud", "static.dev.iotile.cloud")
    folder = config_copy("dev", "cdn:\n  aliases:\n    media: media.example.com\n")
    with pytest.raises(ConfigError) as refused:
        load_config("dev", folder)
    assert "cdn.aliases.media: media.example.com is not covered by acm.domains" in refused.value.one_line()


def _with_text(config_copy, text: str, file: str = "dev.yaml"):
    folder = config_copy("dev", "")
    with (folder / file).open("a", encoding="utf-8") as handle:
        handle.write("\n" + text)
    return folder


def test_a_duplicate_key_in_defaults_names_defaults_and_both_lines(config_copy) -> None:
    folder = _with_text(config_copy, "waits:\n  poll_seconds: 1\n", "defaults.yaml")
    lines = (folder / "defaults.yaml").read_text().splitlines()
    first, second = (number for number, line in enumerate(lines, start=1) if line == "waits:")

    with pytest.raises(ConfigError) as error:
        load_config("dev", folder)

    assert error.value.path.endswith("defaults.yaml") and error.value.key == "waits"
    assert f"line {first} and again on line {second}" in error.value.message


def test_anchors_aliases_and_merge_keys_are_not_duplicates(config_copy) -> None:
    folder = _with_text(
        config_copy, "x-waits: &waits {poll_seconds: 1}\nwaits:\n  <<: *waits\n  timeout_seconds: 60\n"
    )

    with pytest.raises(ConfigError) as error:
        load_config("dev", folder)

    # The only problem is the unknown helper key, not the alias or the merge key.
    assert error.value.key == "x-waits" and error.value.message == "unknown key"


def test_a_number_in_a_list_of_text_asks_for_quotes_at_its_index(config_copy) -> None:
    folder = _with_text(config_copy, "secrets:\n  required: [SECRET_KEY, 2.10]\n")

    with pytest.raises(ConfigError) as error:
        load_config("dev", folder)

    assert error.value.key == "secrets.required.1"
    assert 'write it in quotes, "2.10"' in error.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rds:\n", "is empty: give its settings below it"),
        ("rds: []\n", "must be a section of `key: value` lines, not a list"),
        ("rds: 'on'\n", "must be a section of `key: value` lines, not the text 'on'"),
    ],
)
def test_a_section_that_is_not_one_says_so_in_config_words(config_copy, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config("dev", _with_text(config_copy, text))

    assert error.value.key == "rds" and error.value.message.startswith(expected)
    assert "Rds" not in error.value.message


def test_regions_are_botocore_s_and_a_near_miss_is_suggested(config_copy) -> None:
    from deploy.config import known_regions

    assert {"us-east-1", "eu-central-2", "cn-north-1", "us-gov-west-1"} <= known_regions()
    assert not any(region.endswith("-global") for region in known_regions())
    with pytest.raises(ConfigError) as error:
        load_config("dev", _with_text(config_copy, "region: eu-west-7\n"))
    assert error.value.key == "region" and "eu-west-1?" in error.value.message
