"""Liveness and readiness probes.

The database and Redis are checked here; apps add what they depend on with
:func:`register_check` (the workspaces app adds the container engine).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from core.errors import DevBenchError

CHECK_TIMEOUT_S = 2.0


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_redis() -> None:
    if not settings.REDIS_URL:
        return  # embedded: in-memory channel layer, in-process tasks
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=CHECK_TIMEOUT_S
    )
    try:
        client.ping()
    finally:
        client.close()


CHECKS: dict[str, Callable[[], object]] = {
    "database": _check_database,
    "redis": _check_redis,
}


def register_check(name: str, check: Callable[[], object]) -> None:
    """Add a readiness check; it is down when it raises."""
    CHECKS[name] = check


def _describe(exc: Exception) -> str:
    if isinstance(exc, DevBenchError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


_HEALTHZ_BODY = b'{"status": "ok"}'
_HEALTHZ_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_HEALTHZ_BODY)).encode()),
    (b"cache-control", b"max-age=0, no-cache, no-store, must-revalidate, private"),
]


class HealthzFastPath:
    """``GET /healthz`` answered before Django: a liveness probe needs no middleware,
    database or session, and a loaded server should still answer it at once. Same
    body as :func:`healthz` (which serves it under WSGI and the test client)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == "/healthz"
            and scope["method"] in ("GET", "HEAD")
        ):
            await send({"type": "http.response.start", "status": 200, "headers": _HEALTHZ_HEADERS})
            body = b"" if scope["method"] == "HEAD" else _HEALTHZ_BODY
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    results: dict[str, dict[str, str]] = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:  # any failure means "not ready", reported by name
            results[name] = {"status": "down", "error": _describe(exc)}
        else:
            results[name] = {"status": "ok"}
    down = sorted(name for name, r in results.items() if r["status"] != "ok")
    body = {"status": "down" if down else "ok", "down": down, "checks": results}
    return JsonResponse(body, status=503 if down else 200)
