"""The reference WSGI app Elastic Beanstalk runs: a health document at /api/v1/server/, 404 elsewhere.

A real IOTile server replaces this file and keeps the same health endpoint, which the load balancer
checks. Standard library only, so the bundle needs no build step."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

HEALTH_PATH = "/api/v1/server/"
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def health() -> dict[str, str]:
    """What the health endpoint answers; read per request, as Beanstalk may change the variables."""
    return {
        "status": "ok",
        "stage": os.environ.get("IOTILE_STAGE", "development"),
        "version": os.environ.get("IOTILE_VERSION", "unknown"),
    }


def respond(start_response: StartResponse, status: str, document: dict[str, str]) -> list[bytes]:
    body = json.dumps(document, sort_keys=True).encode("utf-8")
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]
    start_response(status, headers)
    return [body]


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO") or "/"
    # The load balancer checks with and without the trailing slash, depending on who configured it.
    if path.rstrip("/") + "/" == HEALTH_PATH and environ.get("REQUEST_METHOD", "GET") in ("GET", "HEAD"):
        return respond(start_response, "200 OK", health())
    return respond(start_response, "404 Not Found", {"status": "not found", "path": path})


if __name__ == "__main__":
    from wsgiref.simple_server import make_server

    port = int(os.environ.get("PORT", "8000"))
    with make_server("127.0.0.1", port, application) as server:
        server.serve_forever()
