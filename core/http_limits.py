"""Request size limits and access-log hygiene shared by both web servers.

The production server (``scripts/serve``: gunicorn + uvicorn workers,
``devbench_site.server``) and daphne (embedded mode, tests; ``core.http_server``)
give the same guarantees, and this module is their one implementation of each:

- :class:`BodyLimit` (ASGI middleware in front of the whole HTTP application):
  a body over ``DEVBENCH_MAX_REQUEST_BODY_BYTES``, declared by ``Content-Length``
  or counted while a chunked body arrives, answers ``413 request_body_too_large``
  in the shared error shape and never reaches a view.
- :func:`header_refusal`: the ``431 request_header_too_large`` answer each server
  sends when the request line and headers pass ``DEVBENCH_MAX_REQUEST_HEADER_BYTES``
  (the servers count at their own parser, before the application exists).
- :class:`RedactSecrets` (a logging filter) and :func:`redact`: a secret query
  parameter (``?token=``...) never reaches a log line; the access log format of
  either server has no request headers, so ``Authorization`` never does either.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

SECRET_QUERY = re.compile(
    r"([?&;](?:token|access_token|id_token|api_key|apikey|password|secret)=)[^&;#\s\"']*", re.I
)
REASONS = {413: b"Content Too Large", 431: b"Request Header Fields Too Large"}


def redact(text: str) -> str:
    """``/p?token=abc&x=1`` → ``/p?token=[redacted]&x=1``."""
    return SECRET_QUERY.sub(r"\1[redacted]", text)


def header_limit() -> int:
    return int(settings.DEVBENCH_MAX_REQUEST_HEADER_BYTES)


def body_limit() -> int:
    return int(settings.DEVBENCH_MAX_REQUEST_BODY_BYTES)


def error_body(code: str, message: str, limit: int) -> bytes:
    return json.dumps({"code": code, "message": message, "extra": {"limit_bytes": limit}}).encode()


def body_error(limit: int) -> bytes:
    return error_body("request_body_too_large", f"The request body exceeds {limit} bytes.", limit)


def header_error(limit: int) -> bytes:
    return error_body(
        "request_header_too_large", f"The request headers exceed {limit} bytes.", limit
    )


def raw_refusal(status: int, body: bytes) -> bytes:
    """A whole HTTP/1.1 answer, for a server refusing below the application."""
    head = (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n" % (status, REASONS[status], len(body))
    )
    return head + body


def header_refusal() -> bytes:
    return raw_refusal(431, header_error(header_limit()))


def body_refusal() -> bytes:
    return raw_refusal(413, body_error(body_limit()))


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server's parser refuses a malformed length itself
    return None


class BodyLimit:
    """Refuses HTTP request bodies over the limit with ``413`` (see the module doc).

    A declared length over the limit is answered before the application runs. A
    chunked body is counted as the application reads it: past the limit the
    application is told the client left (``http.disconnect``, so Django and the MCP
    endpoint stop without answering) and this middleware answers 413 instead, unless
    the application had already started its answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit()
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(send, limit)
            return
        received = 0
        over = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the refusal below answers instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counting_receive, guarded_send)
        if over and not started:
            await self._refuse(send, limit)

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        body = body_error(limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class RedactSecrets(logging.Filter):
    """Scrubs secret query values from a record's message and string arguments.

    On the servers' own loggers (uvicorn's access and error logs: the error log
    names each websocket path with its query string), so it holds whatever handler
    or formatter gunicorn or the settings attach.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        return True
