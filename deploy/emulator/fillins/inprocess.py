"""The fill-ins served to in-process clients under moto's `mock_aws`, as the emulator's server serves
them: the unit tests run the same fill-in code the local stage does.

moto's mock answers every request of a mocked client in `botocore_stubber.process_request`; while
`serving_in_process()` is active, a request for a registered fill-in operation is answered by the
fill-in instead (built into the WSGI environ the handler knows from the server), and every other
request goes to moto as before.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from deploy.emulator.calls import describe_call, is_form
from deploy.emulator.fillins import find_fillin, load_builtin_fillins, reset_fillins


def environ_of(request: Any) -> tuple[dict[str, Any], bytes]:
    """A WSGI environ (and the body) for a botocore AWSPreparedRequest."""
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    elif not isinstance(body, bytes):
        # A streamed body: read it, then rewind it, so that moto, which answers every operation
        # no fill-in serves, still reads the whole body (an S3 PutObject, say).
        stream = body
        body = stream.read()
        if hasattr(stream, "seek"):
            stream.seek(0)
    url = urlsplit(request.url)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "PATH_INFO": url.path or "/",
        "QUERY_STRING": url.query,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    for key, value in request.headers.items():
        text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        name = key.upper().replace("-", "_")
        environ["CONTENT_TYPE" if name == "CONTENT_TYPE" else f"HTTP_{name}"] = text
    return environ, body


@contextmanager
def serving_in_process() -> Iterator[None]:
    """Answer fill-in operations of in-process mocked clients from the fill-ins, until exit. The
    fill-ins start empty and are emptied again on exit, as moto's mock empties its backends."""
    from moto.core.models import botocore_stubber

    load_builtin_fillins()
    moto_answer = botocore_stubber.process_request

    def process_request(request: Any) -> Any:
        environ, body = environ_of(request)
        call = describe_call(environ, body if is_form(environ) else b"")
        handler = find_fillin(call.service, call.operation)
        if handler is None:
            return moto_answer(request)
        status, headers, payload = handler(environ, body)
        return status, dict(headers), payload

    reset_fillins()
    botocore_stubber.process_request = process_request
    try:
        yield
    finally:
        del botocore_stubber.process_request
        reset_fillins()
