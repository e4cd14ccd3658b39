"""Per-request costs that must not come back: a Redis connection per cache use, and a new
metrics cursor class per database connect (both ran on every request before)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar, cast

import pytest
from django.core.cache import caches
from django.db import connection
from django_prometheus.db import execute_total

from core.redis_cache import RedisCache

T = TypeVar("T")


def _in_fresh_thread(fn: Callable[[], T]) -> T:
    out: list[T] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join()
    return out[0]


def test_cache_instances_of_every_thread_share_one_client_and_connection() -> None:
    def use_cache() -> RedisCache:
        cache = cast(RedisCache, caches["default"])
        cache.set("shared-pool-probe", b"x", timeout=30)
        assert cache.get("shared-pool-probe") == b"x"
        return cache

    pool = use_cache()._cache.get_client().connection_pool
    created = pool._created_connections
    instances = [_in_fresh_thread(use_cache) for _ in range(5)]
    # Django gives each thread its own backend instance (the reason for the shared client).
    assert len({id(cache) for cache in instances}) == 5
    clients = [cache._cache.get_client(write=w) for cache in instances for w in (True, False)]
    assert all(client is clients[0] for client in clients)
    assert clients[0].connection_pool is pool
    # One thread at a time: an idle connection is reused, never a new one per instance.
    assert pool._created_connections == created


@pytest.mark.django_db
def test_reconnects_reuse_one_metrics_cursor_class_and_still_count_queries() -> None:
    first = connection.get_connection_params()["cursor_factory"]
    assert connection.get_connection_params()["cursor_factory"] is first
    counter = execute_total.labels(connection.alias, connection.vendor)
    before = counter._value.get()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert counter._value.get() == before + 1
