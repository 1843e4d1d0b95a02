"""The `deploy-statics` task: the statics tree synced by content to the statics bucket."""

from __future__ import annotations

from deploy.cli import deploy_task

STATICS_HELP = {
    "source": "folder to sync (default: cdn.statics.source in config, server/staticfiles)",
    "delete": "also delete objects of the statics folder that are no longer in the tree",
}


@deploy_task(help=STATICS_HELP)
def deploy_statics(c, stage=None, source=None, delete=False, dry_run=False, json=False):
    """Sync the statics by content to the statics bucket, then invalidate what changed on the CDN.
    Example: inv deploy-statics --stage dev --source server/staticfiles --delete --dry-run"""
    from pathlib import Path

    from deploy.report import Reporter
    from deploy.ship.statics import sync_statics
    from deploy.stage import open_stage

    opened = open_stage(stage, dry_run=dry_run)
    reporter = Reporter(as_json=json)
    folder = Path(source or opened.config.cdn.statics.source)
    result = sync_statics(opened, folder, reporter, dry_run=dry_run, delete=delete)
    if json:
        reporter.json(result.summary())
