"""Liveness and readiness probes.

The database and Redis are checked here; apps add what they depend on with
:func:`register_check` (the workspaces app adds the container engine).
"""

from __future__ import annotations

from collections.abc import Callable

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
