"""Wire format of the Lambda Invoke fill-in (REST-JSON: `POST /2015-03-31/functions/NAME/invocations`,
options in X-Amz-* headers) and the operation it serves."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import parse_qs, unquote

from deploy.emulator.fillins.core import FillinResponse, account_of, json_error, region_of
from deploy.emulator.fillins.lambda_.models import invoke

SERVICE = "lambda"
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def endpoint_of(environ: dict[str, Any]) -> str | None:
    """The emulator's own URL, for the function's AWS calls: only when served on this machine."""
    host = environ.get("HTTP_HOST", "")
    if host.split(":")[0] not in LOOPBACK and not host.startswith("[::1]"):
        return None
    return f"http://{host}"


def find_function(environ: dict[str, Any]) -> Any:
    from moto.awslambda.utils import get_backend

    name = unquote(environ.get("PATH_INFO", "").split("/")[3])
    qualifier = parse_qs(environ.get("QUERY_STRING", "")).get("Qualifier", [None])[0]
    return get_backend(account_of(environ), region_of(environ)).get_function(name, qualifier)


def handle_invoke(environ: dict[str, Any], body: bytes) -> FillinResponse:
    from moto.awslambda.exceptions import LambdaClientError

    try:
        function = find_function(environ)
    except LambdaClientError as error:
        return json_error(error.error_type, error.message, error.code)
    kind = environ.get("HTTP_X_AMZ_INVOCATION_TYPE", "RequestResponse")
    if kind == "DryRun":
        return 204, {}, b""
    endpoint = endpoint_of(environ)
    if kind == "Event":
        # Lambda queues it and answers at once; its errors only reach the log.
        threading.Thread(target=invoke, args=(function, body, endpoint), daemon=True).start()
        return 202, {}, b""
    outcome = invoke(function, body, endpoint)
    headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST"}
    if outcome.function_error:
        headers["X-Amz-Function-Error"] = outcome.function_error
    if environ.get("HTTP_X_AMZ_LOG_TYPE") == "Tail":
        headers["X-Amz-Log-Result"] = outcome.log_tail()
    return 200, headers, outcome.payload


# The emulator serves it outside its one-request-at-a-time lock: the handler calls the emulator.
handle_invoke.runs_code = True  # type: ignore[attr-defined]
OPERATIONS = {"Invoke": handle_invoke}
