"""The source bundle: reproducible bytes, .ebignore honoured as git would, labels from the commit and
the content, one upload per label, and the `deploy` task's dry run and second run."""

from __future__ import annotations

import io
import json
import os
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from invoke import Context, Exit

from deploy.report import Reporter
from deploy.ship import bundle, tasks
from deploy.ship.bundle import build_bundle, bundle_files, upload_bundle
from deploy.stage import Stage
from tests.conftest import CallLog
from tests.helpers import converge

ACCOUNT = "123456789012"
BEANSTALK_BUCKET = f"elasticbeanstalk-us-east-1-{ACCOUNT}"

IGNORE = """\
.git/
__pycache__/
*.pyc
!keep.pyc
tests/
build/
!build/kept.txt
.elasticbeanstalk/
*.env
/top-only.txt
"""


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "server"
    write(
        root,
        {
            ".ebignore": IGNORE,
            "application.py": "application = None\n",
            "requirements.txt": "",
            ".ebextensions/02_main.config": "option_settings: {}\n",
            "pkg/module.py": "x = 1\n",
            "pkg/module.pyc": "compiled",
            "pkg/__pycache__/module.cpython-311.pyc": "compiled",
            "keep.pyc": "kept by negation",
            "tests/test_app.py": "def test(): pass\n",
            "pkg/tests/test_deep.py": "def test(): pass\n",
            "build/out.txt": "built",
            "build/kept.txt": "a negation cannot reach into an ignored folder",
            ".elasticbeanstalk/config.yml": "branch-defaults: {}\n",
            "local.env": "SECRET=never",
            "top-only.txt": "ignored at the top",
            "pkg/top-only.txt": "kept below it",
        },
    )
    return root


def git(root: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tree: Path) -> Path:
    """`tree` as server/ of a git checkout with everything committed."""
    checkout = tree.parent
    git(checkout, "init", "-q")
    git(checkout, "add", "-A")
    git(checkout, "commit", "-q", "-m", "first")
    return tree


# -- what goes in ---------------------------------------------------------------------------------


def test_ebignore_is_honoured_with_negations_and_folder_patterns(tree: Path) -> None:
    assert bundle_files(tree) == [
        ".ebextensions/02_main.config",
        ".ebignore",
        "application.py",
        "keep.pyc",
        "pkg/module.py",
        "pkg/top-only.txt",
        "requirements.txt",
    ]


def test_the_zip_holds_exactly_those_files_with_their_bytes(tree: Path) -> None:
    built = build_bundle(tree)

    with zipfile.ZipFile(io.BytesIO(built.data)) as archive:
        assert archive.namelist() == list(built.files)
        assert archive.read("application.py") == b"application = None\n"
        assert archive.testzip() is None


def test_same_tree_same_bytes_whatever_the_dates(tree: Path) -> None:
    first = build_bundle(tree)
    for path in tree.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))

    second = build_bundle(tree)

    assert second.data == first.data
    assert second.label == first.label


def test_an_executable_file_keeps_its_bit_and_changes_the_hash(tree: Path) -> None:
    before = build_bundle(tree)
    (tree / "application.py").chmod(0o755)

    after = build_bundle(tree)

    with zipfile.ZipFile(io.BytesIO(after.data)) as archive:
        assert archive.getinfo("application.py").external_attr >> 16 & 0o777 == 0o755
        assert archive.getinfo("requirements.txt").external_attr >> 16 & 0o777 == 0o644
    assert after.content_hash != before.content_hash


# -- labels -----------------------------------------------------------------------------------


def test_outside_git_the_label_is_the_content_hash(tree: Path) -> None:
    first = build_bundle(tree)
    (tree / "application.py").write_text("application = 1\n")

    second = build_bundle(tree)

    assert first.label == first.content_hash
    assert second.label == second.content_hash != first.label


def test_a_clean_checkout_is_labelled_by_its_commit(repo: Path) -> None:
    commit = git(repo, "rev-parse", "--short=12", "HEAD")

    assert build_bundle(repo).label == commit


def test_a_shipped_change_adds_the_content_hash(repo: Path) -> None:
    commit = git(repo, "rev-parse", "--short=12", "HEAD")
    (repo / "application.py").write_text("application = 2\n")

    edited = build_bundle(repo)
    (repo / "application.py").write_text("application = 3\n")
    edited_again = build_bundle(repo)

    assert edited.label == f"{commit}-{edited.content_hash}"
    assert edited_again.label != edited.label
    assert edited_again.label.startswith(f"{commit}-")


def test_new_and_deleted_files_count_as_changes(repo: Path) -> None:
    commit = git(repo, "rev-parse", "--short=12", "HEAD")
    (repo / "pkg" / "new.py").write_text("y = 2\n")
    assert build_bundle(repo).label != commit

    (repo / "pkg" / "new.py").unlink()
    (repo / "requirements.txt").unlink()
    assert build_bundle(repo).label != commit


