"""MCP over Streamable HTTP at ``/mcp/<tenant-slug>/``, inside the Channels router.

The SDK's own Starlette app routes on ``/mcp`` and needs ASGI lifespan, which
daphne does not send; so this small endpoint does what the SDK app and
Django's middleware would otherwise do, explicitly:

* Host and Origin checks (DNS-rebinding protection): the Host must pass
  ``ALLOWED_HOSTS``; a browser Origin must be the same origin or listed in
  ``MCP_ALLOWED_ORIGINS`` (non-browser clients send none).
* Authentication with the ``authenticate`` callable the site hands in
  (``tenants.auth.authenticate_bearer``) bound to the slug of the URL: 401
  with ``WWW-Authenticate`` (and ``resource_metadata`` when OIDC is
  configured), 404 ``tenant_not_found`` for another tenant's token, exactly as
  REST answers.
* The principal and request facts go into the ASGI scope, where tools read
  them (never SDK context variables).
* A ``StreamableHTTPSessionManager`` in stateless mode, started once per event
  loop: any web process can serve any request, both protocol generations
  (2025-11-25 initialize handshake, 2026-07-28 single-request) included.
* Request id, metrics; DB connections are checked around the blocking work
  (one thread and one connection per request: ``core.mcp.lane``).

It also serves the OAuth protected-resource metadata (RFC 9728) for each
tenant endpoint when an OIDC issuer is configured.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from prometheus_client import Counter, Histogram

from core import request_context
from core.errors import (
    DevBenchError,
    InternalError,
    MethodNotAllowed,
    ResourceNotFound,
)
from core.mcp import http as mcp_http
from core.mcp.http import Message, Receive, Scope, Send
from core.mcp.lane import BlockingLane
from core.mcp.server import http_server
from core.mcp.tools import LANE_KEY, PRINCIPAL_KEY

logger = logging.getLogger("devbench.mcp")

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
# (Authorization header or None, tenant_slug=...) -> the principal; raises DevBenchError.
Authenticate = Callable[..., object]
# The issuers whose access tokens ``Authenticate`` accepts (blocking: may read the DB).
Issuers = Callable[[], list[str]]

MCP_PATH = re.compile(r"^/mcp/(?P<slug>[^/]+)/?$")
METADATA_PATH = re.compile(r"^/\.well-known/oauth-protected-resource/mcp/(?P<slug>[^/]+)/?$")

HTTP_REQUESTS = Counter(
    "devbench_mcp_http_requests_total",
    "MCP HTTP requests by method and status.",
    ["method", "status"],
)
HTTP_SECONDS = Histogram(
    "devbench_mcp_http_request_seconds", "MCP HTTP request duration (seconds).", ["method"]
)


# --- Routing ---------------------------------------------------------------------


class MCPRouter:
    """HTTP in front of Django: MCP and its metadata here, everything else to ``fallback``."""

    def __init__(self, fallback: ASGIApp, *, authenticate: Authenticate, issuers: Issuers) -> None:
        self.fallback = fallback
        self.authenticate = authenticate
        self.issuers = issuers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if match := MCP_PATH.match(path):
            await mcp_endpoint(
                scope,
                receive,
                send,
                slug=match["slug"],
                authenticate=self.authenticate,
                issuers=self.issuers,
            )
        elif match := METADATA_PATH.match(path):
            await protected_resource_metadata(
                scope, receive, send, slug=match["slug"], issuers=self.issuers
            )
        else:
            await self.fallback(scope, receive, send)


# --- Session manager, one per event loop ----------------------------------------


@dataclass
class _Running:
    manager: StreamableHTTPSessionManager
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


_managers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Running] = (
    weakref.WeakKeyDictionary()
)
_factory_lock = threading.Lock()


def _new_manager() -> StreamableHTTPSessionManager:
    server = http_server()
    with _factory_lock:  # streamable_http_app() replaces server.session_manager
        server.streamable_http_app(
            stateless_http=True,
            json_response=False,  # SSE, so progress notifications reach the caller
            max_request_body_size=settings.MCP_MAX_REQUEST_BODY_BYTES,
            # Host/Origin are checked here, with Django's ALLOWED_HOSTS semantics.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        return server.session_manager


async def _keep_running(running: _Running) -> None:
    try:
        async with running.manager.run():
            running.ready.set()
            await asyncio.Event().wait()  # until the loop shuts down
    finally:
        running.ready.set()  # wake waiters even if run() failed


async def session_manager() -> StreamableHTTPSessionManager:
    """The manager of the running loop, started on first use."""
    loop = asyncio.get_running_loop()
    running = _managers.get(loop)
    if running is None or (running.task is not None and running.task.done()):
        running = _Running(manager=_new_manager())
        running.task = loop.create_task(_keep_running(running), name="devbench-mcp-manager")
        _managers[loop] = running
    await running.ready.wait()
    if running.task is not None and running.task.done():
        running.task.result()  # re-raise what stopped it
        raise RuntimeError("The MCP session manager stopped.")
    return running.manager


def resource_url(scope: Scope, host: str, slug: str) -> str:
    return f"{mcp_http.base_url(scope, host)}/mcp/{slug}"


def metadata_url(scope: Scope, host: str, slug: str) -> str:
    return f"{mcp_http.base_url(scope, host)}/.well-known/oauth-protected-resource/mcp/{slug}"


def _www_authenticate(
    exc: DevBenchError, scope: Scope, host: str, slug: str, *, oidc: bool
) -> bytes:
    # RFC 6750: no error code when the request carried no credentials at all.
    parts = ['Bearer realm="devbench"']
    if exc.code != "token_missing":
        parts.append(f'error="invalid_token", error_description="{exc.code}"')
    if oidc:
        # RFC 9728: where an OAuth-capable client learns which server issues tokens.
        parts.append(f'resource_metadata="{metadata_url(scope, host, slug)}"')
    return ", ".join(parts).encode("latin-1")


# --- Endpoints -------------------------------------------------------------------


async def mcp_endpoint(
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    slug: str,
    authenticate: Authenticate,
    issuers: Issuers,
) -> None:
    started = time.perf_counter()
    method = str(scope.get("method", ""))
    status_seen = 0
    ctx = request_context.RequestContext(
        request_id=request_context.request_id_from(mcp_http.header(scope, b"x-request-id")),
        ip=(scope.get("client") or (None,))[0],
        user_agent=mcp_http.header(scope, b"user-agent")[:300],
    )
    extra_headers: list[tuple[bytes, bytes]] = [(b"x-request-id", ctx.request_id.encode())]
    lane = BlockingLane(ctx)
    # Bound here too (not only in the lane's thread): error bodies built on the event loop
    # carry the request id, and so do log lines written here.
    bound = request_context.bind(ctx)

    async def send_with_headers(message: Message) -> None:
        nonlocal status_seen
        if message["type"] == "http.response.start":
            status_seen = int(message["status"])
            message = {**message, "headers": [*message.get("headers", []), *extra_headers]}
        await send(message)

    try:
        checked = await mcp_http.guard(scope, send_with_headers)
        if checked is None:
            return
        host, origin = checked
        extra_headers.extend(mcp_http.cors_headers(origin))
        if method == "OPTIONS":
            await mcp_http.preflight(send_with_headers)
            return
        try:
            principal = await lane.run(
                authenticate,
                mcp_http.header(scope, b"authorization") or None,
                tenant_slug=slug,
                cached=True,
            )
        except DevBenchError as exc:
            headers = []
            if exc.http_status == 401:
                oidc = bool(await lane.run(issuers))
                challenge = _www_authenticate(exc, scope, host, slug, oidc=oidc)
                headers.append((b"www-authenticate", challenge))
            await mcp_http.send_error(send_with_headers, exc, headers)
            return
        if method == "GET":
            # A standalone SSE stream could never carry anything without sessions;
            # 405 tells clients to go on without one (as the spec allows).
            await mcp_http.send_error(
                send_with_headers,
                MethodNotAllowed("This endpoint is stateless: POST requests only."),
                [(b"allow", b"POST, DELETE, OPTIONS")],
            )
            return
        manager = await session_manager()
        inner = {**scope, PRINCIPAL_KEY: principal, LANE_KEY: lane}
        await manager.handle_request(inner, receive, send_with_headers)
    except Exception:
        logger.exception("MCP request %s failed", ctx.request_id)
        if not status_seen:
            await mcp_http.send_error(
                send_with_headers,
                InternalError(request_id=ctx.request_id),
            )
    finally:
        lane.close()
        request_context.reset(bound)
        HTTP_REQUESTS.labels(method, str(status_seen or 0)).inc()
        HTTP_SECONDS.labels(method).observe(time.perf_counter() - started)


async def protected_resource_metadata(
    scope: Scope, receive: Receive, send: Send, *, slug: str, issuers: Issuers
) -> None:
    """RFC 9728 metadata of ``/mcp/<slug>``: which authorization servers issue its tokens.

    Answered for any slug, existing or not, so it reveals no tenant names. The
    providers' JWT audience (``api_audience``) must accept the tokens clients
    request for this resource (docs/mcp.md).
    """
    checked = await mcp_http.guard(scope, send)
    if checked is None:
        return
    host, origin = checked
    lane = BlockingLane(request_context.RequestContext(request_id=request_context.new_request_id()))
    try:
        issuer_urls = await lane.run(issuers)
    finally:
        lane.close()
    if not issuer_urls or scope.get("method") not in ("GET", "HEAD"):
        await mcp_http.send_error(send, ResourceNotFound())
        return
    await mcp_http.send_json(
        send,
        200,
        {
            "resource": resource_url(scope, host, slug),
            "authorization_servers": issuer_urls,
            "bearer_methods_supported": ["header"],
            "scopes_supported": [
                f"{settings.OIDC_SCOPE_PREFIX}{name}" for name in ("read", "write", "admin")
            ],
            "resource_name": f"DevBench MCP ({slug})",
        },
        mcp_http.cors_headers(origin),
    )
