"""Operator experience through the `inv` command (issue 14): secrets that must not be lost or echoed,
idempotent deletes, `.env` imports that report every bad line, config errors that say what to write,
the stage nobody named, and get_secret() on the local stage. Most of these make no AWS call."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import CONFIG, ROOT

pytestmark = pytest.mark.e2e

VALUE = "hunter2-Zq8"  # stands for a secret value: it must never reach any output


def assert_bad_input(result, emulator, *expected: str) -> str:
    """Exit 2, one line on stderr holding every expected part, no traceback, not one AWS request."""
    assert result.code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for part in expected:
        assert part in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert emulator.requests() == []
    return lines[0]


@pytest.fixture
def config_with(tmp_path):
    """A copy of config/ with `text` appended to one file, as an operator would edit it."""

    def make(text: str, file: str = "dev.yaml"):
        folder = tmp_path / "config"
        shutil.copytree(CONFIG, folder)
        with (folder / file).open("a", encoding="utf-8") as handle:
            handle.write("\n" + text)
        return folder

    return make


def line_of(path, text: str, after: int = 0) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, start=1) if number > after and line == text)


# -- item 5: generated and required secrets ---------------------------------------------------


def test_generated_and_required_secrets_are_listed_and_deleting_one_needs_force(
    inv, emulator, tmp_path
) -> None:
    env_file = tmp_path / "dev.env"
    env_file.write_text(
        f"SECRET_KEY={VALUE}\nRDS_MASTER_PASSWORD={VALUE}\nOLD_TOKEN={VALUE}\n", encoding="utf-8"
    )
    assert inv("secrets.import", str(env_file), "--stage", "dev").code == 0

    listed = {
        entry["name"]: entry for entry in json.loads(inv("secrets.list", "--stage", "dev", "--json").stdout)
    }
    assert listed["SECRET_KEY"]["role"] == "required"
    assert listed["RDS_MASTER_PASSWORD"]["role"] == "generated"
    assert listed["OLD_TOKEN"]["role"] == ""
    # Generated secrets not made yet are listed too, as missing.
    assert listed["REDIS_AUTH_TOKEN"]["state"] == "missing"
    shown = inv("secrets.list", "--stage", "dev").stdout
    assert "RDS_MASTER_PASSWORD" in shown and "generated" in shown and "REDIS_AUTH_TOKEN" in shown

    status = json.loads(inv("status", "--stage", "dev", "--json").stdout)["resources"]
    secrets = {row["name"]: row for row in status if row["area"] == "secrets"}
    assert secrets["RDS_MASTER_PASSWORD"]["state"] == "present"
    assert secrets["RDS_MASTER_PASSWORD"]["kind"] == "generated secret"
    assert secrets["REDIS_AUTH_TOKEN"]["state"] == "missing"
    assert secrets["SECRET_KEY"]["kind"] == "required secret"

    emulator.clear()
    refused = inv("secrets.delete", "RDS_MASTER_PASSWORD", "--stage", "dev", "--yes")
    assert refused.code == 2, refused.output
    assert "--force-required" in refused.stderr
    assert "RDS instance iotile-cloud-dev" in refused.stderr and "only copy" in refused.stderr
    assert emulator.mutating() == []
    refused = inv("secrets.delete", "SECRET_KEY", "--stage", "dev", "--yes")
    assert refused.code == 2 and "--force-required" in refused.stderr
    assert "secrets.required" in refused.stderr and "app" in refused.stderr
    assert emulator.mutating() == []

    forced = inv("secrets.delete", "RDS_MASTER_PASSWORD", "--stage", "dev", "--yes", "--force-required")
    assert forced.code == 0, forced.output
    assert "warning" in forced.stderr and "RDS instance iotile-cloud-dev" in forced.stderr
    assert emulator.mutating() == ["ssm:DeleteParameter"]
    assert inv("secrets.delete", "OLD_TOKEN", "--stage", "dev", "--yes").code == 0
    for result in (refused, forced):
        assert VALUE not in result.output


# -- item 6: an unexpected argument of a secrets task is never echoed -------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["secrets.set", "SECRET_KEY", VALUE],
        ["secrets.set", "SECRET_KEY", VALUE, "--stage", "dev"],
        ["secrets.set", "SECRET_KEY", "--stage", "dev", VALUE],
        ["secrets.set", f"SECRET_KEY={VALUE}", "--stage", "dev"],
        ["secrets.set", "SECRET_KEY", f"--value={VALUE}", "--stage", "dev"],
        ["secrets.import", "prod.env", VALUE, "--stage", "dev"],
    ],
    ids=[
        "positional",
        "positional-before-flag",
        "positional-after-flag",
        "name=value",
        "flag=value",
        "import",
    ],
)
def test_an_unexpected_argument_of_a_secrets_task_is_not_echoed(inv, emulator, args) -> None:
    result = inv(*args, stdin="")

    line = assert_bad_input(result, emulator, "hidden prompt", "stdin")
    assert VALUE not in result.output, line
    assert "No idea what" not in line


# -- item 9: deleting an absent secret is idempotent ------------------------------------------


def test_deleting_an_absent_secret_is_done_already(inv, emulator) -> None:
    for args in (["--yes"], ["--dry-run"], []):
        result = inv("secrets.delete", "NEVER_SET", "--stage", "dev", *args, stdin="")

        assert result.code == 0, result.output
        assert "already absent" in result.stdout
        assert "inv secrets.set" not in result.output
    assert emulator.mutating() == []


# -- item 10: secrets.import reports every bad line at once, skips empty values -----------------


def test_import_reports_every_bad_line_at_once_and_stores_nothing(inv, emulator, tmp_path) -> None:
    env_file = tmp_path / "prod.env"
    env_file.write_text(
        f"GOOD={VALUE}\nthis is not a pair {VALUE}\nbad/name={VALUE}\nGOOD=again-{VALUE}\nEMPTY=\n",
        encoding="utf-8",
    )

    result = inv("secrets.import", str(env_file), "--stage", "dev")

    assert result.code == 2, result.output
    errors = result.stderr.strip().splitlines()
    assert [line.split(": ")[1] for line in errors[:3]] == [f"{env_file}:2", f"{env_file}:3", f"{env_file}:4"]
    assert "line 1" in errors[2]  # the duplicate names where the name was first given
    assert "3 bad lines" in errors[-1] and "nothing stored" in errors[-1]
    assert VALUE not in result.output
    assert emulator.requests() == []


def test_import_skips_empty_values_with_a_note(inv, emulator, tmp_path) -> None:
    env_file = tmp_path / "prod.env"
    env_file.write_text(f"GOOD={VALUE}\nEMPTY=\nQUOTED_EMPTY=''\n", encoding="utf-8")

    result = inv("secrets.import", str(env_file), "--stage", "dev")

    assert result.code == 0, result.output
    assert "/iotile-cloud/dev/GOOD: created" in result.stdout
    assert "skipped EMPTY" in result.output and "skipped QUOTED_EMPTY" in result.output
    assert emulator.mutating() == ["ssm:PutParameter"]


# -- item 13: config errors that say what to write ---------------------------------------------


def test_a_duplicate_key_names_file_key_and_both_lines(inv, emulator, config_with) -> None:
    folder = config_with("rds:\n  multi_az: false\nrds:\n  multi_az: true\n")
    first = line_of(folder / "dev.yaml", "rds:")
    second = line_of(folder / "dev.yaml", "rds:", after=first)

    result = inv("up", "--stage", "dev", env={"DEPLOY_CONFIG_DIR": str(folder)})

    assert_bad_input(result, emulator, f"{folder}/dev.yaml: rds: ", f"line {first}", f"line {second}")


def test_a_duplicate_nested_key_names_its_path(inv, emulator, config_with) -> None:
    folder = config_with("sqs:\n  queues:\n    worker: a-{stage}\n    worker: b-{stage}\n")

    result = inv("up", "--stage", "dev", env={"DEPLOY_CONFIG_DIR": str(folder)})

    assert_bad_input(result, emulator, f"{folder}/dev.yaml: sqs.queues.worker: duplicate key")


def test_a_region_botocore_does_not_know_is_refused(inv, emulator, config_with) -> None:
    folder = config_with("region: us-east-9\n")

    result = inv("up", "--stage", "dev", env={"DEPLOY_CONFIG_DIR": str(folder)})

    assert_bad_input(result, emulator, f"{folder}/dev.yaml: region: ", "us-east-9", "us-east-1")


def test_a_known_region_is_accepted(inv, config_with) -> None:
    folder = config_with("region: eu-central-2\n")

    result = inv("config.show", "--stage", "dev", "--json", env={"DEPLOY_CONFIG_DIR": str(folder)})

    assert result.code == 0, result.output
    assert json.loads(result.stdout)["region"] == "eu-central-2"


def test_an_empty_section_says_so_without_a_class_name(inv, emulator, config_with) -> None:
    folder = config_with("rds:\n")

    result = inv("up", "--stage", "dev", env={"DEPLOY_CONFIG_DIR": str(folder)})

    line = assert_bad_input(result, emulator, f"{folder}/dev.yaml: rds: ", "empty")
    assert "instance of" not in line and "Rds" not in line


def test_a_number_where_text_belongs_suggests_quotes(inv, emulator, config_with) -> None:
    folder = config_with("rds:\n  engine_version: 16.10\n")

    result = inv("up", "--stage", "dev", env={"DEPLOY_CONFIG_DIR": str(folder)})

    assert_bad_input(result, emulator, f"{folder}/dev.yaml: rds.engine_version: ", "quotes", '"16.10"')


def test_an_unknown_stage_lists_the_stages(inv, emulator) -> None:
    result = inv("up", "--stage", "qa")

    assert_bad_input(result, emulator, "config/qa.yaml: file not found", "dev, local, prod, stage")


# -- item 14: the stage nobody named ------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["up"], ["sqs.create"], ["secrets.set", "SECRET_KEY"], ["secrets.delete", "OLD", "--yes"], ["deploy"]],
    ids=["up", "sqs.create", "secrets.set", "secrets.delete", "deploy"],
)
def test_a_changing_task_without_a_stage_refuses_to_guess(inv, emulator, args) -> None:
    result = inv(*args, stdin=VALUE + "\n")

    assert_bad_input(result, emulator, "--stage", "DEPLOY_STAGE")


def test_a_reading_task_without_a_stage_reads_dev_and_says_so_first(inv, emulator) -> None:
    result = inv("sqs.status", "--json")

    assert result.code == 0, result.output
    assert result.stderr.splitlines()[0].startswith("note: ") and "dev" in result.stderr.splitlines()[0]
    assert "--stage" in result.stderr.splitlines()[0]
    assert {row["name"] for row in json.loads(result.stdout)["resources"]} >= {"iotile-worker-dev"}
    assert emulator.mutating() == []


def test_deploy_stage_names_the_stage_for_a_changing_task(inv, emulator) -> None:
    result = inv("sqs.create", env={"DEPLOY_STAGE": "dev"})

    assert result.code == 0, result.output
    assert "note:" not in result.stderr
    assert "sqs:CreateQueue" in emulator.mutating()


# -- item 16: get_secret() on the local stage ---------------------------------------------------


def run_get_secret(env: dict[str, str]) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("AWS_DEFAULT_REGION", "AWS_REGION")}
    environment.update(AWS_EC2_METADATA_DISABLED="true", **env)
    probe = "from deploy.secrets import get_secret; print(get_secret('SECRET_KEY'))"
    return subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def test_get_secret_on_the_local_stage_takes_region_and_endpoint_from_its_config(inv, emulator) -> None:
    # The local stage's emulator is the test's (AWS_ENDPOINT_URL moves it to another port).
    assert inv("secrets.set", "SECRET_KEY", "--stage", "local", stdin=VALUE + "\n").code == 0

    done = run_get_secret({"IOTILE_STAGE": "local", "AWS_ENDPOINT_URL": emulator.endpoint_url})

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == VALUE


def test_get_secret_without_any_region_is_a_clear_error(emulator, tmp_path) -> None:
    done = run_get_secret(
        {"IOTILE_STAGE": "qa", "AWS_ENDPOINT_URL": emulator.endpoint_url, "DEPLOY_CONFIG_DIR": str(tmp_path)}
    )

    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "NoRegionError" not in last and "no AWS region" in last
    assert "AWS_REGION" in last and "qa.yaml" in last
