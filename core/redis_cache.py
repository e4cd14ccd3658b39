"""Django's Redis cache with one client and connection pool per process.

Django keeps a cache backend instance per thread and per async context (an
``asgiref`` ``Local``); its Redis backend gives every instance a connection pool
of its own and builds a new ``redis.Redis`` client for every operation. A server
that runs each request in a fresh context (ours: a worker thread per request,
``core/asgi_handler.py``) therefore opened a new Redis connection on every
request that touched the cache (a TCP connect, the client's handshake, redis-py
reading its own package metadata), left the old one to the garbage collector,
and built a client (its table of reply callbacks) per call: ~a quarter of a file
stat's CPU. Here every instance of the process shares one client, and so one
pool, per server and options; a ``redis.Redis`` is safe to share between threads,
and its pool re-creates its connections in a forked child.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import redis
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient

_lock = threading.Lock()
_clients: dict[tuple[str, str], redis.Redis] = {}


class SharedRedisCacheClient(RedisCacheClient):
    # Django's own attributes (its type stubs leave them out).
    _servers: list[str]
    _pool_options: dict[str, Any]
    _pool_class: type[redis.ConnectionPool]
    _client: type[redis.Redis]
    _get_connection_pool_index: Callable[[bool], int]

    def __init__(self, servers: list[str], **options: Any) -> None:
        super().__init__(servers, **options)
        # The pool options are plain values and classes: their repr tells them apart.
        options_key = repr(sorted(self._pool_options.items()))
        self._shared_keys = [(server, options_key) for server in self._servers]

    def get_client(self, key: Any = None, *, write: bool = False) -> redis.Redis:
        index = self._get_connection_pool_index(write)
        shared_key = self._shared_keys[index]
        client = _clients.get(shared_key)
        if client is None:
            with _lock:
                client = _clients.get(shared_key)
                if client is None:
                    pool = self._pool_class.from_url(self._servers[index], **self._pool_options)
                    client = _clients[shared_key] = self._client(connection_pool=pool)
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = SharedRedisCacheClient
