"""The source bundle: a reproducible zip of server/ honouring its .ebignore, its version label, and
its one upload to the stage's Beanstalk bucket."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy.errors import AwsError, error_code

if TYPE_CHECKING:
    import pathspec

    from deploy.report import Reporter
    from deploy.stage import Stage

SERVER_DIR = Path(__file__).resolve().parent.parent.parent / "server"
IGNORE_FILE = ".ebignore"
# Zip cannot store dates before 1980: every entry gets this one, so the bytes depend on content only.
FIXED_DATE = (1980, 1, 1, 0, 0, 0)
HASH_LENGTH = 12
MISSING = ("404", "NoSuchKey", "NotFound", "NoSuchBucket")


@dataclass(frozen=True)
class Bundle:
    """A built source bundle: its bytes, the files in it and the label to deploy it under."""

    data: bytes
    files: tuple[str, ...]
    content_hash: str
    label: str


@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str
    uploaded: bool


def ignore_spec(source: Path) -> pathspec.GitIgnoreSpec:
    """The .ebignore of `source` as git reads an ignore file (an empty spec when there is none)."""
    import pathspec

    path = source / IGNORE_FILE
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    return pathspec.GitIgnoreSpec.from_lines(lines)


def bundle_files(source: Path) -> list[str]:
    """Every file of `source` the bundle holds, as sorted POSIX paths relative to it. A directory
    the spec ignores is not entered: as in git, a file under an ignored directory cannot be
    re-included by a negation."""
    spec = ignore_spec(source)
    found: list[str] = []
    for folder, dirs, files in os.walk(source):
        rel = Path(folder).relative_to(source).as_posix()
        prefix = "" if rel == "." else f"{rel}/"
        dirs[:] = [d for d in dirs if not spec.match_file(f"{prefix}{d}/")]
        found.extend(f"{prefix}{name}" for name in files if not spec.match_file(f"{prefix}{name}"))
    return sorted(found)


def _entry(source: Path, name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
    info.create_system = 3  # unix, wherever it is built, so the permission bits below are read
    executable = os.stat(source / name).st_mode & stat.S_IXUSR
    info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def content_hash(source: Path, files: list[str]) -> str:
    """A hash of the files' names, modes and bytes: unlike the zip's bytes, it does not depend on
    the zlib version that compressed them, so every machine gives a tree the same label."""
    digest = hashlib.sha256()
    for name in files:
        info = _entry(source, name)
        body = hashlib.sha256((source / name).read_bytes()).hexdigest()
        digest.update(f"{name}\0{info.external_attr}\0{body}\n".encode())
    return digest.hexdigest()[:HASH_LENGTH]


def build_zip(source: Path, files: list[str]) -> bytes:
    """The zip of `files`: same tree, same bytes (sorted entries, fixed dates and permissions)."""
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in files:
            archive.writestr(_entry(source, name), (source / name).read_bytes(), compresslevel=9)
    return buffer.getvalue()


def _git(source: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(source), *args], capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def git_commit(source: Path) -> str | None:
    """The short commit of the checkout `source` is in, or None outside a git checkout."""
    out = _git(source, "rev-parse", "--short=12", "HEAD")
    return out.strip() if out else None


def shipped_changes(source: Path) -> list[str]:
    """Files of the bundle that differ from the commit (edited, added, deleted, untracked). A change
    to a file the bundle leaves out (a local .env, .elasticbeanstalk/) does not count."""
    out = _git(source, "status", "--porcelain", "-z", "--untracked-files=all", "--no-renames", "--", ".")
    prefix = _git(source, "rev-parse", "--show-prefix")
    if out is None or prefix is None:
        return []
    spec = ignore_spec(source)
    here = prefix.strip()
    changed = []
    for entry in filter(None, out.split("\0")):
        path = entry[3:]
        rel = path[len(here) :] if path.startswith(here) else path
        if not _ignored(spec, rel):
            changed.append(rel)
    return sorted(changed)


def _ignored(spec: pathspec.GitIgnoreSpec, rel: str) -> bool:
    parts = rel.split("/")
    parents = ("/".join(parts[: n + 1]) + "/" for n in range(len(parts) - 1))
    return any(spec.match_file(p) for p in parents) or spec.match_file(rel)


def version_label(source: Path, digest: str) -> str:
    """The commit; the commit and the content hash when the shipped files differ from it; the
    content hash alone outside a git checkout. The same tree always gets the same label."""
    commit = git_commit(source)
    if commit is None:
        return digest
    return f"{commit}-{digest}" if shipped_changes(source) else commit


def build_bundle(source: Path | None = None) -> Bundle:
    """The bundle of `source` (default: the project's server/)."""
    source = source or SERVER_DIR
    files = bundle_files(source)
    digest = content_hash(source, files)
    return Bundle(build_zip(source, files), tuple(files), digest, version_label(source, digest))


# -- upload ------------------------------------------------------------------------------------


def storage_bucket_name(stage: Stage) -> str:
    """The bucket Beanstalk keeps source bundles in, one per account and region."""
    return f"elasticbeanstalk-{stage.region}-{stage.account_id}"


def bundle_key(stage: Stage, label: str) -> str:
    return f"{stage.config.eb.application}/{label}.zip"


def _exists(probe: Callable[[], Any]) -> bool:
    """Whether the Head call `probe` finds its bucket or object (any other error is raised)."""
    from botocore.exceptions import ClientError

    try:
        probe()
    except ClientError as exc:
        if error_code(exc) in MISSING:
            return False
        raise
    return True


def ensure_storage_bucket(stage: Stage, *, dry_run: bool) -> tuple[str, bool]:
    """The Beanstalk bucket's name, and whether it exists. CreateStorageLocation makes it when
    missing (AWS names and configures it; nothing else may), except on a dry run."""
    s3 = stage.client("s3")
    bucket = storage_bucket_name(stage)
    if _exists(lambda: s3.head_bucket(Bucket=bucket)):
        return bucket, True
    if dry_run:
        return bucket, False
    made = stage.client("elasticbeanstalk").create_storage_location()["S3Bucket"]
    if made != bucket:
        raise AwsError(
            "UnexpectedStorageLocation",
            f"CreateStorageLocation answered bucket {made}, expected {bucket}",
            "Check the region and account of the credentials in use.",
        )
    return bucket, True


def upload_bundle(stage: Stage, bundle: Bundle, reporter: Reporter, *, dry_run: bool) -> Upload:
    """Put the bundle under `<application>/<label>.zip` unless that key exists: a label is uploaded
    once and reused ever after. On a dry run, only say whether it would be."""
    bucket, bucket_exists = ensure_storage_bucket(stage, dry_run=dry_run)
    key = bundle_key(stage, bundle.label)
    s3 = stage.client("s3")
    if bucket_exists and _exists(lambda: s3.head_object(Bucket=bucket, Key=key)):
        reporter.message(f"bundle {bundle.label}: already in s3://{bucket}/{key}")
        return Upload(bucket, key, uploaded=False)
    if dry_run:
        making = "" if bucket_exists else " (the bucket made first, by CreateStorageLocation)"
        size = len(bundle.data)
        reporter.message(f"bundle {bundle.label}: would upload {size} bytes to s3://{bucket}/{key}{making}")
        return Upload(bucket, key, uploaded=False)
    _put(stage, bucket, key, bundle)
    reporter.message(f"bundle {bundle.label}: uploaded {len(bundle.data)} bytes to s3://{bucket}/{key}")
    return Upload(bucket, key, uploaded=True)


def _put(stage: Stage, bucket: str, key: str, bundle: Bundle) -> None:
    import base64
    from urllib.parse import urlencode

    # S3 checks the bytes it stored against this, so a bundle damaged on the way is refused.
    digest = base64.b64encode(hashlib.md5(bundle.data, usedforsecurity=False).digest()).decode("ascii")
    stage.client("s3").put_object(
        Bucket=bucket,
        Key=key,
        Body=bundle.data,
        ContentType="application/zip",
        ContentMD5=digest,
        Tagging=urlencode(stage.tags(stage.config.eb.application)),
    )
