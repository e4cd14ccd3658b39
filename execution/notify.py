"""Waking listeners of an exec: consumers through the channel layer, the waits of
synchronous code through one Redis pub/sub subscription per process
(:mod:`execution.wakeups`; output goes to consumers only).

Messages go to the group ``exec.<public id>``, all as ``{"type": "exec.event",
"last_seq", "status"}``: a wake-up after a change is stored; or to the group
``exec-output.<public id>``, with ``"chunks": [[seq, stream, data], ...]``: output not
yet stored, published by the runner before it stores it (watchers show it at once,
deduplicated by seq). Watchers that follow the output from the runner itself
(:mod:`execution.live`) do not join the output group.
The runner's own end also carries ``"final"``: the ended exec's state (and its
output, when small), committed before the message is sent.
Listeners read the database, which is the source of truth, whenever they miss
something, so a dropped message (a full channel, a late subscriber) costs
latency, never data: every waiter also re-reads the database on its own at
least every ``RECHECK_S``. One process publishes an exec's messages in the order
they were published; a progress wake-up still waiting to be sent when a later
wake-up of the exec is published is dropped (the later one says more).

The same machinery serves any other wait on a row another process changes:
:func:`publish_group` and :func:`wait_for_group` take a group name (a spawn waiting
for its workspace uses ``workspace.<public id>``, see ``workspaces.provisioning``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer
from django.db import connection
from redis import asyncio as aioredis

from execution import wakeups

logger = logging.getLogger(__name__)
T = TypeVar("T")

EVENT_TYPE = "exec.event"
RECHECK_S = 1.0
# The in-memory layer (embedded mode) is bound to one event loop; waiters poll the DB.
IN_MEMORY_POLL_S = 0.05
# Live output travels in messages of at most this much data.
MAX_MESSAGE_BYTES = 1024 * 1024
# Live output of one exec that may wait in a process for Redis before it is let go.
MAX_QUEUED_BYTES = 16 * 1024 * 1024
# How often a waiter whose channel layer failed reads the database instead.
FALLBACK_POLL_S = 0.25
# Longest a waiter spends subscribing (or unsubscribing) before it polls instead.
SETUP_TIMEOUT_S = 2.0


def exec_group(public_id: str) -> str:
    return f"exec.{public_id}"


def exec_output_group(public_id: str) -> str:
    """The group of the exec's live output: only watchers that do not follow it from its
    runner (``execution.live``) join it, so output to nobody costs no message."""
    return f"exec-output.{public_id}"


def _layer() -> BaseChannelLayer | None:
    layer: BaseChannelLayer | None = get_channel_layer()
    return layer


def layer_crosses_processes(layer: BaseChannelLayer | None) -> bool:
    return layer is not None and not isinstance(layer, InMemoryChannelLayer)


class _LoopThread:
    """One long-lived event loop thread per process and purpose (publishing; the
    receives of every wait).

    A fresh loop per message (``async_to_sync``) would open a new Redis
    connection each time; this keeps one pool warm for every calling thread.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():  # new, or inherited by fork
                self._loop = asyncio.new_event_loop()
                self._pid = os.getpid()
                thread = threading.Thread(
                    target=self._loop.run_forever, name=self._name, daemon=True
                )
                thread.start()
            return self._loop

    def call(self, func: Callable[..., None], *args: Any) -> None:
        """Run ``func(*args)`` on the loop; calls run in the order they were made."""
        self._running().call_soon_threadsafe(func, *args)

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Run ``coro`` on the loop; cancelling the future cancels it."""
        return asyncio.run_coroutine_threadsafe(coro, self._running())


_publisher = _LoopThread("exec-notify")


def live_output() -> bool:
    """Whether output can reach watchers in other processes before it is stored."""
    return layer_crosses_processes(_layer())


def _output_bytes(message: dict[str, Any]) -> int:
    return sum(len(chunk[2]) for chunk in message.get("chunks", ()))


def _progress_only(message: dict[str, Any]) -> bool:
    """An exec's wake-up that only says "running, stored up to last_seq" (no output, no
    end): a later wake-up of the exec supersedes it."""
    return (
        message.get("type") == EVENT_TYPE
        and message.get("status") == "running"
        and "chunks" not in message
        and "final" not in message
    )


def _says_as_much(message: dict[str, Any]) -> bool:
    """Whether ``message``, queued after a progress wake-up of its group, makes that
    wake-up needless: a later wake-up or end of an exec (its ``last_seq`` is as high)."""
    return message.get("type") == EVENT_TYPE and "chunks" not in message


class _Outbox:
    """A group's messages waiting while one of its messages is being sent (only touched
    on the publisher's loop thread)."""

    def __init__(self) -> None:
        self.messages: collections.deque[dict[str, Any]] = collections.deque()
        self.output_bytes = 0

    def __bool__(self) -> bool:
        return bool(self.messages)

    def add(self, message: dict[str, Any]) -> None:
        if "chunks" not in message:
            # A wake-up still waiting to be sent says less than this one (a last_seq as
            # high, a status as recent): listeners need only this one. Output does not
            # supersede it: output may be let go when Redis is behind.
            while self.messages and _progress_only(self.messages[-1]):
                self.messages.pop()
        self.messages.append(message)
        self.output_bytes += _output_bytes(message)
        if self.output_bytes > MAX_QUEUED_BYTES:
            # Redis is slow or paused: let the queued output go rather than hold it in
            # memory; watchers read it from the database. Wake-ups stay.
            logger.warning(
                "%s bytes of live output not delivered (Redis behind)", self.output_bytes
            )
            self.messages = collections.deque(m for m in self.messages if "chunks" not in m)
            self.output_bytes = 0

    def take(self) -> dict[str, Any]:
        """The first message (removed), with the output messages behind it folded in, up
        to MAX_MESSAGE_BYTES of output.

        Folding passes the store's "stored up to N" wake-ups queued between output
        messages: the latest of them leaves right after the merged output (or not at all
        when another wake-up or the end follows, which says more). While output streams,
        the store wakes listeners after every batch; kept in place, those wake-ups cut
        the output into small messages and doubled what every watcher receives."""
        first = self.messages.popleft()
        if "chunks" not in first:
            return first
        chunks = list(first["chunks"])
        size = _output_bytes(first)
        passed: dict[str, Any] | None = None
        while self.messages:
            following = self.messages[0]
            if "chunks" not in following:
                if not _progress_only(following):
                    break
                passed = self.messages.popleft()
                continue
            extra = _output_bytes(following)
            if size + extra > MAX_MESSAGE_BYTES:
                break
            chunks += self.messages.popleft()["chunks"]
            size += extra
        if passed is not None and not (self.messages and _says_as_much(self.messages[0])):
            self.messages.appendleft(passed)
        self.output_bytes -= size
        return {**first, "last_seq": chunks[-1][0], "chunks": chunks}


