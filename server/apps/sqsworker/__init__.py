"""The reference SQS worker: `python -m apps.sqsworker` (from `server/`) runs it; see worker.py."""
