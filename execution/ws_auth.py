"""Who is on the other end of a websocket, and which of their objects it may open.

Three ways in, checked in this order:
* ``Authorization: Bearer <token>`` (non-browser clients),
* ``?token=<token>`` in the URL (browsers cannot set headers on a websocket;
  keep such URLs out of logs); ``X-DevBench-Tenant`` or ``?tenant=<slug>``
  names the tenant for a bearer token that is valid in several,
* the Django session of a signed-in browser user: with ``?tenant=<slug>`` (the
  web pages send it) they act in that tenant, as on the page that opened the
  socket; without it, in each tenant they belong to, and an object is looked
  up in those tenants.

An object the principal may not see is NotFound, exactly like a missing one.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs

import pydantic
from channels.generic.websocket import AsyncWebsocketConsumer

from core import request_context
from core.errors import (
    AuthenticationFailed,
    DevBenchError,
    NotFound,
    PermissionDenied,
    ResourceNotFound,
    TokenMissing,
    ValidationFailed,
    parse_input,
)
from core.request_context import RequestContext, request_id_from
from tenants.auth import authenticate_bearer_limited, principal_for_member
from tenants.principal import Principal
from tenants.ratelimit import rate_limit_hit
from tenants.selectors import tenant_get_by_slug, tenant_list_for_user

T = TypeVar("T")
M = TypeVar("M", bound=pydantic.BaseModel)

# Close codes (4000-4999 are the application's): HTTP status + 4000.
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_CONFLICT = 4409
CLOSE_INTERNAL = 4500


def close_code(exc: DevBenchError) -> int:
    if isinstance(exc, AuthenticationFailed):
        return CLOSE_UNAUTHENTICATED
    if isinstance(exc, PermissionDenied):
        return CLOSE_FORBIDDEN
    if isinstance(exc, NotFound):
        return CLOSE_NOT_FOUND
    if isinstance(exc, ValidationFailed):
        return CLOSE_BAD_REQUEST
    if 400 <= exc.http_status < 600:  # e.g. 4503 while the workspace's node is down
        return 4000 + exc.http_status
    return CLOSE_INTERNAL


def query_params(scope: dict[str, Any]) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return {key: values[-1] for key, values in parse_qs(raw).items()}


def parse(model: type[M], data: Any) -> M:
    """A websocket's query or message read through the same models as REST and MCP."""
    return parse_input(model, data)


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def request_context_of(scope: dict[str, Any]) -> RequestContext:
    client = scope.get("client") or (None, None)
    return RequestContext(
        request_id=request_id_from(_header(scope, b"x-request-id") or ""),
        ip=client[0],
        user_agent=(_header(scope, b"user-agent") or "")[:300],
    )


async def accept_bound(consumer: AsyncWebsocketConsumer) -> None:
    """Accept the handshake with the connection's request id bound (its error frames, log
    lines and audit events carry it) and answered in ``X-Request-ID``."""
    ctx = request_context_of(consumer.scope)
    request_context.bind(ctx)
    await consumer.accept(headers=[(b"x-request-id", ctx.request_id.encode())])


async def refuse(consumer: AsyncWebsocketConsumer, exc: DevBenchError) -> None:
    """Tell the client why (an error frame, if it still listens) and close with the code
    that names the class of error."""
    with contextlib.suppress(Exception):
        await consumer.send(text_data=json.dumps({"type": "error", **exc.as_dict()}))
    await consumer.close(code=close_code(exc))


async def complete(
    consumer: AsyncWebsocketConsumer, *, status: str, error_code: str, status_message: str
) -> None:
    """End a stream that follows a row until it leaves a transient status."""
    frame = {
        "type": "complete",
        "status": status,
        "error_code": error_code,
        "status_message": status_message,
    }
    await consumer.send(text_data=json.dumps(frame))
    await consumer.close(code=1000)


def resolve(scope: dict[str, Any], lookup: Callable[[Principal], T]) -> tuple[Principal, T]:
    """Authenticate the websocket and find the object with ``lookup`` (sync; DB access)."""
    header = _header(scope, b"authorization")
    params = query_params(scope)
    token = params.get("token")
    if header or token:
        # OIDC users in several tenants name one, as on REST (X-DevBench-Tenant).
        tenant_slug = _header(scope, b"x-devbench-tenant") or params.get("tenant") or None
        principal = authenticate_bearer_limited(
            header or f"Bearer {token}", tenant_slug=tenant_slug
        )
        return principal, lookup(principal)
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        raise TokenMissing("Send 'Authorization: Bearer <token>', ?token=<token>, or sign in.")
    slug = params.get("tenant")
    if slug:
        # One tenant, resolved like a page's: also right for a superuser acting in a
        # tenant they are not a member of.
        principal = principal_for_member(user=user, tenant=tenant_get_by_slug(slug=slug))
        rate_limit_hit(principal)
        return principal, lookup(principal)
    missing: NotFound = ResourceNotFound()
    for tenant in tenant_list_for_user(user=user):
        principal = principal_for_member(user=user, tenant=tenant)
        try:
            found = lookup(principal)
        except NotFound as exc:
            missing = exc
            continue
        rate_limit_hit(principal)
        return principal, found
    raise missing