_outboxes: dict[str, _Outbox] = {}


def _enqueue(layer: BaseChannelLayer, group: str, message: dict[str, Any]) -> None:
    outbox = _outboxes.get(group)
    if outbox is None:
        outbox = _outboxes[group] = _Outbox()
        asyncio.get_running_loop().create_task(_drain(layer, group, outbox))
    outbox.add(message)


async def _drain(layer: BaseChannelLayer, group: str, outbox: _Outbox) -> None:
    """Send a group's messages one at a time, in order. Output that queued up while a
    send was under way leaves merged into one message: when output flows faster than
    Redis round trips, messages grow instead of queueing, and the first one never waits."""
    try:
        while outbox:
            message = outbox.take()
            try:
                # Bounded: a paused Redis must not hold every later message of the exec.
                await asyncio.wait_for(_send_now(layer, group, message), SETUP_TIMEOUT_S)
            except Exception as exc:
                logger.warning("exec event not delivered (listeners fall back to polling): %r", exc)
    finally:
        # No await since the outbox was last seen empty: nothing can have been added.
        del _outboxes[group]


async def _send_now(layer: BaseChannelLayer, group: str, message: dict[str, Any]) -> None:
    """To the group's consumers through the layer; a wake-up also to the waits of every
    process (:mod:`execution.wakeups`), first: it is one command. Waits read output from
    the database, never from a message, so output goes to consumers only."""
    if "chunks" in message:
        if await _listened(layer, group):
            await layer.group_send(group, message)
        return
    client, prefix = _wake_publisher(layer)
    await asyncio.gather(
        wakeups.publish(client, prefix, group, message), layer.group_send(group, message)
    )


# Whether an output group had members, as last seen (loop time, yes or no): usually it has
# none (watchers follow the runner, ``execution.live``) and its output costs no message.
# A watcher that joins meanwhile reads that output from the database, once it is stored.
_members_seen: dict[str, tuple[float, bool]] = {}
MEMBERS_SEEN_FOR_S = 0.25


