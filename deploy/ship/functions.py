"""Lambda packages: each function's function.yaml read and checked, and its code plus requirements
(manylinux wheels for the function's architecture and Python 3.12) zipped reproducibly, cached by
the hash of what went in, so a rebuild needs neither pip nor the network."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from deploy.aws.models import user_cache_dir
from deploy.errors import ConfigError, DeployError
from deploy.ship.bundle import FIXED_DATE

FUNCTION_FILE = "function.yaml"
REQUIREMENTS_FILE = "requirements.txt"
PYTHON_VERSION = "3.12"
# Bumped when the zip layout changes, so cached packages built the old way are not reused.
PACKAGE_FORMAT = "1"
# Never shipped: the Lambda runtime has its own boto3, and these are the build's leftovers.
LEFT_OUT_DIRS = frozenset({"__pycache__", "tests", "bin"})
LEFT_OUT_FILES = frozenset({FUNCTION_FILE, REQUIREMENTS_FILE})
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath"})
PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
# The emulator runs handlers on this machine's Python, so its packages carry wheels for it instead.
LOCAL = "local"
# {stage} {region} {account} are filled in when the function is deployed.
TEMPLATE = r"^[A-Za-z0-9_.{}-]+$"

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


RATE = re.compile(r"^rate\((?P<value>\d+) (?P<unit>minute|minutes|hour|hours|day|days)\)$")
CRON = re.compile(r"^cron\((?P<fields>[^()]+)\)$")


def schedule_problem(expression: str) -> str | None:
    """Why EventBridge would refuse a schedule expression, or None: `rate(1 hour)` (a unit in the
    singular for 1 only, plural otherwise), or `cron(min hour day-of-month month day-of-week year)`
    with `?` in one of the two day fields."""
    rate = RATE.match(expression)
    if rate:
        value, unit = int(rate["value"]), rate["unit"]
        if value < 1:
            return "a rate must be 1 or more"
        if (value == 1) == unit.endswith("s"):
            return f"write rate({value} {unit.rstrip('s') if value == 1 else unit.rstrip('s') + 's'})"
        return None
    cron = CRON.match(expression)
    if not cron:
        return "must be rate(VALUE UNIT) or cron(6 fields)"
    fields = cron["fields"].split()
    if len(fields) != 6:
        order = "minutes hours day-of-month month day-of-week year"
        return f"a cron expression has 6 fields ({order}), not {len(fields)}"
    if (fields[2] == "?") == (fields[4] == "?"):
        return "one of day-of-month and day-of-week must be ?, not both"
    return None


class Schedule(Strict):
    name: str = Field(pattern=TEMPLATE, min_length=1, max_length=64)
    expression: str
    enabled: bool = True
    input: dict[str, Any] | None = None
    description: str = Field(default="", max_length=512)

    @field_validator("expression")
    @classmethod
    def _expression(cls, expression: str) -> str:
        problem = schedule_problem(expression)
        if problem:
            raise ValueError(f"{expression!r}: {problem}")
        return expression


class S3Trigger(Strict):
    bucket: str = Field(pattern=TEMPLATE, min_length=3, max_length=63)
    prefix: str = ""
    suffix: str = ""
    events: list[str] = Field(default=["s3:ObjectCreated:*"], min_length=1)


class Triggers(Strict):
    schedules: list[Schedule] = []
    sns: list[str] = []
    s3: list[S3Trigger] = []


class FunctionFile(Strict):
    """One function.yaml, as helper code and operators write it."""

    handler: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
    runtime: Literal["python3.12"]
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    memory: int = Field(ge=128, le=10240)
    timeout: int = Field(ge=1, le=900)
    description: str = Field(default="", max_length=256)
    environment: dict[str, str] = {}
    triggers: Triggers = Triggers()


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_function(folder: Path) -> FunctionFile:
    """The function.yaml of `folder`, checked: bad input names the file and the key (exit 2)."""
    path = folder / FUNCTION_FILE
    shown = _shown(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(shown, "", "file not found: every function folder needs one") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "not valid YAML"
        where = f"line {mark.line + 1}" if mark else "YAML"
        raise ConfigError(
            shown, where, f"{problem} (a {{placeholder}} in a flow list or mapping needs quotes)"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(shown, "", "top level must be a mapping of keys")
    try:
        loaded = FunctionFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "(top)"
        raise ConfigError(shown, key, error["msg"]) from None
    _check_requirements(folder)
    return loaded


def requirement_lines(folder: Path) -> list[str]:
    path = folder / REQUIREMENTS_FILE
    if not path.is_file():
        return []
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def _check_requirements(folder: Path) -> None:
    for number, line in enumerate(requirement_lines(folder), start=1):
        name = re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower()
        if name in RUNTIME_PROVIDED:
            raise ConfigError(
                _shown(folder / REQUIREMENTS_FILE),
                f"line {number}",
                f"{name} comes with the Lambda runtime: leave it out",
            )


# -- the zip -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """A built function package: its bytes, and the hashes Lambda and the cache know it by."""

    data: bytes
    input_hash: str
    files: tuple[str, ...]

    @property
    def code_sha256(self) -> str:
        """What Lambda reports as CodeSha256: the base64 SHA-256 of the zip."""
        return base64.b64encode(hashlib.sha256(self.data).digest()).decode("ascii")

    @property
    def hex_digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def cache_dir() -> Path:
    """The user's cache folder for packages and wheels ($DEPLOY_CACHE_DIR, else the XDG one)."""
    return user_cache_dir()


