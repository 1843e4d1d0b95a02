"""The iotile-deploy command line: `inv --list` shows every task; `inv --help TASK` explains one.

Each AWS area's tasks live in its own module under deploy/areas/; this file only composes them. It
must stay cheap to import (no boto3, no pydantic): `inv --list` runs it."""

from invoke import Collection

from deploy import config_cli, secrets, stack
from deploy.areas import (
    autocopy,
    dynamodb,
    firehose,
    iam,
    kms,
    network,
    rds,
    redis,
    redshift,
    s3,
    search,
    ses,
    sns,
    sqs,
)
from deploy.cli import exit_2_on_bad_arguments
from deploy.emulator import tasks as local

exit_2_on_bad_arguments()

ns = Collection()
for area in (
    config_cli,
    local,
    iam,
    network,
    kms,
    s3,
    sns,
    sqs,
    dynamodb,
    ses,
    rds,
    redshift,
    redis,
    search,
    firehose,
    autocopy,
    secrets,
):
    ns.add_collection(area.collection)

# The original task names, kept for the people and scripts that know them.
ns.add_task(network.create, name="create-security-groups")
ns.add_task(rds.create, name="create-rds-instance")
ns.add_task(rds.status, name="report-rds-instance")
ns.add_task(redshift.create, name="create-redshift-cluster")
ns.add_task(redshift.create_timeseries, name="create-streamtimeseries-redshift")
ns.add_task(redis.create, name="create-redis-cluster")
ns.add_task(redis.status, name="report-redis-cluster")
ns.add_task(firehose.create, name="create-firehose-stream")

# Whole stack.
ns.add_task(stack.up)
ns.add_task(stack.plan)
ns.add_task(stack.status)