async def _listened(layer: BaseChannelLayer, group: str) -> bool:
    count = getattr(layer, "group_members", None)
    if count is None:
        return True  # a layer that cannot tell: send
    now = asyncio.get_running_loop().time()
    seen = _members_seen.get(group)
    if seen is None or now - seen[0] >= MEMBERS_SEEN_FOR_S:
        if len(_members_seen) > 1000:  # forget the groups of execs long over
            for stale in [g for g, (at, _) in _members_seen.items() if now - at > 60]:
                del _members_seen[stale]
        seen = _members_seen[group] = (now, await count(group) > 0)
    return seen[1]


# This process's Redis client for publishing wake-ups (used on the publisher's loop only).
_wake_client: tuple[int, aioredis.Redis, str] | None = None


def _wake_publisher(layer: BaseChannelLayer) -> tuple[aioredis.Redis, str]:
    global _wake_client
    if _wake_client is None or _wake_client[0] != os.getpid():
        url, prefix = _wake_address(layer)
        _wake_client = (os.getpid(), aioredis.Redis.from_url(url, socket_timeout=5.0), prefix)
    return _wake_client[1], _wake_client[2]


def _wake_address(layer: BaseChannelLayer) -> tuple[str, str]:
    """The Redis of the channel layer (its first host) and the wake-ups' channel prefix."""
    url = str(layer.hosts[0]["address"])
    return url, wakeups.namespace(url, str(layer.prefix))


def publish_group(group: str, message: dict[str, Any]) -> None:
    """Send ``message`` to ``group``'s listeners in other processes, after the sender's
    earlier messages to it; never blocks, never fails (listeners recheck the database)."""
    layer = _layer()
    if not layer_crosses_processes(layer):
        return
    assert layer is not None
    _publisher.call(_enqueue, layer, group, message)


def _send(public_id: str, message: dict[str, Any]) -> None:
    publish_group(exec_group(public_id), message)


def publish(
    public_id: str, *, last_seq: int, status: str, final: dict[str, Any] | None = None
) -> None:
    """Tell listeners of the exec that output or status changed (after it is committed);
    ``final``: the ended exec's state, as its runner announces it."""
    message: dict[str, Any] = {"type": EVENT_TYPE, "last_seq": last_seq, "status": status}
    if final is not None:
        message["final"] = final
    _send(public_id, message)


def publish_output(public_id: str, chunks: list[tuple[int, int, bytes]]) -> None:
    """Show numbered ``(seq, stream, data)`` chunks to live watchers before they are stored."""
    batch: list[list[Any]] = []
    size = 0
    for chunk in chunks:
        if batch and size + len(chunk[2]) > MAX_MESSAGE_BYTES:
            _send_output(public_id, batch)
            batch, size = [], 0
        batch.append(list(chunk))
        size += len(chunk[2])
    if batch:
        _send_output(public_id, batch)


def _send_output(public_id: str, batch: list[list[Any]]) -> None:
    message = {"type": EVENT_TYPE, "last_seq": batch[-1][0], "status": "running", "chunks": batch}
    publish_group(exec_output_group(public_id), message)


# Whether a message to the group is worth a check of the database (None: every one is).
WakeFilter = Callable[[dict[str, Any]], bool] | None


def wait_until(
    public_id: str,
    check: Callable[[], bool],
    *,
    timeout_s: float,
    wake_on: WakeFilter = None,
    ends_on: WakeFilter = None,
    check_first: bool = True,
) -> bool:
    """:func:`wait_for_group` on the exec's group."""
    return wait_for_group(
        exec_group(public_id),
        check,
        timeout_s=timeout_s,
        wake_on=wake_on,
        ends_on=ends_on,
        check_first=check_first,
    )


