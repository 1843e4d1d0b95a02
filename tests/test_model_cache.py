"""The cache of botocore's decoded service models (deploy/aws/models.py)."""

from __future__ import annotations

import gzip
import json
import marshal
import os
from pathlib import Path

import boto3
from botocore.loaders import JSONFileLoader
from moto import mock_aws

from deploy.aws.models import CachedJSONFileLoader, models_dir, shared_loader


def service_file(tmp_path: Path, body: dict, *, gzipped: bool = False) -> str:
    """A service-2 file as botocore ships it; the path botocore asks for (without extension)."""
    base = tmp_path / "data" / "service-2"
    base.parent.mkdir(parents=True, exist_ok=True)
    if gzipped:
        base.with_name("service-2.json.gz").write_bytes(gzip.compress(json.dumps(body).encode()))
    else:
        base.with_name("service-2.json").write_text(json.dumps(body))
    return str(base)


def test_a_cached_model_equals_the_json_one_in_content_and_order(tmp_path: Path) -> None:
    import botocore

    path = os.path.join(os.path.dirname(botocore.__file__), "data", "sqs", "2012-11-05", "service-2")
    straight = JSONFileLoader().load_file(path)
    loader = CachedJSONFileLoader(tmp_path / "cache")
    first, second = loader.load_file(path), loader.load_file(path)
    assert first == straight and second == straight
    assert list(second["operations"]) == list(straight["operations"])


def test_the_second_load_reads_the_cache_not_the_json(tmp_path: Path) -> None:
    path = service_file(tmp_path, {"version": "1"}, gzipped=True)
    loader = CachedJSONFileLoader(tmp_path / "cache")
    assert loader.load_file(path) == {"version": "1"}
    (entry,) = (tmp_path / "cache").iterdir()
    # Only the cache entry knows this answer: the second load came from it.
    entry.write_bytes(marshal.dumps({"version": "from the cache"}))
    assert CachedJSONFileLoader(tmp_path / "cache").load_file(path) == {"version": "from the cache"}


def test_a_changed_model_file_is_read_again(tmp_path: Path) -> None:
    path = service_file(tmp_path, {"version": "1"})
    loader = CachedJSONFileLoader(tmp_path / "cache")
    assert loader.load_file(path) == {"version": "1"}
    Path(path + ".json").write_text(json.dumps({"version": "2, longer"}))
    assert loader.load_file(path) == {"version": "2, longer"}
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_a_damaged_entry_falls_back_to_the_json_and_is_rewritten(tmp_path: Path) -> None:
    path = service_file(tmp_path, {"version": "1"})
    loader = CachedJSONFileLoader(tmp_path / "cache")
    loader.load_file(path)
    (entry,) = (tmp_path / "cache").iterdir()
    entry.write_bytes(b"\x00garbage")
    assert loader.load_file(path) == {"version": "1"}
    assert CachedJSONFileLoader(tmp_path / "cache").load_file(path) == {"version": "1"}
    assert entry.read_bytes() != b"\x00garbage"


def test_an_unwritable_cache_folder_costs_time_not_the_model(tmp_path: Path) -> None:
    path = service_file(tmp_path, {"version": "1"})
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the folder should be")
    assert CachedJSONFileLoader(blocker / "models").load_file(path) == {"version": "1"}


def test_a_missing_file_is_none_as_botocore_expects(tmp_path: Path) -> None:
    loader = CachedJSONFileLoader(tmp_path / "cache")
    assert loader.load_file(str(tmp_path / "nothing")) is None
    assert not loader.exists(str(tmp_path / "nothing"))


def test_the_cache_folder_follows_deploy_cache_dir_and_names_versions(monkeypatch, tmp_path: Path) -> None:
    import sys

    import botocore

    monkeypatch.setenv("DEPLOY_CACHE_DIR", str(tmp_path))
    folder = models_dir()
    assert folder.parent == tmp_path / "botocore-models"
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert botocore.__version__ in folder.name and python in folder.name


@mock_aws
def test_clients_made_through_the_shared_loader_work() -> None:
    core = boto3.Session(region_name="us-east-1")._session
    core.register_component("data_loader", shared_loader())
    sqs = boto3.Session(botocore_session=core, region_name="us-east-1").client("sqs")
    url = sqs.create_queue(QueueName="cached")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    assert attributes["QueueArn"].endswith(":cached")
