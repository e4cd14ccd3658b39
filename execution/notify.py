"""Waking listeners of an exec through the channel layer.

Only a wake-up call travels here: ``{"type": "exec.event", "last_seq", "status"}``
on the group ``exec.<public id>``. Listeners then read the database, which is
the source of truth, so a dropped message (a full channel, a late subscriber)
costs latency, never data: every waiter also re-reads the database on its own
at least every ``RECHECK_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer
from django.db import connection

logger = logging.getLogger(__name__)

EVENT_TYPE = "exec.event"
RECHECK_S = 1.0
# The in-memory layer (embedded mode) is bound to one event loop; waiters poll the DB.
IN_MEMORY_POLL_S = 0.05
# How often a waiter whose channel layer failed reads the database instead.
FALLBACK_POLL_S = 0.25
# Longest a waiter spends subscribing (or unsubscribing) before it polls instead.
SETUP_TIMEOUT_S = 2.0


def exec_group(public_id: str) -> str:
    return f"exec.{public_id}"


def _layer() -> BaseChannelLayer | None:
    layer: BaseChannelLayer | None = get_channel_layer()
    return layer


def layer_crosses_processes(layer: BaseChannelLayer | None) -> bool:
    return layer is not None and not isinstance(layer, InMemoryChannelLayer)


class _LoopThread:
    """One long-lived event loop per process for fire-and-forget publishing.

    A fresh loop per message (``async_to_sync``) would open a new Redis
    connection each time; this keeps one pool warm for every runner thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():  # new, or inherited by fork
                self._loop = asyncio.new_event_loop()
                self._pid = os.getpid()
                thread = threading.Thread(
                    target=self._loop.run_forever, name="exec-notify", daemon=True
                )
                thread.start()
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(coro, loop)


_publisher = _LoopThread()


def _log_failure(future: Future[Any]) -> None:
    exc = future.exception()
    if exc is not None:
        logger.warning("exec event not delivered (listeners fall back to polling): %r", exc)


def publish(public_id: str, *, last_seq: int, status: str) -> None:
    """Tell listeners of the exec that output or status changed (after it is committed)."""
    layer = _layer()
    if not layer_crosses_processes(layer):
        return
    assert layer is not None
    message = {"type": EVENT_TYPE, "last_seq": last_seq, "status": status}
    send = layer.group_send(exec_group(public_id), message)
    future = _publisher.submit(asyncio.wait_for(send, SETUP_TIMEOUT_S))
    future.add_done_callback(_log_failure)


def wait_until(public_id: str, check: Callable[[], bool], *, timeout_s: float) -> bool:
    """Block (sync code) until ``check()`` is true or ``timeout_s`` passes; returns the last check.

    ``check`` reads the database and runs in the calling thread. It is called
    once up front, after each wake-up of the exec's group, and at least every
    ``RECHECK_S``. A channel layer that fails (Redis restarted, paused or out
    of connections) never fails the wait: it goes on reading the database.
    Between checks the thread gives its pooled database connection back, so
    any number of waiters share a small pool.
    """
    checked = _releasing(check)
    if checked():
        return True
    if timeout_s <= 0:
        return False
    deadline = time.monotonic() + timeout_s
    layer = _layer()
    if layer_crosses_processes(layer):
        assert layer is not None
        try:
            return bool(async_to_sync(_wait_on_group)(layer, public_id, checked, timeout_s))
        except Exception as exc:  # any layer failure: the database still answers
            logger.warning("exec wait falls back to polling the database: %r", exc)
        poll_s = FALLBACK_POLL_S
    else:
        poll_s = IN_MEMORY_POLL_S
    return _poll(checked, deadline=deadline, interval_s=poll_s)


def _releasing(check: Callable[[], bool]) -> Callable[[], bool]:
    """``check`` that hands the thread's pooled connection back to the pool afterwards."""
    if not _db_pooled():
        return check

    def checked() -> bool:
        try:
            return check()
        finally:
            if not connection.in_atomic_block:
                connection.close()  # pooled: back to the pool, not a disconnect

    return checked


def _db_pooled() -> bool:
    return bool(connection.settings_dict.get("OPTIONS", {}).get("pool"))


def _poll(check: Callable[[], bool], *, deadline: float, interval_s: float) -> bool:
    while time.monotonic() < deadline:
        time.sleep(min(interval_s, max(0.0, deadline - time.monotonic())))
        if check():
            return True
    return check()


async def subscribe(layer: BaseChannelLayer, public_id: str, channel: str) -> bool:
    """Add ``channel`` to the exec's group; False (logged) if the layer cannot now."""
    try:
        await asyncio.wait_for(layer.group_add(exec_group(public_id), channel), SETUP_TIMEOUT_S)
    except Exception as exc:  # a Redis error, or TimeoutError
        logger.warning("exec listener not subscribed (polling the database): %r", exc)
        return False
    return True


async def unsubscribe(layer: BaseChannelLayer, public_id: str, channel: str) -> None:
    # A membership left behind expires with the group; a dead channel only drops messages.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(layer.group_discard(exec_group(public_id), channel), SETUP_TIMEOUT_S)


async def _open_channel(layer: BaseChannelLayer, public_id: str) -> str:
    """A new channel subscribed to the exec's group, or "" if the layer cannot now."""
    try:
        # Bounded: a paused Redis must not hold the wait before its first recheck.
        channel: str = await asyncio.wait_for(layer.new_channel(), SETUP_TIMEOUT_S)
    except Exception as exc:  # a Redis error, or TimeoutError
        logger.warning("exec wait without a channel (polling the database): %r", exc)
        return ""
    return channel if await subscribe(layer, public_id, channel) else ""


async def _wait_on_group(
    layer: BaseChannelLayer, public_id: str, check: Callable[[], bool], timeout_s: float
) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async_check = sync_to_async(check)
    receiving: asyncio.Future[Any] | None = None
    # Subscribed before the first check: nothing committed after it can be missed.
    channel = await _open_channel(layer, public_id)
    try:
        while not await async_check():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            if not channel:
                await asyncio.sleep(min(remaining, FALLBACK_POLL_S))
                continue
            # One receive per waiter, kept across rechecks: cancelling it every
            # recheck would drop the Redis connection of the blocking pop each time.
            receiving = receiving or asyncio.ensure_future(layer.receive(channel))
            done, _ = await asyncio.wait({receiving}, timeout=min(remaining, RECHECK_S))
            if done:
                finished, receiving = receiving, None
                if finished.exception() is not None:
                    logger.warning("exec wake-ups lost (polling): %r", finished.exception())
                    channel = ""
        return True
    finally:
        await _close_channel(layer, public_id, channel, receiving)


async def _close_channel(
    layer: BaseChannelLayer, public_id: str, channel: str, receiving: asyncio.Future[Any] | None
) -> None:
    if receiving is not None:
        receiving.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await receiving
    if channel:
        await unsubscribe(layer, public_id, channel)
