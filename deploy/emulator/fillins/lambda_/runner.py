"""Runs one Lambda handler in this process, as the Lambda Python runtime would: started by the
emulator's Invoke fill-in with `python -I runner.py TASK_ROOT HANDLER RESULT_FILE`, the event on
stdin. The handler's output is the log; its result (or error) goes to RESULT_FILE as JSON. It imports
nothing of the project: the package and the runtime's own modules (boto3) only."""

import importlib
import json
import os
import sys
import time
import traceback
import uuid


class Context:
    """The attributes and method of the Lambda context object handlers use."""

    def __init__(self, deadline: float) -> None:
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = os.environ.get("EMULATOR_FUNCTION_ARN", "")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.aws_request_id = os.environ.get("EMULATOR_REQUEST_ID") or str(uuid.uuid4())
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = "emulator"
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main() -> None:
    task_root, handler, result_file = sys.argv[1:4]
    sys.path.insert(0, task_root)
    os.chdir(task_root)
    timeout = float(os.environ.get("EMULATOR_TIMEOUT", "3"))
    try:
        module_name, function_name = handler.rsplit(".", 1)
        function = getattr(importlib.import_module(module_name), function_name)
        event = json.loads(sys.stdin.read() or "{}")
        outcome = {"result": function(event, Context(time.monotonic() + timeout))}
    except Exception as exc:  # every handler error is the invocation's result
        stack = traceback.format_exception(type(exc), exc, exc.__traceback__)
        traceback.print_exc()
        outcome = {
            "error": {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "stackTrace": [line.rstrip("\n") for line in stack[1:]],
            }
        }
    sys.stdout.flush()
    sys.stderr.flush()
    with open(result_file, "w", encoding="utf-8") as handle:
        json.dump(outcome, handle, default=str)


if __name__ == "__main__":
    main()
