"""HTTP plumbing of the MCP endpoint: what Django's middleware does on other paths.

Host (``ALLOWED_HOSTS``) and Origin (same origin or ``MCP_ALLOWED_ORIGINS``)
checks against DNS rebinding, the HTTPS redirect of ``SECURE_SSL_REDIRECT``
(308, so clients keep the method), CORS for allowed browser origins, and JSON
error answers in the REST shape.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from core.errors import DevBenchError, HostNotAllowed, OriginNotAllowed, RateLimited

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

CORS_ALLOW_HEADERS = (
    "Authorization, Content-Type, Accept, Last-Event-ID, Mcp-Protocol-Version, "
    "Mcp-Session-Id, Mcp-Method, Mcp-Name, X-Request-ID"
)
CORS_EXPOSE_HEADERS = "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate, X-Request-ID"


def header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


def host_allowed(host: str) -> bool:
    domain, _port = split_domain_port(host)
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # as Django does
    return bool(domain) and validate_host(domain, allowed)


def origin_allowed(origin: str, host: str) -> bool:
    if not origin:
        return True  # not a browser: DNS rebinding needs one
    if origin in settings.MCP_ALLOWED_ORIGINS:
        return True
    return urlsplit(origin).netloc.lower() == host.lower()


def cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    if not origin:
        return []
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-expose-headers", CORS_EXPOSE_HEADERS.encode()),
        (b"vary", b"Origin"),
    ]


async def send_json(
    send: Send,
    status: int,
    body: dict[str, Any],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"cache-control", b"no-store"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def send_error(
    send: Send, exc: DevBenchError, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    if isinstance(exc, RateLimited):
        headers = [*(headers or []), (b"retry-after", str(exc.retry_after_s).encode())]
    await send_json(send, exc.http_status, exc.as_dict(), headers)


def scheme(scope: Scope) -> str:
    """The client's scheme; a proxy's header counts only as Django trusts it."""
    proxy: tuple[str, str] | None = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        name, secure_value = proxy
        # Django's META name (HTTP_X_FORWARDED_PROTO) back to a header name.
        wanted = name.removeprefix("HTTP_").replace("_", "-").lower().encode()
        given = header(scope, wanted).split(",")[0].strip()
        if given:
            return "https" if given == secure_value else "http"
    return str(scope.get("scheme") or "http")


def base_url(scope: Scope, host: str) -> str:
    return f"{scheme(scope)}://{host}"


async def _redirect_to_https(scope: Scope, send: Send, host: str) -> None:
    # 308 keeps the method and body, so a client can follow it with its POST.
    target = f"https://{settings.SECURE_SSL_HOST or host}{scope.get('path', '')}"
    if query := scope.get("query_string", b""):
        target += "?" + bytes(query).decode("latin-1")
    await send_json(
        send,
        308,
        {"code": "https_required", "message": "Use HTTPS.", "extra": {"location": target}},
        [(b"location", target.encode("latin-1"))],
    )


async def guard(scope: Scope, send: Send) -> tuple[str, str] | None:
    """Host, Origin and HTTPS checks; answers and returns None when the request must stop."""
    host = header(scope, b"host")
    origin = header(scope, b"origin")
    if not host_allowed(host):
        await send_error(send, HostNotAllowed())
        return None
    if not origin_allowed(origin, host):
        await send_error(send, OriginNotAllowed())
        return None
    if settings.SECURE_SSL_REDIRECT and scheme(scope) != "https":
        await _redirect_to_https(scope, send, host)
        return None
    return host, origin


async def preflight(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 204,
            "headers": [
                (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
                (b"access-control-allow-headers", CORS_ALLOW_HEADERS.encode()),
                (b"access-control-max-age", b"600"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})
