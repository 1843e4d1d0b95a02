"""Prints how `inv deploy-statics` compares with `aws s3 sync` on the same 2,000-file tree (~70 MB)
and the same emulator: the first upload, then the same bytes after a fresh checkout (every mtime
new); seconds and files uploaded for each. No pass/fail."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
INV, AWS = str(BIN / "inv"), str(BIN / "aws")
FILES = 2000
SUFFIXES = (".js", ".css", ".svg", ".png", ".woff2", ".map", ".json", ".html")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def generate(root: Path) -> int:
    """A deterministic tree: mostly small files, one in twenty large, ~70 MB in all."""
    rng = random.Random(2026)
    total = 0
    for n in range(FILES):
        size = rng.randint(200_000, 800_000) if n % 20 == 0 else rng.randint(2_000, 20_000)
        path = root / f"app{n % 25}" / f"part{n % 7}" / f"file{n}{SUFFIXES[n % len(SUFFIXES)]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
        total += size
    return total


def fresh_checkout(tree: Path, target: Path) -> Path:
    # copyfile, not copy2: a checkout writes every file anew, so every mtime is new.
    shutil.copytree(tree, target, copy_function=shutil.copyfile)
    return target


def run(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout


def ours(tree: Path, env: dict[str, str]) -> tuple[float, int]:
    seconds, out = run([INV, "deploy-statics", "--stage", "local", "--source", str(tree), "--json"], env)
    return seconds, len(json.loads(out)["uploaded"])


def awscli(tree: Path, bucket: str, env: dict[str, str]) -> tuple[float, int]:
    command = [AWS, "s3", "sync", str(tree), f"s3://{bucket}/static-awscli/", "--only-show-errors"]
    seconds, _ = run([*command, "--endpoint-url", env["AWS_ENDPOINT_URL"]], env)
    # --only-show-errors keeps the timing free of printing; count what it sent from the dry run.
    return seconds, 0


def awscli_uploads(tree: Path, bucket: str, env: dict[str, str]) -> int:
    command = [AWS, "s3", "sync", str(tree), f"s3://{bucket}/static-awscli/", "--dryrun"]
    _, out = run([*command, "--endpoint-url", env["AWS_ENDPOINT_URL"]], env)
    return sum(line.startswith("(dryrun) upload:") for line in out.splitlines())


def main() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        env = {
            **os.environ,
            "DEPLOY_STATE_DIR": str(work_dir / "state"),
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        # As on an operator's machine, Python keeps the compiled modules: with this variable set
        # (some sandboxes set it), each run would compile the project's modules again (~0.1 s).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        tree = work_dir / "tree"
        megabytes = generate(tree) / 1e6
        print(f"tree: {FILES} files, {megabytes:.1f} MB")
        try:
            run([INV, "local.start"], env)
            run([INV, "s3.create", "--stage", "local"], env)
            bucket = json.loads(run([INV, "config.show", "--stage", "local", "--json"], env)[1])["s3"][
                "buckets"
            ]["statics"]["name"]
            rows = []
            first_ours = ours(tree, env)
            pending = awscli_uploads(tree, bucket, env)
            first_aws = (awscli(tree, bucket, env)[0], pending)
            rows.append(("first upload", first_ours, first_aws))
            checkout = fresh_checkout(tree, work_dir / "checkout")
            pending = awscli_uploads(checkout, bucket, env)
            again_ours = ours(checkout, env)
            again_aws = (awscli(checkout, bucket, env)[0], pending)
            rows.append(("fresh checkout", again_ours, again_aws))
        finally:
            subprocess.run([INV, "local.stop"], cwd=ROOT, env=env, capture_output=True)
    print(f"{'':16} {'deploy-statics':>24} {'aws s3 sync':>24} {'speed-up':>9}")
    for label, (our_s, our_n), (aws_s, aws_n) in rows:
        print(
            f"{label:16} {our_s:8.2f} s {our_n:5} files {aws_s:8.2f} s {aws_n:5} files {aws_s / our_s:8.1f}x"
        )


if __name__ == "__main__":
    main()
