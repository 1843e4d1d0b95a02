"""deploy-statics against moto: a sync by content (fresh checkouts upload nothing, same-size edits
in the same second are seen), SSE-KMS and multipart objects, --delete, content types, one
CloudFront invalidation of exactly the changed paths, and a dry run that only reads."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from deploy.report import Reporter
from deploy.ship import statics
from deploy.ship.statics import SyncResult, sync_statics
from deploy.stage import Stage
from tests.helpers import converge

TREE = {
    "css/site.css": b"body { color: #123456; }\n",
    "js/app.js": b"console.log('iotile');\n",
    "js/app.3f2a1b9c8d7e.js": b"console.log('hashed');\n",
    "js/app.js.map": b'{"version": 3}\n',
    "img/logo.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>\n",
    "fonts/icons.woff2": b"wOF2" + bytes(range(64)),
    "admin/unknown.blob": b"\x00\x01\x02",
}


def write_tree(root: Path, files: dict[str, bytes] = TREE) -> Path:
    for path, body in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
    return root


def sync(stage: Stage, source: Path, **options) -> SyncResult:
    return sync_statics(
        stage, source, Reporter(as_json=True), dry_run=options.pop("dry_run", False), **options
    )


def head(stage: Stage, path: str) -> dict:
    return stage.client("s3").head_object(Bucket=statics.statics_bucket(stage), Key=f"dev/static/{path}")


def invalidations(stage: Stage) -> list[list[str]]:
    from deploy.areas.cdn import distribution_id

    cloudfront = stage.client("cloudfront")
    distribution = distribution_id(stage, "statics")
    found = cloudfront.list_invalidations(DistributionId=distribution)["InvalidationList"].get("Items") or []
    batches = [cloudfront.get_invalidation(DistributionId=distribution, Id=i["Id"]) for i in found]
    return [b["Invalidation"]["InvalidationBatch"]["Paths"]["Items"] for b in batches]


@pytest.fixture
def stage(make_stage, call_log) -> Stage:
    made = make_stage("dev", log=call_log)
    converge(made, "kms", "s3")
    call_log.clear()
    return made


def test_first_sync_uploads_everything_and_a_fresh_checkout_uploads_nothing(
    stage, call_log, tmp_path
) -> None:
    first = sync(stage, write_tree(tmp_path / "a"))
    assert sorted(first.uploaded) == sorted(TREE)
    checkout = tmp_path / "checkout"
    shutil.copytree(tmp_path / "a", checkout, copy_function=shutil.copyfile)  # new mtimes, same bytes
    call_log.clear()

    again = sync(stage, checkout)

    assert again.uploaded == [] and again.unchanged == len(TREE)
    assert call_log.mutating == []
    # One page of listing and one manifest read: no request per file.
    assert sorted(op for _, op in call_log.calls) == ["GetObject", "ListObjectsV2"]


def test_same_size_edit_in_the_same_second_is_uploaded(stage, tmp_path) -> None:
    root = write_tree(tmp_path / "tree")
    sync(stage, root)
    edited = root / "js/app.js"
    before = edited.stat()
    edited.write_bytes(b"console.log('IOTILE');\n")
    os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert edited.stat().st_size == before.st_size

    result = sync(stage, root)

    assert result.uploaded == ["js/app.js"]
    assert head(stage, "js/app.js")["Metadata"]["sha256"] == statics.file_sha256(edited)


def test_object_replaced_by_hand_is_not_trusted_from_the_manifest(stage, tmp_path) -> None:
    root = write_tree(tmp_path / "tree")
    sync(stage, root)
    bucket = statics.statics_bucket(stage)
    stage.client("s3").put_object(
        Bucket=bucket, Key="dev/static/css/site.css", Body=b"body { color: #654321; }\n"
    )
    stage.client("s3").delete_object(Bucket=bucket, Key="dev/static/img/logo.svg")

    result = sync(stage, root)

    assert sorted(result.uploaded) == ["css/site.css", "img/logo.svg"]
    assert sync(stage, root).uploaded == []


def test_sse_kms_bucket(make_stage, config_copy, tmp_path) -> None:
    import boto3

    key = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]
    stage = make_stage("dev", config_dir=config_copy("dev", f"s3:\n  kms_key: {key}\n"))
    converge(stage, "s3")
    root = write_tree(tmp_path / "tree")

    assert len(sync(stage, root).uploaded) == len(TREE)

    assert head(stage, "css/site.css")["ServerSideEncryption"] == "aws:kms"
    assert sync(stage, root).uploaded == []


def test_multipart_object_is_uploaded_once(stage, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(statics, "MULTIPART_THRESHOLD", 6 * 1024 * 1024)
    monkeypatch.setattr(statics, "PART_SIZE", 5 * 1024 * 1024)
    root = write_tree(tmp_path / "tree", {"data/big.bin": bytes(range(256)) * (11 * 4096)})

    assert sync(stage, root).uploaded == ["data/big.bin"]

    assert head(stage, "data/big.bin")["ETag"].strip('"').endswith("-3"), "not an MD5: a multipart ETag"
    assert sync(stage, root).uploaded == []


def test_objects_the_manifest_does_not_know_are_judged_by_their_metadata(stage, tmp_path) -> None:
    root = write_tree(tmp_path / "tree")
    sync(stage, root)
    bucket = statics.statics_bucket(stage)
    stage.client("s3").delete_object(Bucket=bucket, Key=f"dev/static/{statics.MANIFEST}")

    result = sync(stage, root)

    assert result.uploaded == [], "every object carries its sha256"
    assert statics.read_manifest(stage, bucket, "dev/static/"), "the manifest is written again"


def test_delete_removes_only_with_the_flag(stage, tmp_path) -> None:
    root = write_tree(tmp_path / "tree")
    sync(stage, root)
    (root / "js/app.js").unlink()

    kept = sync(stage, root)
    assert kept.deleted == []
    assert head(stage, "js/app.js")

    removed = sync(stage, root, delete=True)

    assert removed.deleted == ["js/app.js"]
    keys = statics.listing(stage, statics.statics_bucket(stage), "dev/static/")
    assert "js/app.js" not in keys and statics.MANIFEST in keys
    assert sync(stage, root, delete=True).deleted == []


def test_content_type_and_cache_control(stage, tmp_path) -> None:
    sync(stage, write_tree(tmp_path / "tree"))
    cdn = stage.config.cdn.statics
    expected = {
        "css/site.css": "text/css; charset=utf-8",
        "js/app.js": "text/javascript; charset=utf-8",
        "js/app.js.map": "application/json",
        "img/logo.svg": "image/svg+xml",
        "fonts/icons.woff2": "font/woff2",
        "admin/unknown.blob": "application/octet-stream",
    }
    for path, content_type in expected.items():
        assert head(stage, path)["ContentType"] == content_type, path
    assert head(stage, "js/app.3f2a1b9c8d7e.js")["CacheControl"] == cdn.cache_control_hashed
    assert head(stage, "js/app.js")["CacheControl"] == cdn.cache_control


def test_cache_control_change_in_config_is_uploaded_again(make_stage, config_copy, tmp_path) -> None:
    stage = make_stage("dev")
    converge(stage, "kms", "s3")
    root = write_tree(tmp_path / "tree")
    sync(stage, root)
    changed = make_stage(
        "dev", config_dir=config_copy("dev", 'cdn:\n  statics:\n    cache_control: "no-cache"\n')
    )

    result = sync(changed, root)

    assert "js/app.js" in result.uploaded and "js/app.3f2a1b9c8d7e.js" not in result.uploaded
    assert head(changed, "js/app.js")["CacheControl"] == "no-cache"


def test_one_invalidation_of_exactly_the_changed_paths(stage, tmp_path) -> None:
    converge(stage, "cdn")
    root = write_tree(tmp_path / "tree", {**TREE, "img/a b.png": b"png"})
    sync(stage, root)
    (root / "css/site.css").write_bytes(b"body { color: red; }\n")
    (root / "img/a b.png").write_bytes(b"PNG!")
    (root / "js/app.js").unlink()
    before = len(invalidations(stage))

    result = sync(stage, root, delete=True)

    batches = invalidations(stage)
    assert len(batches) == before + 1
    assert sorted(batches[-1]) == [
        "/dev/static/css/site.css",
        "/dev/static/img/a%20b.png",
        "/dev/static/js/app.js",
    ]
    assert result.invalidation_id
    sync(stage, root, delete=True)
    assert len(invalidations(stage)) == before + 1, "nothing changed: no invalidation"


def test_wildcard_above_the_threshold(make_stage, config_copy, tmp_path) -> None:
    stage = make_stage(
        "dev", config_dir=config_copy("dev", "cdn:\n  statics:\n    invalidate_all_above: 3\n")
    )
    converge(stage, "kms", "s3", "cdn")

    sync(stage, write_tree(tmp_path / "tree"))

    assert invalidations(stage)[-1] == ["/dev/static/*"]


def test_no_distribution_no_invalidation(stage, call_log, tmp_path) -> None:
    result = sync(stage, write_tree(tmp_path / "tree"))

    assert result.invalidation_id == ""
    assert ("cloudfront", "CreateInvalidation") not in call_log.calls


def test_dry_run_makes_no_mutating_call(make_stage, call_log, tmp_path) -> None:
    stage = make_stage("dev")
    converge(stage, "kms", "s3")
    root = write_tree(tmp_path / "tree")
    preview_stage = make_stage("dev", read_only=True, log=call_log)

    preview = sync(preview_stage, root, dry_run=True, delete=True)

    assert sorted(preview.uploaded) == sorted(TREE)
    assert call_log.mutating == []
    assert statics.listing(stage, statics.statics_bucket(stage), "dev/static/") == {}


def test_missing_source_is_bad_input(stage, tmp_path) -> None:
    from deploy.errors import BadInput

    with pytest.raises(BadInput, match="--source"):
        sync(stage, tmp_path / "nowhere")


def test_stages_sharing_the_bucket_never_touch_each_others_files(stage, make_stage, tmp_path) -> None:
    staging = make_stage("stage")
    converge(staging, "kms", "s3")
    sync(staging, write_tree(tmp_path / "staging"))
    only_dev = write_tree(tmp_path / "dev", {"css/site.css": b"body { color: #abcdef; }\n"})

    result = sync(stage, only_dev, delete=True)

    assert result.uploaded == ["css/site.css"]
    assert result.deleted == []
    bucket = statics.statics_bucket(stage)
    assert set(statics.listing(staging, bucket, "stage/static/")) == {*TREE, statics.MANIFEST}