def wait_for_group(
    group: str,
    check: Callable[[], bool],
    *,
    timeout_s: float,
    wake_on: WakeFilter = None,
    ends_on: WakeFilter = None,
    check_first: bool = True,
) -> bool:
    """Block (sync code) until ``check()`` is true or ``timeout_s`` passes; returns the last check.

    ``check`` reads the database and runs in the calling thread. It is called
    once up front (unless ``check_first`` is false: the caller has just seen the
    row and knows the answer is no), once subscribed, after each message to
    ``group`` that ``wake_on`` accepts (messages carry the state they announce, so a
    waiter skips the read for those that cannot satisfy it), and at least every
    ``RECHECK_S``. A message ``ends_on`` accepts satisfies the wait without a check
    (one sent once the state it announces is committed). A channel layer that fails
    (Redis restarted, paused or out of connections) never fails the wait: it goes on
    reading the database.
    Between checks the thread gives its pooled database connection back, so
    any number of waiters share a small pool.

    Wake-ups come through this process's one Redis pub/sub subscription
    (:mod:`execution.wakeups`): a wait costs no Redis command of its own.
    """
    checked = _releasing(check)
    if (check_first or timeout_s <= 0) and checked():
        return True
    if timeout_s <= 0:
        return False
    deadline = time.monotonic() + timeout_s
    subscriber = _subscriber()
    if subscriber is None:
        return _poll(checked, deadline=deadline, interval_s=IN_MEMORY_POLL_S)
    # Subscribed before the next check: nothing committed after it can be missed.
    waiting = _Wakeups(subscriber, group)
    try:
        while not checked():
            recheck_at = time.monotonic() + RECHECK_S
            while True:
                now = time.monotonic()
                if now >= deadline:
                    return False
                if now >= recheck_at:
                    break
                message = waiting.wait(min(deadline, recheck_at) - now)
                if message is not None and ends_on is not None and ends_on(message):
                    return True
                if message is None or wake_on is None or wake_on(message):
                    break
        return True
    finally:
        waiting.close()


class _Wakeups:
    """A waiter's queue of ``group``'s wake-ups in this process."""

    def __init__(self, subscriber: wakeups.Subscriber, group: str) -> None:
        self.subscriber = subscriber
        self.group = group
        self.queue = subscriber.register(group)
        if self.queue is None and _on_receiver(subscriber.connect(), default=False):
            self.queue = subscriber.register(group)

    def wait(self, timeout_s: float) -> dict[str, Any] | None:
        """The next message, or None once ``timeout_s`` passes (polling pace without a
        subscription)."""
        if self.queue is None:
            time.sleep(min(timeout_s, FALLBACK_POLL_S))
            return None
        try:
            message = self.queue.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if message is wakeups.LOST:
            self.queue = None  # the subscriber forgot every waiter: poll from now on
            return None
        result: dict[str, Any] = message
        return result

    def close(self) -> None:
        if self.queue is not None:
            self.subscriber.unregister(self.group, self.queue)


# Runs the wake-up subscription's connection and reader.
_receiver = _LoopThread("wait-receive")
_waiting: tuple[int, wakeups.Subscriber | None] | None = None
_waiting_lock = threading.Lock()


def _subscriber() -> wakeups.Subscriber | None:
    """This process's wake-up subscriber (None: the layer reaches no other process)."""
    global _waiting
    with _waiting_lock:
        if _waiting is None or _waiting[0] != os.getpid():
            layer = _layer()
            subscriber = None
            if layer_crosses_processes(layer):
                assert layer is not None
                subscriber = wakeups.Subscriber(*_wake_address(layer))
            _waiting = (os.getpid(), subscriber)
        return _waiting[1]


def _on_receiver(coro: Coroutine[Any, Any, bool], *, default: bool) -> bool:
    try:
        return _receiver.submit(coro).result(timeout=2 * SETUP_TIMEOUT_S)
    except Exception as exc:  # a Redis error, or TimeoutError
        logger.warning("wait without wake-ups (polling the database): %r", exc)
        return default


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
    return await _group_add(layer, exec_group(public_id), channel)


async def unsubscribe(layer: BaseChannelLayer, public_id: str, channel: str) -> None:
    await _group_discard(layer, exec_group(public_id), channel)


async def subscribe_output(layer: BaseChannelLayer, public_id: str, channel: str) -> bool:
    """Add ``channel`` to the exec's live output group; False (logged) if the layer cannot."""
    return await _group_add(layer, exec_output_group(public_id), channel)


async def unsubscribe_output(layer: BaseChannelLayer, public_id: str, channel: str) -> None:
    await _group_discard(layer, exec_output_group(public_id), channel)


async def _group_add(layer: BaseChannelLayer, group: str, channel: str) -> bool:
    try:
        await asyncio.wait_for(layer.group_add(group, channel), SETUP_TIMEOUT_S)
    except Exception as exc:  # a Redis error, or TimeoutError
        logger.warning("listener not subscribed to %s (polling the database): %r", group, exc)
        return False
    return True


async def _group_discard(layer: BaseChannelLayer, group: str, channel: str) -> None:
    # A membership left behind expires with the group; a dead channel only drops messages.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(layer.group_discard(group, channel), SETUP_TIMEOUT_S)
