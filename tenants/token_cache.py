"""A short-lived, per-process memory of verified API tokens.

Verifying an API token costs a database round trip (token, tenant and user in
one query) on every request; an agent polling an exec repeats it many times a
second. A verified token is remembered here for ``DEVBENCH_TOKEN_CACHE_S``
seconds (default 5; 0 turns the cache off), never past the token's own
expiry. The key is a SHA-256 of the whole presented token, so only the exact
secret that was verified is ever answered from memory.

Revocation bound: revoking a token, deactivating its user or tenant, or
changing its scopes takes effect at once in the process that saved the change
(a model signal clears the memory) and within ``DEVBENCH_TOKEN_CACHE_S``
seconds in every other process. Interfaces that must see every change at once
(the stdio MCP server re-checks its token on each call) do not use the cache.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

from django.conf import settings
from django.db.models import Model
from django.utils import timezone

from tenants.principal import Principal

MAX_ENTRIES = 4096

M = TypeVar("M", bound=Model | None)

# A function so tests can move time forward without sleeping.
clock = time.monotonic


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    until: float


_lock = threading.Lock()
_entries: OrderedDict[bytes, _Entry] = OrderedDict()


def ttl_s() -> float:
    return float(getattr(settings, "DEVBENCH_TOKEN_CACHE_S", 5))


def _key(raw: str) -> bytes:
    return hashlib.sha256(raw.encode()).digest()


def get(raw: str) -> Principal | None:
    """The principal a token was verified as, if that is recent enough; a private copy."""
    if ttl_s() <= 0:
        return None
    key = _key(raw)
    with _lock:
        entry = _entries.get(key)
        if entry is None:
            return None
        if entry.until <= clock():
            del _entries[key]
            return None
        _entries.move_to_end(key)
    return _private(entry.principal)


def _private(principal: Principal) -> Principal:
    # Copies: a request may change its user or tenant instance (e.g. refresh it) without
    # affecting other requests served from the same entry.
    return replace(
        principal,
        user=_model_copy(principal.user),
        tenant=_model_copy(principal.tenant),
        extra=dict(principal.extra),
    )


def _model_copy(instance: M) -> M:
    """What ``copy.copy`` gives a model instance, without its pickling round trip (which
    looks the model up in the app registry and checks Django's version, on every
    request served from here): its fields, its own state and its own related cache."""
    if instance is None:
        return instance
    clone = instance.__class__.__new__(instance.__class__)
    clone.__dict__.update(instance.__dict__)
    clone._state = copy.copy(instance._state)
    clone._state.fields_cache = instance._state.fields_cache.copy()
    return clone


def put(raw: str, principal: Principal, *, expires_at: datetime | None) -> None:
    ttl = ttl_s()
    if ttl <= 0:
        return
    if expires_at is not None:
        ttl = min(ttl, (expires_at - timezone.now()).total_seconds())
        if ttl <= 0:
            return
    entry = _Entry(principal=_private(principal), until=clock() + ttl)
    with _lock:
        _entries[_key(raw)] = entry
        _entries.move_to_end(_key(raw))
        while len(_entries) > MAX_ENTRIES:
            _entries.popitem(last=False)


def clear(**_: object) -> None:
    """Forget everything (connected to saves of tokens, users, tenants and memberships)."""
    with _lock:
        _entries.clear()