def _walk(root: Path) -> list[str]:
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root).as_posix()
        prefix = "" if rel == "." else f"{rel}/"
        dirs[:] = sorted(d for d in dirs if d not in LEFT_OUT_DIRS)
        found.extend(
            f"{prefix}{name}"
            for name in files
            if not name.endswith(".pyc") and not (prefix == "" and name in LEFT_OUT_FILES)
        )
    return sorted(found)


def _mode(path: Path) -> int:
    return 0o755 if os.stat(path).st_mode & stat.S_IXUSR else 0o644


def platform_name(architecture: str) -> str:
    """The wheels' platform: Lambda's for its architectures, this interpreter's for LOCAL."""
    if architecture == LOCAL:
        import platform

        return f"local-{sys.implementation.cache_tag}-{platform.machine()}"
    return PLATFORMS[architecture]


def input_hash(folder: Path, architecture: str) -> str:
    """What the package is made of: its files (names, modes, bytes), its requirements, the
    platform and the Python version. Same inputs, same hash, on any machine."""
    digest = hashlib.sha256(f"{PACKAGE_FORMAT}\0{platform_name(architecture)}\0{PYTHON_VERSION}\n".encode())
    for name in _walk(folder):
        body = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        digest.update(f"{name}\0{_mode(folder / name)}\0{body}\n".encode())
    digest.update("\n".join(requirement_lines(folder)).encode())
    return digest.hexdigest()


def zip_trees(roots: Sequence[Path]) -> tuple[bytes, tuple[str, ...]]:
    """One zip of the files of every root (the code first: its names win), sorted, with fixed
    dates and permissions: the same files always give the same bytes."""
    entries: dict[str, Path] = {}
    for root in roots:
        for name in _walk(root):
            entries.setdefault(name, root / name)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            info.create_system = 3
            info.external_attr = (stat.S_IFREG | _mode(entries[name])) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name].read_bytes(), compresslevel=9)
    return buffer.getvalue(), tuple(sorted(entries))


# -- requirements --------------------------------------------------------------------------------


def pip_options(architecture: str) -> list[str]:
    """Wheels for the Lambda platform only: never a source build for this machine (for LOCAL,
    wheels for this interpreter)."""
    quiet = ["--only-binary=:all:", "--disable-pip-version-check", "--quiet"]
    if architecture == LOCAL:
        return quiet
    return [
        "--platform",
        PLATFORMS[architecture],
        "--only-binary=:all:",
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
        "--disable-pip-version-check",
        "--quiet",
    ]


def install_command(requirements: Path, target: Path, wheels: Path, architecture: str) -> list[str]:
    """Install from the local wheel cache alone (no index, so no network)."""
    return [
        sys.executable, "-m", "pip", "install", "-r", str(requirements), "--target", str(target),
        "--no-index", "--find-links", str(wheels), "--no-compile", "--no-warn-script-location",
        *pip_options(architecture),
    ]  # fmt: skip


def download_command(requirements: Path, wheels: Path, architecture: str) -> list[str]:
    """Fill the wheel cache from the index (the only step that needs the network)."""
    return [
        sys.executable, "-m", "pip", "download", "-r", str(requirements), "--dest", str(wheels),
        "--find-links", str(wheels), *pip_options(architecture),
    ]  # fmt: skip


PIP_TIMEOUT_SECONDS = 900


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(command), capture_output=True, text=True, check=False, timeout=PIP_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(list(command), 1, "", f"pip took over {PIP_TIMEOUT_SECONDS}s")


def install_requirements(
    folder: Path, target: Path, architecture: str, wheels: Path, run: Runner = _run
) -> None:
    """Install the folder's requirements into `target`: from the wheel cache when it holds them,
    else after downloading them into it."""
    requirements = folder / REQUIREMENTS_FILE
    wheels.mkdir(parents=True, exist_ok=True)
    if run(install_command(requirements, target, wheels, architecture)).returncode == 0:
        return
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    downloaded = run(download_command(requirements, wheels, architecture))
    installed = downloaded.returncode == 0 and run(
        install_command(requirements, target, wheels, architecture)
    )
    if not installed or installed.returncode != 0:
        failed = installed or downloaded
        tail = " ".join((failed.stderr or failed.stdout or "").strip().splitlines()[-3:])
        raise DeployError(
            f"pip could not install {_shown(requirements)} for {platform_name(architecture)}"
            f"{'' if architecture == LOCAL else f', Python {PYTHON_VERSION}'}: {tail or 'no output'}. "
            "The first build of a function needs "
            f"the package index; later ones use the wheels in {wheels}."
        )


def package_function(
    folder: Path, architecture: str, *, cache: Path | None = None, run: Runner = _run
) -> Package:
    """The function's zip, from the package cache when its inputs were built before."""
    cache = cache or cache_dir()
    digest = input_hash(folder, architecture)
    cached = cache / "packages" / f"{digest}.zip"
    if cached.is_file():
        data = cached.read_bytes()
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return Package(data, digest, tuple(archive.namelist()))
    roots = [folder]
    with tempfile.TemporaryDirectory(prefix="iotile-lambda-") as scratch:
        if requirement_lines(folder):
            target = Path(scratch) / "requirements"
            target.mkdir()
            install_requirements(
                folder, target, architecture, cache / "wheels" / platform_name(architecture), run
            )
            roots.append(target)
        data, files = zip_trees(roots)
    cached.parent.mkdir(parents=True, exist_ok=True)
    # Two functions with the same files share one package: each writes its own file, then renames.
    handle, partial = tempfile.mkstemp(dir=cached.parent, suffix=".part")
    with os.fdopen(handle, "wb") as stream:
        stream.write(data)
    os.replace(partial, cached)
    return Package(data, digest, files)
