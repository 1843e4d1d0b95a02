"""`python -m deploy.emulator`: serve the emulator in the foreground, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
from typing import NoReturn

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4566


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.emulator",
        description="The AWS emulator of the local stage: moto plus the project's fill-ins.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s)")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="wait this long before serving each AWS request, as a real round trip (AWS: ~50)",
    )
    return parser.parse_args(argv)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _loopback_for(host: str) -> str:
    """Where a local process reaches a server bound to `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "localhost") else host


def _exit_on_sigterm(signum: int, frame: object) -> NoReturn:
    # SystemExit unwinds serve_forever() so the socket is closed and the log says we stopped.
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not _is_loopback(args.host):
        # The emulator has no authentication: anyone who can reach it can read and change it.
        print(f"warning: serving on {args.host}, reachable from other machines", file=sys.stderr)
    # Every real account has the AWS managed policies (roles attach some of them); moto only loads
    # them when asked. Set here, in the emulator's own process, not in build_app(): a test process
    # that serves the app in a thread should not pay for them in every other test.
    os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    from deploy.emulator import workers
    from deploy.emulator.server import make_emulator_server

    server = make_emulator_server(args.host, args.port)
    server.app.latency_seconds = max(0.0, args.latency_ms) / 1000
    from deploy.emulator.app import IdleCollector

    collector = IdleCollector(server.app).start()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    host, port = server.socket.getsockname()[:2]
    print(f"emulator listening on http://{host}:{port} (pid {os.getpid()})", file=sys.stderr)
    # ECS service tasks run as local processes that call this emulator back.
    workers.start(f"http://{_loopback_for(host)}:{port}", server.app.serve_lock)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        collector.stop()
        workers.stop()
        server.server_close()
        print(f"emulator on port {port} stopped", file=sys.stderr)


if __name__ == "__main__":
    main()
