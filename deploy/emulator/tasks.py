"""The `local` tasks: start, stop, inspect and wipe the embedded emulator the `local` stage runs on."""

from __future__ import annotations

from urllib.parse import urlsplit

from invoke import Collection

from deploy.cli import deploy_task

PORT_HELP = {"port": "port on 127.0.0.1 (default: the local stage's endpoint, 4566)"}


def _endpoint(port: int | None) -> str:
    from deploy.config import load_config
    from deploy.stage import resolve_endpoint

    if port:
        return f"http://127.0.0.1:{port}"
    return resolve_endpoint(load_config("local")) or "http://127.0.0.1:4566"


def _port(endpoint: str) -> int:
    return urlsplit(endpoint).port or 4566


@deploy_task(help={**PORT_HELP, "latency-ms": "wait this long before serving each AWS request (AWS: ~50)"})
def start(c, port=0, latency_ms=0.0):
    """Start the emulator in the background. Example: inv local.start --latency-ms 50"""
    from deploy.emulator import control

    info = control.start(_port(_endpoint(port)))
    if latency_ms:
        control.set_latency(info.endpoint_url, float(latency_ms))
    print(f"emulator running: {info.endpoint_url} (pid {info.pid}, log {info.log_path})")


@deploy_task()
def stop(c):
    """Stop the emulator; its state is lost. Example: inv local.stop"""
    from deploy.emulator import control

    print("emulator stopped" if control.stop() else "emulator was not running")


@deploy_task()
def status(c, json=False):
    """Show whether the emulator runs, where, and for how long. Example: inv local.status"""
    from deploy.emulator import control

    info = control.status()
    if json:
        import dataclasses
        import json as jsonlib

        print(jsonlib.dumps(dataclasses.asdict(info) if info else None, indent=2, default=str))
    elif info is None:
        print("emulator not running (start it with `inv local.start`)")
    else:
        print(f"emulator running: {info.endpoint_url} (pid {info.pid}, up {info.uptime_seconds:.0f}s)")


@deploy_task(help=PORT_HELP)
def reset(c, port=0):
    """Wipe every resource in the emulator, keeping it running. Example: inv local.reset"""
    from deploy.emulator import control

    endpoint = _endpoint(port)
    control.reset(endpoint)
    print(f"emulator state wiped: {endpoint}")


collection = Collection("local", start, stop, status, reset)
