"""Stage: one stage's config, its boto3 session and cached clients, its tags and its account id."""

from __future__ import annotations

import functools
import gc
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from deploy.aws import partition
from deploy.config import StageConfig, default_stage, load_config
from deploy.errors import DeployError

if TYPE_CHECKING:
    import botocore.session

READ_ONLY_PREFIXES = ("Describe", "Get", "List", "Head", "Lookup", "Search", "Query", "Scan")
EMULATOR_CREDENTIALS = {"access_key": "testing", "secret_key": "testing"}
# The connections a client keeps open for reuse: as many as its requests that run side by side (the
# eight buckets' seven reads each, the statics' uploads). With botocore's default of ten, each
# request past the tenth opens a connection (a TCP and TLS handshake) and then drops it.
MAX_POOL_CONNECTIONS = 64
CallHook = Callable[[str, str], None]
T = TypeVar("T")


def is_mutating(operation: str) -> bool:
    """Whether an AWS operation (CreateBucket, GetQueueAttributes, ...) may change anything."""
    return not operation.startswith(READ_ONLY_PREFIXES)


class MutationBlocked(DeployError):
    """Raised by the dry-run guard if code tries a mutating call while only reading."""


class _Flight:
    """One remembered read in progress, which other threads asking for the same key wait on."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self._done = threading.Event()
        self._ok = False
        self._value: Any = None

    def succeed(self, value: Any) -> None:
        self._value, self._ok = value, True
        self._done.set()

    def fail(self) -> None:
        self._done.set()

    def outcome(self) -> tuple[bool, Any]:
        """(True, the first asker's answer) once it has one; (False, None) when it failed."""
        from deploy.parallel import check_stop

        while not self._done.wait(0.05):
            check_stop()
        return self._ok, self._value


@dataclass
class Stage:
    name: str
    config: StageConfig
    endpoint_url: str | None = None
    read_only: bool = False
    _session: Any = None
    _raw_session: Any = None
    _clients: dict[str, Any] = field(default_factory=dict)
    _hooks: list[CallHook] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _client_lock: threading.Lock = field(default_factory=threading.Lock)
    _account_lock: threading.Lock = field(default_factory=threading.Lock)
    _account_id: str | None = None
    _remembered: dict[Any, Any] = field(default_factory=dict)
    _flights: dict[Any, _Flight] = field(default_factory=dict)
    _generation: int = 0
    _runs: int = 0

    @property
    def region(self) -> str:
        return self.config.region

    @property
    def custom_endpoint(self) -> str | None:
        """The endpoint in use when it is not AWS itself (botocore reads the env vars alone)."""
        env = os.environ
        return self.endpoint_url or env.get("AWS_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL_S3")

    @property
    def uses_emulator(self) -> bool:
        return self.config.emulator.enabled

    def tags(self, name: str | None = None) -> dict[str, str]:
        """Tags for a resource; a shared resource (no `{stage}` in its name) gets no stage tags."""
        base = {"Project": self.config.project, "ManagedBy": "iotile-deploy"}
        if name is not None and self.config.is_shared(name):
            return {**base, "Stage": "shared"}
        return {**self.config.tags, **base, "Stage": self.name}

    @staticmethod
    def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
        return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]

    def _session_of(self, *, raw_timestamps: bool) -> botocore.session.Session:
        """The session (made once) that clients are made from; the caller holds _client_lock."""
        if raw_timestamps:
            if self._raw_session is None:
                self._raw_session = self._new_session(raw_timestamps=True)
            return self._raw_session
        if self._session is None:
            self._session = self._new_session(raw_timestamps=False)
        return self._session

    def _new_session(self, *, raw_timestamps: bool) -> botocore.session.Session:
        """A botocore session (boto3 adds nothing clients need, and costs its import)."""
        import botocore.session

        from deploy.aws.models import shared_loader

        core = botocore.session.Session(profile=None if self.uses_emulator else self.config.profile)
        core.register_component("data_loader", shared_loader())
        core.set_config_variable("region", self.config.region)
        if self.uses_emulator:
            core.set_credentials(**EMULATOR_CREDENTIALS)
        if raw_timestamps:
            # Timestamps stay the strings AWS sent. Parsing them is most of a client's work on a
            # listing of thousands of objects, and the callers of such clients never read them.
            core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
        return core

    def client(self, service: str, *, raw_timestamps: bool = False) -> Any:
        """The stage's client of `service`, made once. `raw_timestamps`: a separate client whose
        answers keep timestamps as strings (for large listings that do not read them)."""
        key = f"{service}:raw" if raw_timestamps else service
        # A client made already is taken without the lock (it is stored only once set up), so a
        # read never waits while another thread makes a client of some other service.
        made = self._clients.get(key)
        if made is not None:
            return made
        # A lock of their own: botocore sessions are not safe to make clients from two threads at
        # once, and the reads remembered under self._lock need not wait for a client being made.
        with self._client_lock:
            if key not in self._clients:
                from botocore.config import Config

                aws = self.config.aws
                config = Config(
                    retries={"mode": aws.retry_mode, "total_max_attempts": aws.max_attempts},
                    connect_timeout=aws.connect_timeout_seconds,
                    read_timeout=aws.read_timeout_seconds,
                    max_pool_connections=MAX_POOL_CONNECTIONS,
                    s3={"addressing_style": "path"} if self.custom_endpoint else None,
                )
                session = self._session_of(raw_timestamps=raw_timestamps)
                client = session.create_client(
                    service, region_name=self.config.region, endpoint_url=self.endpoint_url, config=config
                )
                client.meta.events.register("before-call", self._before_call)
                client.meta.events.register("after-call", _name_service_of_error)
                named = functools.partial(_name_service_of_failure, client.meta.service_model.service_name)
                client.meta.events.register("after-call-error", named)
                client.meta.events.register("after-call", self._after_call)
                client.meta.events.register("after-call-error", self._after_error)
                self._clients[key] = client
                # The client's model is a large tree that lives as long as the process: out of
                # the collector's sight, so each collection does not walk it again.
                gc.freeze()
            return self._clients[key]

    def on_call(self, hook: CallHook) -> None:
        """Call hook(service, operation) before every AWS call made through this stage."""
        self._hooks.append(hook)

    def _before_call(self, model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        if is_mutating(model.name):
            if self.read_only:
                raise MutationBlocked(f"dry run: refused mutating call {service}:{model.name}")
            self.forget_reads()
        for hook in self._hooks:
            hook(service, model.name)

    def _after_call(self, model: Any, **_: Any) -> None:
        if is_mutating(model.name):
            self.forget_reads()

    def _after_error(self, **_: Any) -> None:
        # A call that failed on the way (a timeout) may still have changed something; this event
        # does not say which operation it was.
        self.forget_reads()

    @property
    def read_generation(self) -> int:
        """Moves on whenever what was read may be out of date (a mutating call, a failed call,
        a probe of a wait): reads made under the same generation saw the same stage."""
        with self._lock:
            return self._generation

    def forget_reads(self) -> None:
        """Drop what remember() kept: after a change, and before each probe of a wait (a state
        moves on by itself: a cluster becomes available)."""
        with self._lock:
            self._generation += 1
            self._remembered.clear()

    @contextmanager
    def one_run(self) -> Iterator[None]:
        """Inside, remember() keeps what it reads (one `up`, `plan` or `status`); outside, and
        at both ends, nothing is kept, so a later run reads afresh."""
        with self._lock:
            self._runs += 1
            if self._runs == 1:
                self.forget_reads()
        try:
            yield
        finally:
            with self._lock:
                self._runs -= 1
                if not self._runs:
                    self.forget_reads()

    def remember(self, key: Any, read: Callable[[], T]) -> T:
        """What `read()` answers, read once per run until this stage makes a mutating call: a
        lookup several areas repeat (a VPC's id, a key's ARN) costs one request per run, even
        when they ask at the same moment (the later ones wait for the first one's answer). A
        read that overlapped a mutating call is used but not kept (it may predate the change)."""
        while True:
            with self._lock:
                if not self._runs:
                    flight, leads = None, False
                elif key in self._remembered:
                    return self._remembered[key]
                else:
                    flight = self._flights.get(key)
                    leads = flight is None
                    if leads:
                        flight = self._flights[key] = _Flight(self._generation)
            if flight is None:
                return read()
            if leads:
                return self._lead(key, flight, read)
            answered, value = flight.outcome()
            if answered:
                return value
            # The first asker failed: ask again, this thread perhaps first now.

    def _lead(self, key: Any, flight: _Flight, read: Callable[[], T]) -> T:
        try:
            value = read()
        except BaseException:
            with self._lock:
                self._flights.pop(key, None)
            flight.fail()
            raise
        with self._lock:
            self._flights.pop(key, None)
            if self._runs and flight.generation == self._generation:
                self._remembered[key] = value
        flight.succeed(value)
        return value

    @property
    def account_id(self) -> str:
        # A lock of its own: the remembered reads under self._lock need not wait for this call.
        with self._account_lock:
            if self._account_id is None:
                self._account_id = self.client("sts").get_caller_identity()["Account"]
            return self._account_id

    def arn(self, service: str, resource: str, *, region: bool = True) -> str:
        where = self.region if region else ""
        return f"arn:{partition(self.region)}:{service}:{where}:{self.account_id}:{resource}"


def _name_service_of_error(http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
    """An error answer (after botocore's retries) carries its service, for the one-line report:
    the ClientError raised from `parsed` knows only the operation."""
    if http_response.status_code >= 300 and isinstance(parsed.get("Error"), dict):
        parsed["Error"].setdefault("Service", model.service_model.service_name)


def _name_service_of_failure(service: str, exception: BaseException, event_name: str, **_: Any) -> None:
    """A call that got no answer (connection dropped, read timeout) keeps its service and operation
    on the exception, for the same report."""
    if not hasattr(exception, "aws_service"):
        exception.aws_service = service  # type: ignore[attr-defined]
        exception.aws_operation = event_name.rsplit(".", 1)[-1]  # type: ignore[attr-defined]


def resolve_endpoint(config: StageConfig) -> str | None:
    """The endpoint to pass to clients explicitly, or None to let botocore read AWS_ENDPOINT_URL
    and AWS_ENDPOINT_URL_<SERVICE> itself. A stage with its own endpoint (`local`) still yields to
    AWS_ENDPOINT_URL, so tests can point it at an emulator on another port."""
    if config.endpoint_url is None:
        return None
    return os.environ.get("AWS_ENDPOINT_URL") or config.endpoint_url


def open_stage(name: str | None = None, *, dry_run: bool = False, start_emulator: bool = True) -> Stage:
    """Load and validate config (bad input raises before any AWS call), then build the Stage."""
    from deploy.parallel import max_workers

    stage_name = name or default_stage()
    config = load_config(stage_name)
    max_workers()  # a bad DEPLOY_MAX_WORKERS is bad input: exit 2 before any AWS call
    endpoint = resolve_endpoint(config)
    if config.emulator.enabled and start_emulator:
        from deploy.emulator.control import ensure_running

        endpoint = ensure_running(endpoint or "http://127.0.0.1:4566")
    return Stage(stage_name, config, endpoint_url=endpoint, read_only=dry_run)
