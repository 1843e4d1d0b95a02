"""Secrets in Parameter Store (moto): set, get, list, import, delete, and get_secret for Django."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy import secrets
from deploy.errors import ArgumentError, BadLines, DeployError, SecretNotFound


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


def test_delete_removes_it_and_an_absent_one_is_done_already(dev) -> None:
    secrets.put_secret(dev, "OLD", "x")
    assert secrets.delete_secret(dev, "OLD") is True
    assert secrets.list_secrets(dev) == []
    assert secrets.delete_secret(dev, "OLD") is False


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
    assert secrets.parse_env_file(path).values == {
        "DB_PASSWORD": "p@ss word",
        "API_KEY": "k=v",
        "PLAIN": "value",
    }


def test_env_file_empty_values_are_kept_apart(tmp_path: Path) -> None:
    path = tmp_path / "prod.env"
    path.write_text("A=1\nEMPTY=\nQUOTED=''\n", encoding="utf-8")

    parsed = secrets.parse_env_file(path)

    assert parsed.values == {"A": "1"}
    assert parsed.empty == {"EMPTY": 2, "QUOTED": 3}


@pytest.mark.parametrize(
    ("text", "line"),
    [("OK=1\nnot a pair\n", 2), ("=value\n", 1), ("BAD NAME=1\n", 1), ("A=1\nA=2\n", 2)],
)
def test_env_file_errors_name_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "x.env"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BadLines) as raised:
        secrets.parse_env_file(path)
    assert [problem.split(": ")[0] for problem in raised.value.problems] == [f"{path}:{line}"]


def test_env_file_errors_are_all_reported_without_values(tmp_path: Path) -> None:
    path = tmp_path / "x.env"
    path.write_text("junk s3cr3t\nOK=1\nmore junk s3cr3t\n", encoding="utf-8")
    with pytest.raises(BadLines) as raised:
        secrets.parse_env_file(path)
    lines = raised.value.lines()
    assert [line.split(": ")[0] for line in lines] == [f"{path}:1", f"{path}:3", str(path)]
    assert "2 bad lines, nothing stored" in lines[-1]
    assert not any("s3cr3t" in line for line in lines)


def test_stage_secrets_are_the_generated_and_the_required_ones(dev) -> None:
    roles = secrets.stage_secrets(dev.config)

    assert {name: role.role for name, role in roles.items()} == {
        "RDS_MASTER_PASSWORD": "generated",
        "REDIS_AUTH_TOKEN": "generated",
        "REDSHIFT_PASSWORD": "generated",
        "SECRET_KEY": "required",
    }  # not TIMESERIES_REDSHIFT_PASSWORD: redshift.timeseries is not enabled on dev
    assert roles["RDS_MASTER_PASSWORD"].readers == ("app", "workers")
    assert "RDS instance iotile-cloud-dev" in roles["RDS_MASTER_PASSWORD"].breaks()


def test_secret_rows_show_missing_then_present(dev) -> None:
    rows = {r["name"]: r for r in secrets.required_secret_rows(dev)}
    assert rows["SECRET_KEY"]["state"] == "missing"
    assert rows["SECRET_KEY"]["kind"] == "required secret"
    assert rows["RDS_MASTER_PASSWORD"]["kind"] == "generated secret"

    secrets.put_secret(dev, "SECRET_KEY", "v")

    rows = {r["name"]: r for r in secrets.required_secret_rows(dev)}
    assert rows["SECRET_KEY"]["state"] == "present"
    assert rows["RDS_MASTER_PASSWORD"]["state"] == "missing"


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
        reads = []
        real_client = secrets._ssm_for

        def counting_client(*args):
            client = real_client(*args)
            client.meta.events.register("before-call", lambda model, **_: reads.append(model.name))
            return client

        monkeypatch.setattr(secrets, "_ssm_for", counting_client)

        assert secrets.get_secret("SECRET_KEY") == "from-ssm"
        assert secrets.get_secret("SECRET_KEY") == "from-ssm"
        assert reads == ["GetParameter"]

    def test_deployed_app_without_config_uses_the_environment_region(
        self, dev, monkeypatch, tmp_path
    ) -> None:
        secrets.put_secret(dev, "SECRET_KEY", "from-ssm")
        monkeypatch.setenv("IOTILE_STAGE", "dev")
        monkeypatch.setenv("DEPLOY_CONFIG_DIR", str(tmp_path))  # no config here, as on an instance

        assert secrets.get_secret("SECRET_KEY") == "from-ssm"

    def test_no_region_anywhere_is_a_clear_error(self, aws, monkeypatch, tmp_path) -> None:
        monkeypatch.setenv("IOTILE_STAGE", "qa")
        monkeypatch.setenv("DEPLOY_CONFIG_DIR", str(tmp_path))
        monkeypatch.delenv("AWS_DEFAULT_REGION")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

        with pytest.raises(
            DeployError, match=r"SECRET_KEY: no AWS region for IOTILE_STAGE=qa: set AWS_REGION"
        ):
            secrets.get_secret("SECRET_KEY")

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
