"""botocore's service models, read from a cache of decoded copies instead of their JSON each run.

Making a client decodes the service's model: a few megabytes of gzipped JSON for EC2, 0.7 s of
CPU for the two dozen services `up` talks to, most of a no-op run's own work. The cache keeps each
decoded file in marshal's format (the format of Python's own bytecode cache), which loads about
thirty times faster. An entry is keyed by the file's path, size and modification time, under a
folder named for the botocore and Python versions, so an upgrade of either reads fresh copies. Any
trouble with the cache (unwritable folder, damaged entry) falls back to the JSON, silently: it
only ever costs time, never a wrong model.

The cache folder is $DEPLOY_CACHE_DIR, else $XDG_CACHE_HOME/iotile-deploy, else
~/.cache/iotile-deploy (shared with the Lambda package cache)."""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

_loader_lock = threading.Lock()
_shared_loader: Any = None


def user_cache_dir() -> Path:
    """The user's cache folder for this tool ($DEPLOY_CACHE_DIR, else the XDG one)."""
    explicit = os.environ.get("DEPLOY_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "iotile-deploy"


def models_dir() -> Path:
    import botocore

    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    return user_cache_dir() / "botocore-models" / f"{botocore.__version__}-{python}"


def plain(data: Any) -> Any:
    """`data` with botocore's OrderedDicts as plain dicts (same order), which marshal can write."""
    if isinstance(data, dict):
        return {key: plain(value) for key, value in data.items()}
    if isinstance(data, list):
        return [plain(item) for item in data]
    return data


class CachedJSONFileLoader:
    """botocore's JSONFileLoader with a cache of decoded files in front of it."""

    def __init__(self, folder: Path) -> None:
        from botocore.loaders import JSONFileLoader

        self.folder = folder
        self.json = JSONFileLoader()

    def exists(self, file_path: str) -> bool:
        return self.json.exists(file_path)

    def load_file(self, file_path: str) -> Any:
        source = _source_of(file_path)
        if source is None:
            return None
        entry = self.folder / _entry_name(source)
        cached = _read_entry(entry)
        if cached is not None:
            return cached
        data = self.json.load_file(file_path)
        if data is not None:
            _write_entry(entry, plain(data))
        return data


def _source_of(file_path: str) -> tuple[str, os.stat_result] | None:
    """The file botocore reads for `file_path` (.json, else .json.gz) and its stat."""
    for extension in (".json", ".json.gz"):
        try:
            return file_path + extension, os.stat(file_path + extension)
        except OSError:
            continue
    return None


def _entry_name(source: tuple[str, os.stat_result]) -> str:
    path, found = source
    key = f"{path}\0{found.st_size}\0{found.st_mtime_ns}"
    return hashlib.sha256(key.encode()).hexdigest()[:32] + ".marshal"


def _read_entry(entry: Path) -> Any:
    try:
        # loads of the whole file: load() on a file reads it a few bytes at a time, 10x slower.
        return marshal.loads(entry.read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        return None


def _write_entry(entry: Path, data: Any) -> None:
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=entry.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                marshal.dump(data, out)
            os.replace(temporary, entry)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except (OSError, ValueError):
        return


def shared_loader() -> Any:
    """One botocore data loader for every session of this process, reading through the cache:
    each service model is decoded once per process, and from the cache after the first run."""
    global _shared_loader
    with _loader_lock:
        if _shared_loader is None:
            from botocore.loaders import create_loader

            loader = create_loader(os.environ.get("AWS_DATA_PATH"))
            loader.file_loader = CachedJSONFileLoader(models_dir())
            _shared_loader = loader
        return _shared_loader
