"""The emulator as a background process: start, stop, status, reset, and start-on-demand.

Standard library only, with moto and boto3 never imported, so the CLI that calls it stays fast.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import deploy
from deploy.errors import DeployError

DEFAULT_PORT = 4566
LOOPBACK = "127.0.0.1"
STARTABLE_HOSTS = frozenset({"127.0.0.1", "localhost"})
HEALTH_PATH = "/_emulator/health"
RESET_PATH = "/moto-api/reset"
START_TIMEOUT_SECONDS = 10.0
STOP_GRACE_SECONDS = 5.0
POLL_SECONDS = 0.02
PROBE_TIMEOUT_SECONDS = 0.5

# A proxy from HTTP_PROXY must never see requests meant for our own loopback server.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Children started by this process, so stop() can reap them instead of leaving zombies.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class EmulatorInfo:
    """A running background emulator."""

    pid: int
    port: int
    endpoint_url: str
    uptime_seconds: float
    log_path: Path


def state_dir() -> Path:
    """Where the pid, port and log files live: DEPLOY_STATE_DIR, else the XDG state directory."""
    if os.environ.get("DEPLOY_STATE_DIR"):
        return Path(os.environ["DEPLOY_STATE_DIR"])
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "iotile-deploy"


def pid_path() -> Path:
    return state_dir() / "emulator.pid"


def port_path() -> Path:
    return state_dir() / "emulator.port"


def log_path() -> Path:
    return state_dir() / "emulator.log"


def endpoint_for(port: int) -> str:
    return f"http://{LOOPBACK}:{port}"


def health(endpoint_url: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> dict[str, Any] | None:
    """The emulator's health answer at this endpoint, or None when no emulator answers there."""
    try:
        with _opener.open(endpoint_url.rstrip("/") + HEALTH_PATH, timeout=timeout) as response:
            answer = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return answer if isinstance(answer, dict) and answer.get("status") == "ok" else None


def status() -> EmulatorInfo | None:
    """The background emulator of this state directory, or None (and stale files removed)."""
    pid, port = _read_int(pid_path()), _read_int(port_path())
    if pid is None or port is None:
        _forget()
        return None
    if not _is_emulator_process(pid):
        _forget()
        return None
    started = pid_path().stat().st_mtime
    return EmulatorInfo(pid, port, endpoint_for(port), time.time() - started, log_path())


def start(port: int = DEFAULT_PORT) -> EmulatorInfo:
    """Start the emulator in the background on 127.0.0.1:port, or return the one already running."""
    running = status()
    if running is not None:
        return _adopt_running(running, port)
    _check_port_free(port)
    state_dir().mkdir(parents=True, exist_ok=True)
    process = _spawn(port)
    # Port first: a pid file then always has its port beside it, for a concurrent status().
    _write(port_path(), port)
    _write(pid_path(), process.pid)
    _wait_until_serving(process, port)
    info = status()
    if info is None:
        raise DeployError(f"the emulator stopped right after it started: see {log_path()}")
    return info


def stop() -> bool:
    """Stop the background emulator; True if one was running."""
    info = status()
    if info is None:
        return False
    _signal(info.pid, signal.SIGTERM)
    if not _wait_for_exit(info.pid, STOP_GRACE_SECONDS):
        _signal(info.pid, signal.SIGKILL)
        _wait_for_exit(info.pid, STOP_GRACE_SECONDS)
    _forget()
    return True


def reset(endpoint_url: str) -> None:
    """Wipe every resource in the emulator: moto's state and the fill-ins'."""
    request = urllib.request.Request(endpoint_url.rstrip("/") + RESET_PATH, method="POST", data=b"")
    try:
        with _opener.open(request, timeout=10) as response:
            response.read()
    except (OSError, ValueError) as exc:
        raise DeployError(
            f"could not reset the emulator at {endpoint_url}: {exc}. Check it runs with `inv local.status`."
        ) from exc


def set_latency(endpoint_url: str, ms: float) -> None:
    """Make every AWS request to the emulator wait `ms` milliseconds (a real AWS round trip)."""
    body = json.dumps({"ms": ms}).encode()
    request = urllib.request.Request(endpoint_url.rstrip("/") + "/_emulator/latency", body, method="PUT")
    try:
        with _opener.open(request, timeout=10) as response:
            response.read()
    except (OSError, ValueError) as exc:
        raise DeployError(f"could not set the emulator's latency at {endpoint_url}: {exc}") from exc


