"""The iotile-deploy command line: `inv --list` shows every task; `inv --help TASK` explains one.

Each area's tasks live in its own module under deploy/; this file only composes them. It must stay
cheap to import (no boto3, no pydantic): `inv --list` runs it."""

from invoke import Collection

from deploy import config_cli, dynamodb, iam, kms, local, network, s3, secrets, ses, sns, sqs, stack
from deploy.cli import exit_2_on_bad_arguments

exit_2_on_bad_arguments()

ns = Collection()
for area in (config_cli, local, iam, network, kms, s3, sns, sqs, dynamodb, ses, secrets):
    ns.add_collection(area.collection)

# The original task names, kept for the people and scripts that know them.
ns.add_task(network.create, name="create-security-groups")

# Whole stack.
ns.add_task(stack.up)
ns.add_task(stack.plan)
ns.add_task(stack.status)
