"""Request rate limits per credential (API token, OIDC user, signed-in user) and per tenant.

Every authenticated REST request, MCP request and websocket connect counts one
hit in both buckets of its principal; over either limit it is refused with
:class:`RateLimited` (429, ``Retry-After``). Counters live in Redis in
production (shared by every web process) and in memory in embedded mode, using
the ``limits`` library's sliding-window counters.

A limiter that cannot reach its storage lets requests through (logged): rate
limiting protects the service, it must not take it down with Redis.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import SlidingWindowCounterRateLimiter

from core.errors import RateLimited
from tenants.principal import Principal

logger = logging.getLogger(__name__)

# Redis calls of the limiter give up quickly: a slow Redis must not slow every request.
STORAGE_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class _Limiter:
    strategy: SlidingWindowCounterRateLimiter
    per_credential: RateLimitItem | None
    per_tenant: RateLimitItem | None


_lock = threading.Lock()
_cached: tuple[tuple[str, str, str], _Limiter] | None = None


def parse_limit(value: str, *, setting: str) -> RateLimitItem | None:
    """``"600/minute"`` (the ``limits`` notation) or empty for none."""
    if not value.strip():
        return None
    try:
        return parse(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{setting}={value!r}: {exc}") from exc


def _storage(uri: str) -> Storage:
    if uri.startswith(("redis://", "rediss://")):
        return RedisStorage(
            uri,
            key_prefix=f"devbench:{settings.DEVBENCH_INSTANCE}:ratelimit",
            socket_timeout=STORAGE_TIMEOUT_S,
            socket_connect_timeout=STORAGE_TIMEOUT_S,
        )
    if uri == "memory://":
        return MemoryStorage()
    raise ImproperlyConfigured(f"DEVBENCH_RATE_LIMIT_STORAGE={uri!r}: use redis://... or memory://")


def _limiter() -> _Limiter:
    global _cached
    key = (
        settings.DEVBENCH_RATE_LIMIT_STORAGE,
        settings.DEVBENCH_RATE_LIMIT_PER_TOKEN,
        settings.DEVBENCH_RATE_LIMIT_PER_TENANT,
    )
    with _lock:
        if _cached is None or _cached[0] != key:
            limiter = _Limiter(
                strategy=SlidingWindowCounterRateLimiter(_storage(key[0])),
                per_credential=parse_limit(key[1], setting="DEVBENCH_RATE_LIMIT_PER_TOKEN"),
                per_tenant=parse_limit(key[2], setting="DEVBENCH_RATE_LIMIT_PER_TENANT"),
            )
            _cached = (key, limiter)
        return _cached[1]


def rate_limit_hit(principal: Principal) -> None:
    """Count one request of ``principal``; raise :class:`RateLimited` over either limit."""
    limiter = _limiter()
    buckets = (
        ("token", limiter.per_credential, f"credential:{principal.actor_id}"),
        ("tenant", limiter.per_tenant, f"tenant:{principal.tenant.pk}"),
    )
    for scope, item, identifier in buckets:
        if item is None:
            continue
        try:
            allowed = limiter.strategy.hit(item, identifier)
            if allowed:
                continue
            reset_at = limiter.strategy.get_window_stats(item, identifier).reset_time
        except Exception as exc:  # storage unreachable: let the request through
            logger.warning("rate limit not checked (%s): %r", scope, exc)
            continue
        retry_after_s = max(1, math.ceil(reset_at - time.time()))
        raise RateLimited(scope=scope, limit=str(item), retry_after_s=retry_after_s)
