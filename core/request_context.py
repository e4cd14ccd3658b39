"""Per-request facts (request id, client ip, user agent) for logs and audit.

Set by the HTTP middleware, the MCP endpoint and websocket consumers; read by
services that record audit events, so services need no request argument.
"""

from __future__ import annotations

import contextvars
import re
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    request_id: str = ""
    ip: str | None = None
    user_agent: str = ""


_EMPTY = RequestContext()
_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "devbench_request_context", default=None
)


_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_from(incoming: str) -> str:
    """Keep a caller's sane X-Request-ID (for tracing across services), else make one."""
    return incoming if _REQUEST_ID_RE.match(incoming) else new_request_id()


def current() -> RequestContext:
    return _current.get() or _EMPTY


def bind(ctx: RequestContext) -> contextvars.Token[RequestContext | None]:
    return _current.set(ctx)


def reset(token: contextvars.Token[RequestContext | None]) -> None:
    _current.reset(token)
