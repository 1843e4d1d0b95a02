"""What every fill-in shares: per-account state, reading a request, and AWS-shaped answers."""

from __future__ import annotations

import json
import os
import re
import uuid
import weakref
from collections.abc import Callable, Mapping
from threading import Lock
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from deploy.emulator.calls import credential_of

DEFAULT_REGION = "us-east-1"
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"

FillinResponse = tuple[int, Mapping[str, str], bytes | str]
Handler = Callable[[dict[str, Any], bytes], FillinResponse]

B = TypeVar("B")


class FillinBackends(Generic[B]):
    """The state of one fill-in service per (account, region), like moto's BackendDict.

    Every instance enrols itself so that `reset_all()` (run on `/moto-api/reset`) reaches it:
    a fill-in cannot forget to take part in a reset. Weak references let a test's throwaway
    fill-in disappear with the test.
    """

    _instances: ClassVar[weakref.WeakSet[FillinBackends[Any]]] = weakref.WeakSet()

    def __init__(self, backend: Callable[[str, str], B]) -> None:
        self._make = backend
        self._lock = Lock()
        self._backends: dict[tuple[str, str], B] = {}
        FillinBackends._instances.add(self)

    def get(self, account_id: str, region: str) -> B:
        with self._lock:
            key = (account_id, region)
            if key not in self._backends:
                self._backends[key] = self._make(account_id, region)
            return self._backends[key]

    def for_request(self, environ: dict[str, Any]) -> B:
        return self.get(account_of(environ), region_of(environ))

    def reset(self) -> None:
        with self._lock:
            self._backends.clear()

    @classmethod
    def reset_all(cls) -> None:
        for backends in list(cls._instances):
            backends.reset()


def region_of(environ: dict[str, Any]) -> str:
    credential = credential_of(environ)
    return credential.region if credential else DEFAULT_REGION


def account_of(environ: dict[str, Any]) -> str:
    """The account moto would use for this request, so fill-in state lines up with moto's."""
    from moto.core import DEFAULT_ACCOUNT_ID

    # Same order as moto's BaseResponse.get_current_account.
    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"]
    if "HTTP_X_MOTO_ACCOUNT_ID" in environ:
        return environ["HTTP_X_MOTO_ACCOUNT_ID"]
    credential = credential_of(environ)
    if credential is None:
        return DEFAULT_ACCOUNT_ID
    from moto.iam.models import get_account_id_from

    return get_account_id_from(credential.access_key)


def query_list(params: dict[str, str], prefix: str) -> list[str]:
    """The values of a query-protocol list, in order: `Prefix.1`, `Prefix.2`, ... (pass
    `Names.member` for the `Names.member.1` form)."""
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)$")
    found = sorted((int(m.group(1)), v) for k, v in params.items() if (m := pattern.match(k)))
    return [value for _, value in found]


def query_params(environ: dict[str, Any], body: bytes) -> dict[str, str]:
    """Parameters of a query-protocol request (EC2, Beanstalk, ...): query string and form body."""
    pairs = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    pairs += parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    return dict(pairs)


def json_params(body: bytes) -> dict[str, Any]:
    """Parameters of a JSON-protocol request (ECS, SSM, ...)."""
    return json.loads(body) if body.strip() else {}


def query_response(operation: str, result_xml: str = "", namespace: str = "") -> FillinResponse:
    """A query-protocol success: `<OpResponse><OpResult>result_xml</OpResult>...`."""
    xmlns = f' xmlns="{escape(namespace)}"' if namespace else ""
    body = (
        f"<{operation}Response{xmlns}>"
        f"<{operation}Result>{result_xml}</{operation}Result>"
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        f"</{operation}Response>"
    )
    return 200, {"Content-Type": "text/xml"}, body


def query_error(code: str, message: str, status: int = 400) -> FillinResponse:
    body = (
        "<ErrorResponse><Error><Type>Sender</Type>"
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return status, {"Content-Type": "text/xml"}, body


def json_response(data: Mapping[str, Any]) -> FillinResponse:
    return 200, {"Content-Type": JSON_CONTENT_TYPE}, json.dumps(data, default=str)


def json_error(code: str, message: str, status: int = 400) -> FillinResponse:
    body = json.dumps({"__type": code, "message": message})
    return status, {"Content-Type": JSON_CONTENT_TYPE}, body