def test_a_change_the_bundle_leaves_out_keeps_the_commit_label(repo: Path) -> None:
    commit = git(repo, "rev-parse", "--short=12", "HEAD")
    write(repo, {".elasticbeanstalk/config.yml": "changed: true\n", "pkg/other.pyc": "x", "dev.env": "A=1"})

    assert build_bundle(repo).label == commit


# -- upload -----------------------------------------------------------------------------------


def beanstalk_bucket() -> None:
    """The bucket CreateStorageLocation makes on a real account (made by a client the stage's call
    log does not see)."""
    import boto3

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BEANSTALK_BUCKET)


def test_upload_happens_once_per_label(make_stage, call_log: CallLog, tree: Path) -> None:
    stage = make_stage("dev", log=call_log)
    beanstalk_bucket()
    built = build_bundle(tree)

    first = upload_bundle(stage, built, Reporter(as_json=True), dry_run=False)
    assert call_log.mutating == [("s3", "PutObject")]
    call_log.clear()
    second = upload_bundle(stage, built, Reporter(as_json=True), dry_run=False)

    assert first.uploaded and not second.uploaded
    assert call_log.mutating == []
    assert (first.bucket, first.key) == (BEANSTALK_BUCKET, f"iotile-cloud/{built.label}.zip")
    stored = stage.client("s3").get_object(Bucket=first.bucket, Key=first.key)["Body"].read()
    assert stored == built.data
    tags = stage.client("s3").get_object_tagging(Bucket=first.bucket, Key=first.key)["TagSet"]
    assert {"Key": "ManagedBy", "Value": "iotile-deploy"} in tags


def test_dry_run_uploads_nothing(make_stage, call_log: CallLog, tree: Path) -> None:
    stage = make_stage("dev", read_only=True, log=call_log)

    upload = upload_bundle(stage, build_bundle(tree), Reporter(as_json=True), dry_run=True)

    assert not upload.uploaded
    assert call_log.mutating == []
    assert ("s3", "HeadBucket") in call_log.calls