def ensure_running(endpoint_url: str) -> str:
    """Return an endpoint where the emulator answers, starting it when it is ours to start.

    Only 127.0.0.1 and localhost are checked and started: any other host is refused before any
    network traffic, because the local stage must never send its calls to another machine.
    """
    parts = urlsplit(endpoint_url)
    host = (parts.hostname or "").lower()
    if host not in STARTABLE_HOSTS or parts.scheme != "http":
        raise DeployError(
            f"the emulator endpoint {endpoint_url} is unreachable from here: the local stage only "
            f"uses an emulator on http://{LOOPBACK}:PORT. Run `inv local.start` and point "
            f"AWS_ENDPOINT_URL at {endpoint_for(DEFAULT_PORT)} (or unset it)."
        )
    if health(endpoint_url) is not None or _busy_emulator_answers(endpoint_url, parts.port or 80):
        return endpoint_url
    start(parts.port or 80)
    return endpoint_url


def _busy_emulator_answers(endpoint_url: str, port: int) -> bool:
    """Something listens on the port but did not answer the quick probe: an emulator busy with
    other work (a test host under load, a slow answer being held) answers given a little time."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT_SECONDS)
        if probe.connect_ex((LOOPBACK, port)) != 0:
            return False
    return health(endpoint_url, timeout=START_TIMEOUT_SECONDS) is not None


def _adopt_running(running: EmulatorInfo, port: int) -> EmulatorInfo:
    if running.port != port:
        raise DeployError(
            f"an emulator already runs on port {running.port} (pid {running.pid}): "
            "use it, or stop it first with `inv local.stop`."
        )
    # It may still be starting (started by a concurrent command): wait for it like our own.
    _wait_for_health(running.pid, port, START_TIMEOUT_SECONDS)
    return running


def _check_port_free(port: int) -> None:
    answer = health(endpoint_for(port))
    if answer is not None:
        raise DeployError(
            f"port {port} already serves an emulator that {state_dir()} does not track "
            f"(pid {answer.get('pid', '?')}): use it as it is, stop it, or pick another port."
        )
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT_SECONDS)
        if probe.connect_ex((LOOPBACK, port)) == 0:
            raise DeployError(
                f"port {port} on {LOOPBACK} is in use by another program: "
                "stop it or start the emulator on another port."
            )


def _spawn(port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # The child must run this same copy of `deploy`, even from a checkout that is not installed.
    source_root = str(Path(deploy.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "deploy.emulator", "--host", LOOPBACK, "--port", str(port)]
    with log_path().open("ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting on port {port}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    _children[process.pid] = process
    return process


def _wait_until_serving(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _forget()
            raise DeployError(
                f"the emulator exited while starting (code {process.returncode}): "
                f"{_last_log_line()} See {log_path()}."
            )
        answer = health(endpoint_for(port), timeout=PROBE_TIMEOUT_SECONDS)
        if answer is not None and answer.get("pid") == process.pid:
            return
        time.sleep(POLL_SECONDS)
    _signal(process.pid, signal.SIGKILL)
    _wait_for_exit(process.pid, STOP_GRACE_SECONDS)
    _forget()
    raise DeployError(
        f"the emulator did not answer on port {port} within {START_TIMEOUT_SECONDS:.0f}s "
        f"and was stopped. See {log_path()}."
    )


def _wait_for_health(pid: int, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = health(endpoint_for(port))
        if answer is not None and answer.get("pid") == pid:
            return
        time.sleep(POLL_SECONDS)
    raise DeployError(
        f"the emulator (pid {pid}) runs but does not answer on port {port}: "
        f"see {log_path()}, or restart it with `inv local.stop` then `inv local.start`."
    )


def _is_emulator_process(pid: int) -> bool:
    """Whether pid is alive and is an emulator, not a zombie or a stranger that reused the pid."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.parent.exists():
        return True  # no /proc (macOS): trust the pid
    try:
        return b"deploy.emulator" in cmdline.read_bytes()
    except OSError:
        return False


def _signal(pid: int, signum: int) -> None:
    try:
        # The emulator leads its own session: signal the group so nothing it spawned lingers.
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_emulator_process(pid):
            return True
        time.sleep(POLL_SECONDS)
    return False


def _reap(pid: int) -> None:
    process = _children.get(pid)
    if process is not None and process.poll() is not None:
        del _children[pid]


def _forget() -> None:
    for path in (pid_path(), port_path()):
        path.unlink(missing_ok=True)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _write(path: Path, value: int) -> None:
    path.write_text(f"{value}\n")


def _last_log_line() -> str:
    try:
        lines = log_path().read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""
