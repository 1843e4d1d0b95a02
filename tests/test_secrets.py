"""Secrets in Parameter Store (moto): set, get, list, import, delete, and get_secret for Django."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy import secrets
from deploy.errors import ArgumentError, BadInput, SecretNotFound


@pytest.fixture
def dev(make_stage):
    return make_stage("dev")


def test_put_creates_a_securestring_under_the_stage_prefix(dev) -> None:
    assert secrets.put_secret(dev, "SECRET_KEY", "s3cr3t-value") == "created"

    found = dev.client("ssm").get_parameter(Name="/iotile-cloud/dev/SECRET_KEY", WithDecryption=True)
    assert found["Parameter"]["Type"] == "SecureString"
    assert found["Parameter"]["Value"] == "s3cr3t-value"


def test_put_is_idempotent_and_reports_updates(dev, call_log) -> None:
    dev.on_call(call_log)
    secrets.put_secret(dev, "SECRET_KEY", "one")
    call_log.clear()

    assert secrets.put_secret(dev, "SECRET_KEY", "one") == "unchanged"
    assert call_log.mutating == []
    assert secrets.put_secret(dev, "SECRET_KEY", "two") == "updated"
    info, value = secrets.read_secret(dev, "SECRET_KEY")
    assert (info.version, value) == (2, "two")


def test_dry_run_put_writes_nothing(make_stage, call_log) -> None:
    stage = make_stage("dev", read_only=True, log=call_log)

    assert secrets.put_secret(stage, "SECRET_KEY", "value", dry_run=True) == "created"
    assert call_log.mutating == []


def test_list_gives_names_without_values(dev) -> None:
    secrets.put_secret(dev, "B_TOKEN", "bbb")
    secrets.put_secret(dev, "A_TOKEN", "aaa")

    listed = secrets.list_secrets(dev)

    assert [info.name for info in listed] == ["A_TOKEN", "B_TOKEN"]
    assert "aaa" not in repr(listed) and "bbb" not in repr(listed)


def test_missing_secret_names_the_parameter_and_the_fix(dev) -> None:
    with pytest.raises(SecretNotFound) as error:
        secrets.read_secret(dev, "NOPE")
    assert "/iotile-cloud/dev/NOPE" in str(error.value)
    assert "inv secrets.set NOPE --stage dev" in str(error.value)


def test_delete_removes_it(dev) -> None:
    secrets.put_secret(dev, "OLD", "x")
    secrets.delete_secret(dev, "OLD")
    assert secrets.list_secrets(dev) == []


def test_bad_names_are_refused_before_any_call(dev, call_log) -> None:
    dev.on_call(call_log)
    for name in ("has space", "", "a/b", "x" * 201):
        with pytest.raises(ArgumentError):
            secrets.put_secret(dev, name, "v")
    assert call_log.calls == []


def test_env_file_parsing(tmp_path: Path) -> None:
    path = tmp_path / "prod.env"
    path.write_text(
        "# comment\n\nexport DB_PASSWORD='p@ss word'\nAPI_KEY=\"k=v\"\nPLAIN = value \n",
        encoding="utf-8",
    )
    assert secrets.parse_env_file(path) == {
        "DB_PASSWORD": "p@ss word",
        "API_KEY": "k=v",
        "PLAIN": "value",
    }


@pytest.mark.parametrize(
    ("text", "line"),
    [("OK=1\nnot a pair\n", 2), ("=value\n", 1), ("EMPTY=\n", 1), ("BAD NAME=1\n", 1)],
)
def test_env_file_errors_name_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "x.env"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BadInput, match=rf"x\.env:{line}: "):
        secrets.parse_env_file(path)


def test_required_secrets_show_missing_then_present(dev) -> None:
    rows = secrets.required_secret_rows(dev)
    assert [(r["name"], r["state"]) for r in rows] == [("SECRET_KEY", "missing")]

    secrets.put_secret(dev, "SECRET_KEY", "v")

    assert secrets.required_secret_rows(dev)[0]["state"] == "present"


class TestGetSecret:
    @pytest.fixture(autouse=True)
    def fresh_cache(self):
        secrets.clear_cache()
        yield
        secrets.clear_cache()

    def test_development_reads_the_environment(self, monkeypatch) -> None:
        monkeypatch.setenv("SECRET_KEY", "from-env")
        assert secrets.get_secret("SECRET_KEY") == "from-env"

    def test_development_missing_variable_is_named(self) -> None:
        with pytest.raises(SecretNotFound, match="environment variable SECRET_KEY"):
            secrets.get_secret("SECRET_KEY")

    def test_deployed_stage_reads_parameter_store_once(self, dev, monkeypatch) -> None:
        secrets.put_secret(dev, "SECRET_KEY", "from-ssm")
        monkeypatch.setenv("IOTILE_STAGE", "dev")
        monkeypatch.setenv("SECRET_KEY", "ignored-on-a-deployed-stage")
        import boto3

        reads = []
        real_client = boto3.client

        def counting_client(*args, **kwargs):
            client = real_client(*args, **kwargs)
            client.meta.events.register("before-call", lambda model, **_: reads.append(model.name))
            return client

        monkeypatch.setattr(boto3, "client", counting_client)

        assert secrets.get_secret("SECRET_KEY") == "from-ssm"
        assert secrets.get_secret("SECRET_KEY") == "from-ssm"
        assert reads == ["GetParameter"]

    def test_deployed_stage_missing_parameter_is_named(self, aws, monkeypatch) -> None:
        monkeypatch.setenv("IOTILE_STAGE", "prod")
        with pytest.raises(SecretNotFound, match="/iotile-cloud/prod/NOPE"):
            secrets.get_secret("NOPE")


def test_generated_password_is_stored_once_and_never_shown(dev, call_log) -> None:
    from deploy.execute import Executor
    from deploy.report import Reporter

    dev.on_call(call_log)
    steps, value = secrets.generated_secret(dev, "DB_PASSWORD", "db")
    (put,) = steps
    generated = put.params["Value"]
    assert len(generated) == 40 and generated.isalnum()
    assert generated not in repr(put.describe())

    Executor(dev, Reporter(as_json=True)).run(steps)

    assert value.resolve(dev) == generated
    again, _ = secrets.generated_secret(dev, "DB_PASSWORD", "db")
    assert again == [], "a stored password is reused, never replaced"
