"""Request rate limits per credential (API token, OIDC user, signed-in user) and per tenant.

Every authenticated REST request, MCP request and websocket connect counts one
hit in both buckets of its principal; over either limit it is refused with
:class:`RateLimited` (429, ``Retry-After``). Counters live in Redis in
production (shared by every web process) and in memory in embedded mode, using
the ``limits`` library's sliding-window counters.

In Redis both buckets are checked in one round trip (:data:`_ACQUIRE_ALL`):
the ``limits`` library's own sliding-window script, run once per bucket inside
one script, so a request costs one call instead of two and the buckets keep the
library's exact semantics (a bucket that refuses is not charged; a request
refused by its credential's bucket is not charged to its tenant's). A busy
bucket's tokens are taken a few at a time and spent by this process without
Redis (:mod:`tenants.rate_leases`, which says why the limit still holds).

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
from redis.commands.core import Script

from core.errors import RateLimited
from tenants.principal import Principal
from tenants.rate_leases import BucketSpec, LeasedTokens

logger = logging.getLogger(__name__)

# Redis calls of the limiter give up quickly: a slow Redis must not slow every request.
STORAGE_TIMEOUT_S = 1.0

# Every bucket's sliding window in one script: the library's acquire script becomes a
# function (its KEYS/ARGV are the function's parameters), called per bucket in order
# until one refuses. Each bucket is asked for its lease size first and, if it has no
# room for that many, for one hit. Returns {refused, hits charged per bucket...}:
# refused is the 1-based index of the bucket that refused (0 if none did), after which
# no bucket is charged.
# KEYS: (previous window, current window) per bucket; ARGV: (limit, expiry, lease) per bucket.
_ACQUIRE_ALL = f"""
local function acquire(KEYS, ARGV)
{RedisStorage.SCRIPT_ACQUIRE_SLIDING_WINDOW.decode()}
end
local charged = {{0}}
for i = 1, #KEYS / 2 do
    local keys = {{KEYS[2 * i - 1], KEYS[2 * i]}}
    local limit, expiry, lease = ARGV[3 * i - 2], ARGV[3 * i - 1], tonumber(ARGV[3 * i])
    if lease > 1 and acquire(keys, {{limit, expiry, lease}}) then
        charged[i + 1] = lease
    elseif acquire(keys, {{limit, expiry, 1}}) then
        charged[i + 1] = 1
    else
        charged[1] = i
        return charged
    end
end
return charged
"""

Bucket = tuple[str, RateLimitItem, str]  # scope, limit, identifier


@dataclass(frozen=True)
class _Limiter:
    strategy: SlidingWindowCounterRateLimiter
    per_credential: RateLimitItem | None
    per_tenant: RateLimitItem | None
    # Redis only: the buckets' script, registered with the storage's client, and the
    # tokens this process has leased with it.
    acquire_all: Script | None
    leases: LeasedTokens


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
            storage = _storage(key[0])
            limiter = _Limiter(
                strategy=SlidingWindowCounterRateLimiter(storage),
                per_credential=parse_limit(key[1], setting="DEVBENCH_RATE_LIMIT_PER_TOKEN"),
                per_tenant=parse_limit(key[2], setting="DEVBENCH_RATE_LIMIT_PER_TENANT"),
                acquire_all=(
                    storage.get_connection().register_script(_ACQUIRE_ALL.encode())
                    if isinstance(storage, RedisStorage)
                    else None
                ),
                leases=LeasedTokens(),
            )
            _cached = (key, limiter)
        return _cached[1]


def rate_limit_hit(principal: Principal) -> None:
    """Count one request of ``principal``; raise :class:`RateLimited` over either limit."""
    limiter = _limiter()
    buckets: list[Bucket] = [
        (scope, item, identifier)
        for scope, item, identifier in (
            ("token", limiter.per_credential, f"credential:{principal.actor_id}"),
            ("tenant", limiter.per_tenant, f"tenant:{principal.tenant.pk}"),
        )
        if item is not None
    ]
    if not buckets:
        return
    try:
        refused = _acquire(limiter, buckets)
        if refused is None:
            return
        scope, item, identifier = refused
        reset_at = limiter.strategy.get_window_stats(item, identifier).reset_time
    except Exception as exc:  # storage unreachable: let the request through
        logger.warning("rate limit not checked: %r", exc)
        return
    retry_after_s = max(1, math.ceil(reset_at - time.time()))
    raise RateLimited(scope=scope, limit=str(item), retry_after_s=retry_after_s)


def _acquire(limiter: _Limiter, buckets: list[Bucket]) -> Bucket | None:
    """Hit the buckets in order, stopping at the first that refuses (returned)."""
    if limiter.acquire_all is None:
        for bucket in buckets:
            if not limiter.strategy.hit(bucket[1], bucket[2]):
                return bucket
        return None
    specs = [
        BucketSpec(f"{scope}:{item}:{identifier}", limit=item.amount, window_s=item.get_expiry())
        for scope, item, identifier in buckets
    ]
    by_key = {spec.key: bucket for spec, bucket in zip(specs, buckets, strict=True)}
    reservation = limiter.leases.reserve(specs)
    if not reservation.refill:
        return None
    try:
        charged = _charge(limiter, [(by_key[spec.key], size) for spec, size in reservation.refill])
    except BaseException:
        for spec, size in reservation.refill:
            limiter.leases.settle(spec, size, 0)
        limiter.leases.give_back(reservation.local)
        raise
    # The script answers for the buckets it charged: the one that refused, and those
    # after it, were charged nothing.
    hits = charged[1:] + [0] * (len(reservation.refill) - len(charged) + 1)
    for (spec, size), charged_hits in zip(reservation.refill, hits, strict=True):
        limiter.leases.settle(spec, size, charged_hits)
    if charged[0] == 0:
        return None
    limiter.leases.give_back(reservation.local)
    return by_key[reservation.refill[int(charged[0]) - 1][0].key]


def _charge(limiter: _Limiter, buckets: list[tuple[Bucket, int]]) -> list[int]:
    """One script call: each bucket charged its lease size (or one hit); the script's
    answer (:data:`_ACQUIRE_ALL`)."""
    storage = limiter.strategy.storage
    assert isinstance(storage, RedisStorage) and limiter.acquire_all is not None
    keys: list[str] = []
    args: list[int] = []
    for (_, item, identifier), lease in buckets:
        # The keys and arguments limits' own hit() passes to the script (a test holds
        # them equal: our hits are seen by the library's get_window_stats).
        key = item.key_for(identifier)
        keys += [
            storage.prefixed_key(storage._previous_window_key(key)),
            storage.prefixed_key(storage._current_window_key(key)),
        ]
        args += [item.amount, item.get_expiry(), lease]
    return [int(value) for value in limiter.acquire_all(keys, args)]
