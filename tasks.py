"""The iotile-deploy command line: `inv --list` shows every task; `inv --help TASK` explains one.

Each AWS area's tasks live in its own module under deploy/areas/; this file only composes them. It
must stay cheap to import (no boto3, no pydantic): `inv --list` runs it."""

from invoke import Collection

from deploy import config_cli, secrets, stack
from deploy.areas import (
    acm,
    aliases,
    autocopy,
    cdn,
    dns,
    dynamodb,
    eb,
    ecr,
    ecs,
    firehose,
    iam,
    kms,
    lambdas,
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
from deploy.ship import statics_tasks
from deploy.ship import tasks as ship
from deploy.ship import worker_tasks as workers

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
    cdn,
    eb,
    ecr,
    ecs,
    dns,
    acm,
    aliases,
    lambdas,
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
ns.add_task(workers.create_ecs, name="create-ecs")
ns.add_task(workers.create_ec2_instances, name="create-ec2-instances")
ns.add_task(workers.describe_ecs, name="describe-ecs")
ns.add_task(workers.terminate_ecs, name="terminate-ecs")

# Whole stack.
ns.add_task(stack.up)
# `create` is the original name of `up`: the same task under both names.
ns.add_task(stack.up, name="create")
ns.add_task(stack.plan)
ns.add_task(stack.status)
ns.add_task(stack.down)

# Shipping the app.
ns.add_task(ship.deploy)
ns.add_task(statics_tasks.deploy_statics, name="deploy-statics")

# Shipping the workers.
ns.add_task(workers.build_docker, name="build-docker")
ns.add_task(workers.update_ecs, name="update-ecs")
ns.add_task(workers.shutdown_ecs_workers, name="shutdown-ecs-workers")
ns.add_task(workers.deploy_worker, name="deploy-worker")
