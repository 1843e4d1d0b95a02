"""The `deploy` task: statics, then the source bundle of server/, then the environment moved onto it,
then the workers and the functions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deploy.cli import deploy_task

if TYPE_CHECKING:
    from deploy.report import Reporter
    from deploy.ship.bundle import Upload
    from deploy.stage import Stage

DEFAULTS_FILE = "defaults.yaml"
DEPLOY_HELP = {
    "skip_statics": "do not sync the statics (cdn.statics.source) before shipping the app",
    "skip_workers": "do not deploy the workers (deploy-worker) after the app",
    "skip_build": "workers: do not build the image: the current commit's must be in the repository",
    "skip_lambdas": "do not deploy the Lambda functions (lambdas.deploy) after the app",
    "timeout": "seconds to wait for the environment to be Ready and Green (0: eb.deploy_timeout_minutes)",
}


def ship_statics(stage: Stage, reporter: Reporter, *, dry_run: bool) -> dict[str, Any]:
    from pathlib import Path

    from deploy.errors import ConfigError
    from deploy.ship.statics import sync_statics

    source = Path(stage.config.cdn.statics.source)
    if not source.is_dir():
        where = _config_file_of(stage.name, ("cdn", "statics", "source"))
        problem = f"{source} is not a folder: build the statics (collectstatic) or use --skip-statics"
        raise ConfigError(where, "cdn.statics.source", problem)
    return sync_statics(stage, source, reporter, dry_run=dry_run).summary()


def _config_file_of(stage_name: str, key: tuple[str, ...]) -> str:
    """The stage file when it sets `key`, else defaults.yaml: the file an operator would edit."""
    import yaml

    from deploy.config import config_dir

    stage_file = config_dir() / f"{stage_name}.yaml"
    data: Any = yaml.safe_load(stage_file.read_text(encoding="utf-8")) if stage_file.is_file() else {}
    for part in key:
        if not isinstance(data, dict) or part not in data:
            return f"config/{DEFAULTS_FILE}"
        data = data[part]
    return f"config/{stage_file.name}"


def ship_functions(stage: Stage, reporter: Reporter, *, dry_run: bool) -> dict[str, Any]:
    """The functions of serverless/, as `lambdas.deploy` ships them: only what differs changes."""
    from deploy.areas import lambdas
    from deploy.execute import converge_waves

    outcome = converge_waves(
        stage, [{lambdas.AREA: lambdas.plan}], reporter, dry_run=dry_run, title="functions"
    )
    return {"changed": [r.name for r in outcome.resources if r.steps], "calls_made": outcome.calls}


def ship_workers(stage: Stage, reporter: Reporter, *, skip_build: bool) -> dict[str, Any]:
    """The workers, as `deploy-worker` ships them: built (unless `skip_build`), then shut down and
    rolled onto the new revision only when something changed."""
    from deploy.ship.workers import deploy_worker, worker_image

    image, build = worker_image(stage, reporter, None, skip_build)
    return deploy_worker(stage, reporter, image=image, build=build).summary()


def ship_version(stage: Stage, upload: Upload, label: str, reporter: Reporter, timeout: int | None) -> bool:
    """Whether the environment changed (or, on a dry run, would)."""
    from deploy.areas.eb import deploy_version

    return deploy_version(stage, label, upload.bucket, upload.key, reporter, timeout)


@deploy_task(help=DEPLOY_HELP)
def deploy(
    c,
    stage=None,
    dry_run=False,
    json=False,
    skip_statics=False,
    skip_workers=False,
    skip_build=False,
    skip_lambdas=False,
    timeout=0,
):
    """Ship the app: statics, then the source bundle (uploaded once per label), then the environment
    on it, followed until Ready and Green, then the workers (deploy-worker) and the functions
    (lambdas.deploy). Example: inv deploy --stage dev --skip-statics"""
    from deploy.errors import ArgumentError
    from deploy.report import Reporter
    from deploy.ship.bundle import build_bundle, upload_bundle
    from deploy.stage import open_stage

    if timeout < 0:
        raise ArgumentError("--timeout", "must be a number of seconds, or 0 for the config's")
    target = open_stage(stage, dry_run=dry_run)
    reporter = Reporter(as_json=json)
    statics = None if skip_statics else ship_statics(target, reporter, dry_run=dry_run)
    bundle = build_bundle()
    upload = upload_bundle(target, bundle, reporter, dry_run=dry_run)
    changed = ship_version(target, upload, bundle.label, reporter, timeout or None)
    workers = None if skip_workers else ship_workers(target, reporter, skip_build=skip_build)
    functions = None if skip_lambdas else ship_functions(target, reporter, dry_run=dry_run)
    if json:
        reporter.json(
            {
                "stage": target.name,
                "dry_run": dry_run,
                "label": bundle.label,
                "bundle": f"s3://{upload.bucket}/{upload.key}",
                "uploaded": upload.uploaded,
                "environment_changed": changed,
                "statics": statics,
                "workers": workers,
                "functions": functions,
            }
        )
