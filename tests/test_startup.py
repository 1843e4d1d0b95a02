"""`inv --list` and `inv --help` stay fast: loading tasks.py imports no AWS or validation library."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

HEAVY = ("boto3", "botocore", "pydantic", "rich", "moto", "jinja2")


def test_loading_the_task_tree_imports_nothing_heavy() -> None:
    probe = (
        "import sys; from invoke import Collection; "
        "import tasks; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_inv_list_shows_every_area() -> None:
    inv = str(__import__("pathlib").Path(sys.executable).with_name("inv"))
    done = subprocess.run([inv, "--list"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in (
        "up",
        "plan",
        "status",
        "s3.create",
        "sns.create",
        "sqs.create",
        "secrets.set",
        "config.validate",
        "local.start",
        "local.reset",
    ):
        assert f"  {name} " in done.stdout