@pytest.fixture
def storage_location(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """CreateStorageLocation as AWS answers it (it makes the bucket), served in process; the
    emulator's own fill-in when it has one."""
    from deploy.emulator.fillins import find_fillin, register_fillin, unregister_fillin
    from deploy.emulator.fillins.core import query_response
    from deploy.emulator.fillins.inprocess import serving_in_process

    def create_storage_location(environ: dict[str, Any], body: bytes) -> Any:
        from moto.s3.models import s3_backends

        s3_backends[ACCOUNT]["aws"].create_bucket(BEANSTALK_BUCKET, "us-east-1")
        return query_response("CreateStorageLocation", f"<S3Bucket>{BEANSTALK_BUCKET}</S3Bucket>")

    with serving_in_process():
        ours = find_fillin("elasticbeanstalk", "CreateStorageLocation") is None
        if ours:
            register_fillin("elasticbeanstalk", "CreateStorageLocation", create_storage_location)
        try:
            yield
        finally:
            if ours:
                unregister_fillin("elasticbeanstalk", "CreateStorageLocation")


def test_a_missing_beanstalk_bucket_is_made_by_create_storage_location(
    make_stage, storage_location: None, call_log: CallLog, tree: Path
) -> None:
    stage = make_stage("dev", log=call_log)

    upload = upload_bundle(stage, build_bundle(tree), Reporter(as_json=True), dry_run=False)

    assert upload.uploaded
    assert call_log.mutating == [("elasticbeanstalk", "CreateStorageLocation"), ("s3", "PutObject")]


# -- the deploy task: bundle and environment together, in process ------------------------------

FAST_WAITS = "waits: {poll_seconds: 0.05, timeout_seconds: 60}\n"


def prepare_shipping(make_stage, config_dir: Path, *areas: str) -> None:
    """The dev stage's network and Beanstalk environment (on the emulator's Beanstalk fill-in, in
    process), any more `areas`, and its Beanstalk bucket."""
    maker = make_stage("dev", config_dir=config_dir)
    for area in ("network", *areas, "eb"):
        converge(maker, area)
    beanstalk_bucket()


@pytest.fixture
def fillins(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from deploy.emulator.fillins.inprocess import serving_in_process

    with serving_in_process():
        yield


@pytest.fixture
def shipping(make_stage, config_copy, fillins: None, monkeypatch: pytest.MonkeyPatch, tree: Path) -> Path:
    """A dev stage ready for `deploy --skip-statics` of `tree`; returns its config folder."""
    config = config_copy("dev", FAST_WAITS)
    monkeypatch.setenv("DEPLOY_CONFIG_DIR", str(config))
    monkeypatch.setattr(bundle, "SERVER_DIR", tree)
    prepare_shipping(make_stage, config)
    return config


def run_deploy(monkeypatch: pytest.MonkeyPatch, stage: Stage, **options: Any) -> None:
    monkeypatch.setattr("deploy.stage.open_stage", lambda name, dry_run=False: stage)
    options = {"json": True, "skip_statics": True, "skip_workers": True, "skip_lambdas": True, **options}
    tasks.deploy.body(Context(), stage=stage.name, **options)


def environment(stage: Stage) -> dict[str, Any]:
    (env,) = stage.client("elasticbeanstalk").describe_environments(EnvironmentNames=["iotile-cloud-dev"])[
        "Environments"
    ]
    return env


def test_deploy_ships_once_and_a_second_deploy_makes_no_mutating_call(
    make_stage, shipping: Path, call_log: CallLog, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    stage = make_stage("dev", config_dir=shipping, log=call_log)
    label = build_bundle().label

    run_deploy(monkeypatch, stage)

    assert [op for _, op in call_log.mutating] == [
        "PutObject",
        "CreateApplicationVersion",
        "UpdateEnvironment",
    ]
    env = environment(stage)
    assert (env["VersionLabel"], env["Status"], env["Health"]) == (label, "Ready", "Green")
    call_log.clear()
    capsys.readouterr()

    run_deploy(monkeypatch, stage)

    assert call_log.mutating == []
    out = json.loads(capsys.readouterr().out)
    assert (out["label"], out["uploaded"], out["environment_changed"]) == (label, False, False)
    assert out["bundle"] == f"s3://{BEANSTALK_BUCKET}/iotile-cloud/{label}.zip"


def test_deploy_dry_run_makes_no_mutating_call(
    make_stage, shipping: Path, call_log: CallLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage = make_stage("dev", config_dir=shipping, read_only=True, log=call_log)

    run_deploy(monkeypatch, stage, dry_run=True)

    assert call_log.mutating == []
    assert (
        "VersionLabel" not in environment(stage) or environment(stage)["VersionLabel"] != build_bundle().label
    )
    listed = stage.client("s3").list_objects_v2(Bucket=BEANSTALK_BUCKET)
    assert listed.get("KeyCount", 0) == 0


def test_a_failed_update_exits_1_with_its_events(
    make_stage, shipping: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from deploy.emulator.fillins.elasticbeanstalk.models import fail_next_update

    stage = make_stage("dev", config_dir=shipping)
    fail_next_update(stage.account_id, stage.region, "iotile-cloud-dev", "migrate exited 1")

    with pytest.raises(Exit) as raised:
        run_deploy(monkeypatch, stage, json=False)

    assert raised.value.code == 1
    err = capsys.readouterr().err
    assert "migrate exited 1" in err and "DeploymentFailed" in err


def test_missing_statics_folder_is_bad_input_naming_file_and_key(
    make_stage, shipping: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(shipping.parent)
    stage = make_stage("dev", config_dir=shipping)

    with pytest.raises(Exit) as raised:
        run_deploy(monkeypatch, stage, skip_statics=False)

    assert raised.value.code == 2
    assert (
        "config/defaults.yaml: cdn.statics.source: server/staticfiles is not a folder"
        in capsys.readouterr().err
    )


def test_deploy_refuses_a_negative_timeout(make_stage, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    with pytest.raises(Exit) as raised:
        run_deploy(monkeypatch, make_stage("dev"), timeout=-1)

    assert raised.value.code == 2
    assert "--timeout" in capsys.readouterr().err


STATICS = {"css/site.css": "body { color: black }", "js/app.js": "console.log(1)", "img/logo.svg": "<svg/>"}


def test_deploy_syncs_the_statics_first_and_again_changes_nothing(
    make_stage, config_copy, fillins: None, call_log: CallLog, monkeypatch: pytest.MonkeyPatch, tmp_path, tree
) -> None:
    statics = tmp_path / "staticfiles"
    write(statics, STATICS)
    config = config_copy("dev", FAST_WAITS + f"cdn:\n  statics:\n    source: {statics}\n")
    monkeypatch.setenv("DEPLOY_CONFIG_DIR", str(config))
    monkeypatch.setattr(bundle, "SERVER_DIR", tree)
    prepare_shipping(make_stage, config, "kms", "s3")
    stage = make_stage("dev", config_dir=config, log=call_log)
    order: list[str] = []
    monkeypatch.setattr(tasks, "ship_statics", _recording(tasks.ship_statics, order, "statics"))
    monkeypatch.setattr(bundle, "upload_bundle", _recording(bundle.upload_bundle, order, "bundle"))

    run_deploy(monkeypatch, stage, skip_statics=False)

    assert order == ["statics", "bundle"]
    listed = stage.client("s3").list_objects_v2(Bucket="iotile-cloud-statics", Prefix="dev/static/")
    assert {f"dev/static/{name}" for name in STATICS} <= {o["Key"] for o in listed["Contents"]}
    call_log.clear()

    run_deploy(monkeypatch, stage, skip_statics=False)

    assert call_log.mutating == []


def _recording(function: Any, order: list[str], name: str) -> Any:
    def record(*args: Any, **kwargs: Any) -> Any:
        order.append(name)
        return function(*args, **kwargs)

    return record
