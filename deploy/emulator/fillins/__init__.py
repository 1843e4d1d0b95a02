"""Fill-ins: AWS operations moto lacks, served by the emulator in place of moto.

A fill-in is a handler for one (service, operation): `handler(environ, body) -> (status, headers,
body)`, where service is the SigV4 signing name (`elasticbeanstalk`, `ecs`, `ec2`) and operation
the API name (`CreateApplicationVersion`). Each service lives in its own package laid out like
moto's: `fillins/<service>/models.py` holds behaviour and state in a `FillinBackends` (per account
and region, emptied by `reset_fillins()`), `fillins/<service>/responses.py` the wire format and
`OPERATIONS: dict[str, Handler]` with `SERVICE: str`. List the package in `BUILTIN_SERVICES`.
When the operations need a field in moto's own answers that moto leaves out (the namespace ARN of a
Redshift cluster, say), `responses.MOTO_ADDITIONS` lists the functions that add it, installed with
the fill-in and checked like the fixes. `inprocess.serving_in_process()` serves the same fill-ins to
clients under moto's in-process mock (the unit tests), not only through the emulator's server.
"""

from __future__ import annotations

import importlib
from threading import Lock

from deploy.emulator.fillins.core import FillinBackends, FillinResponse, Handler

__all__ = [
    "BUILTIN_SERVICES",
    "FillinBackends",
    "FillinResponse",
    "Handler",
    "find_fillin",
    "load_builtin_fillins",
    "register_fillin",
    "registered_fillins",
    "reset_fillins",
    "unregister_fillin",
]

# Packages under deploy/emulator/fillins/ that the emulator loads at start.
BUILTIN_SERVICES: tuple[str, ...] = ("redshift", "redshift_data", "elasticbeanstalk", "lambda_", "ecs")

_lock = Lock()
_handlers: dict[tuple[str, str], Handler] = {}


def register_fillin(service: str, operation: str, handler: Handler) -> None:
    """Serve `operation` of `service` with `handler` instead of moto."""
    key = (service.lower(), operation)
    with _lock:
        existing = _handlers.get(key)
        # Two fill-ins for one operation would silently shadow each other.
        if existing is not None and existing is not handler:
            raise ValueError(f"a fill-in for {service} {operation} is already registered")
        _handlers[key] = handler


def unregister_fillin(service: str, operation: str) -> None:
    with _lock:
        _handlers.pop((service.lower(), operation), None)


def find_fillin(service: str, operation: str) -> Handler | None:
    with _lock:
        return _handlers.get((service.lower(), operation))


def registered_fillins() -> list[tuple[str, str]]:
    with _lock:
        return sorted(_handlers)


def reset_fillins() -> None:
    """Empty the state of every fill-in, as moto's reset empties its own."""
    FillinBackends.reset_all()


def load_builtin_fillins() -> None:
    """Register the operations of every package in BUILTIN_SERVICES; safe to call again."""
    for package in BUILTIN_SERVICES:
        responses = importlib.import_module(f"{__name__}.{package}.responses")
        for operation, handler in responses.OPERATIONS.items():
            register_fillin(responses.SERVICE, operation, handler)
        for addition in getattr(responses, "MOTO_ADDITIONS", ()):
            addition()
