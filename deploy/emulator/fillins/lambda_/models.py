"""Behaviour of the Lambda Invoke fill-in: the function moto holds (configuration and the package's
bytes) run by runner.py in a local Python process, with the function's environment, pointed at the
emulator, and killed at the function's timeout, as Lambda would."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import Any

RUNNER = Path(__file__).with_name("runner.py")
# What Lambda returns of the log with LogType=Tail: its last 4 KB.
LOG_TAIL_BYTES = 4096
_extract_lock = Lock()


@dataclass(frozen=True)
class Invocation:
    payload: bytes
    function_error: str | None
    log: str

    def log_tail(self) -> str:
        """The base64 of the log's last 4 KB (the X-Amz-Log-Result header)."""
        import base64

        return base64.b64encode(self.log.encode("utf-8")[-LOG_TAIL_BYTES:]).decode("ascii")


def task_root(code: bytes) -> Path:
    """The package unpacked once per content, as Lambda's /var/task."""
    digest = hashlib.sha256(code).hexdigest()[:24]
    root = Path(tempfile.gettempdir()) / "iotile-emulator-lambda" / digest
    with _extract_lock:
        if not root.is_dir():
            partial = root.with_name(f"{digest}.{os.getpid()}.part")
            with zipfile.ZipFile(io.BytesIO(code)) as archive:
                archive.extractall(partial)
            partial.replace(root)
    return root


def environment(function: Any, endpoint: str | None, request_id: str) -> dict[str, str]:
    """What the Lambda runtime sets, then the function's own variables; AWS calls go to the
    emulator (never to AWS: the credentials are the emulator's)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "AWS_REGION": function.region,
        "AWS_DEFAULT_REGION": function.region,
        "AWS_ACCESS_KEY_ID": ("EMUFUNC" + request_id.replace("-", "").upper())[:20],
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_LAMBDA_FUNCTION_NAME": function.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.function_name}",
        "EMULATOR_FUNCTION_ARN": function.function_arn,
        "EMULATOR_REQUEST_ID": request_id,
        "EMULATOR_TIMEOUT": str(function.timeout),
        **{str(k): str(v) for k, v in (function.environment_vars or {}).items()},
    }
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env


def invoke(function: Any, event: bytes, endpoint: str | None) -> Invocation:
    """Run the function's handler on `event` (JSON bytes); the answer Lambda would give."""
    request_id = str(uuid.uuid4())
    root = task_root(function.code_bytes)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="iotile-invoke-") as scratch:
        result_file = Path(scratch) / "result.json"
        command = [sys.executable, "-I", str(RUNNER), str(root), function.handler or "", str(result_file)]
        try:
            done = subprocess.run(
                command,
                input=event,
                capture_output=True,
                env=environment(function, endpoint, request_id),
                timeout=float(function.timeout),
                check=False,
            )
            output = (done.stdout + done.stderr).decode("utf-8", "replace")
            outcome = json.loads(result_file.read_text("utf-8")) if result_file.is_file() else None
        except subprocess.TimeoutExpired as expired:
            output = ((expired.stdout or b"") + (expired.stderr or b"")).decode("utf-8", "replace")
            outcome = {"error": {"errorMessage": f"Task timed out after {function.timeout:.2f} seconds"}}
    if outcome is None:
        outcome = {"error": {"errorMessage": f"Runtime exited with error: exit status {done.returncode}",
                             "errorType": "Runtime.ExitError"}}  # fmt: skip
    elapsed = (time.monotonic() - started) * 1000
    log = (
        f"START RequestId: {request_id} Version: $LATEST\n{output}"
        f"END RequestId: {request_id}\n"
        f"REPORT RequestId: {request_id}\tDuration: {elapsed:.2f} ms\t"
        f"Memory Size: {function.memory_size} MB\n"
    )
    if "error" in outcome:
        return Invocation(json.dumps(outcome["error"]).encode("utf-8"), "Unhandled", log)
    return Invocation(json.dumps(outcome["result"]).encode("utf-8"), None, log)
