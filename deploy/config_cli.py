"""The `config` tasks: show a stage's merged settings, validate every stage file."""

from __future__ import annotations

import sys

from invoke import Collection

from deploy.cli import deploy_task
from deploy.errors import BadInput, ConfigError


@deploy_task()
def show(c, stage=None, json=False):
    """Print the merged config of a stage. Example: inv config.show --stage prod --json"""
    from deploy.config import default_stage, load_config

    config = load_config(stage or default_stage())
    data = config.model_dump(mode="json")
    if json:
        import json as jsonlib

        print(jsonlib.dumps(data, indent=2, sort_keys=True))
    else:
        import yaml

        print(yaml.safe_dump(data, sort_keys=False), end="")


@deploy_task()
def validate(c):
    """Validate every stage file in the config folder. Example: inv config.validate"""
    from deploy.config import config_dir, load_config, stage_names

    stages = stage_names()
    if not stages:
        raise BadInput(f"{config_dir()}: no stage files found")
    failures = 0
    for name in stages:
        try:
            load_config(name)
            print(f"ok: {name}")
        except ConfigError as exc:
            failures += 1
            sys.stderr.write(f"error: {exc.one_line()}\n")
    if failures:
        raise BadInput(f"{failures} of {len(stages)} stage(s) invalid")


collection = Collection("config", show, validate)
