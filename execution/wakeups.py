"""Wake-ups for the waits of synchronous code: Redis pub/sub, one subscription per process.

A wait (``exec_run``, a long poll, a spawn with ``wait``) used to receive through the
channel layer: a new channel, a group membership (two round trips), a blocking pop on
the channel's own list and a membership removed at the end, each through
channels-redis' Python. At 20 execs in flight that machinery was a fifth of the web
processes' CPU (bench/README.md). Here a process subscribes once, to a pattern covering
every group's wake-ups, and a wait only files a queue under its group name in this
process: no Redis command per wait. The publisher adds one ``PUBLISH`` per wake-up.

Pub/sub keeps nothing: a message sent while the connection is down is lost. Waits
never depend on one (they read the database on their own at least every second), and
every wait registered when the connection drops is told so at once, to poll meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from typing import Any

import msgpack
from redis import asyncio as aioredis
from redis.connection import parse_url

logger = logging.getLogger(__name__)

# Put in a waiter's queue when the subscription it relied on is lost.
LOST = object()
# With no message for this long, the subscriber pings Redis; twice that without an
# answer and the connection counts as dead (a Redis gone without closing it).
IDLE_PING_S = 15.0


def namespace(url: str, prefix: str) -> str:
    """The channel names' prefix: pub/sub ignores the database number, so it is part of
    the name (two deployments, or tests, on one Redis never hear each other)."""
    return f"{prefix}:{parse_url(url).get('db', 0)}:wake:"


def pack(message: dict[str, Any]) -> bytes:
    packed: bytes = msgpack.packb(message, use_bin_type=True)
    return packed


async def publish(client: aioredis.Redis, prefix: str, group: str, message: dict[str, Any]) -> None:
    await client.publish(prefix + group, pack(message))


class Subscriber:
    """This process's subscription to every group's wake-ups, read on one event loop.

    Waiting threads call :meth:`register` and :meth:`unregister` (no Redis command) and
    block on their own ``queue.SimpleQueue``; :meth:`connect` and the reader run on the
    loop.
    """

    def __init__(self, url: str, prefix: str) -> None:
        self._url = url
        self._prefix = prefix
        self._lock = threading.Lock()
        self._waiters: dict[str, set[queue.SimpleQueue[Any]]] = {}
        self._connected = False
        self._connecting: asyncio.Future[bool] | None = None

    @property
    def connected(self) -> bool:
        return self._connected

    def register(self, group: str) -> queue.SimpleQueue[Any] | None:
        """A queue that gets every wake-up of ``group`` published from now on; None if the
        subscription is not up (the caller polls)."""
        waiter: queue.SimpleQueue[Any] = queue.SimpleQueue()
        with self._lock:
            if not self._connected:
                return None
            self._waiters.setdefault(group, set()).add(waiter)
        return waiter

    def unregister(self, group: str, waiter: queue.SimpleQueue[Any]) -> None:
        with self._lock:
            waiters = self._waiters.get(group)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[group]

    def waiting_groups(self) -> int:
        with self._lock:
            return len(self._waiters)

    async def connect(self) -> bool:
        """Subscribe, unless subscribed already; False if Redis cannot be reached now.
        Concurrent callers share one attempt."""
        if self._connected:
            return True
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().create_task(self._run())
        return await asyncio.shield(self._connecting)

    async def _run(self) -> None:
        client = aioredis.Redis.from_url(self._url, socket_connect_timeout=5.0)
        pubsub = client.pubsub()
        try:
            await pubsub.psubscribe(self._prefix + "*")
            # The confirmation: from here on, every publish reaches this process.
            confirmed = await pubsub.get_message(timeout=5.0)
            if not confirmed or confirmed.get("type") != "psubscribe":
                raise ConnectionError(f"no subscription confirmed: {confirmed!r}")
        except Exception as exc:
            logger.warning("wake-ups not subscribed (waits poll the database): %r", exc)
            await _close(pubsub, client)
            self._finish_connecting(False)
            return
        with self._lock:
            self._connected = True
        self._finish_connecting(True)
        try:
            await self._read(pubsub)
        except Exception as exc:
            logger.warning("wake-ups lost (waits poll the database): %r", exc)
        finally:
            self._lost()
            await _close(pubsub, client)

    def _finish_connecting(self, ok: bool) -> None:
        assert self._connecting is not None
        self._connecting.set_result(ok)
        self._connecting = None

    async def _read(self, pubsub: Any) -> None:
        heard = time.monotonic()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=IDLE_PING_S)
            now = time.monotonic()
            if message is None:
                if now - heard > 2 * IDLE_PING_S:
                    raise ConnectionError("Redis stopped answering")
                if not pinged:
                    await pubsub.ping()
                    pinged = True
                continue
            heard, pinged = now, False
            if message.get("type") == "pmessage":
                self._deliver(message["channel"], message["data"])

    def _deliver(self, channel: bytes, data: bytes) -> None:
        group = channel[len(self._prefix) :].decode()
        with self._lock:
            waiters = list(self._waiters.get(group, ()))
        if not waiters:
            return  # nobody in this process waits for it
        try:
            message = msgpack.unpackb(data, raw=False)
        except Exception:
            logger.warning("an unreadable wake-up on %s dropped", group)
            return
        for waiter in waiters:
            waiter.put(message)

    def _lost(self) -> None:
        with self._lock:
            self._connected = False
            waiters = [w for group in self._waiters.values() for w in group]
            self._waiters.clear()
        for waiter in waiters:
            waiter.put(LOST)


async def _close(pubsub: Any, client: aioredis.Redis) -> None:
    with contextlib.suppress(Exception):
        await pubsub.aclose()
    with contextlib.suppress(Exception):
        await client.aclose()
