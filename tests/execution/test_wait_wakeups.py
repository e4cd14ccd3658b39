"""Waits in many threads share the process's channel layer with websocket consumers on
the server's loop: every wait is woken by its message, none falls back to polling, and
the consumers' receives keep working."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from typing import Any

import pytest
from channels.layers import get_channel_layer

from execution import notify


def test_concurrent_waits_beside_a_consumer_loop_are_all_woken(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert notify.layer_crosses_processes(notify._layer())
    monkeypatch.setattr(notify, "RECHECK_S", 600.0)  # only a message can end a wait early
    monkeypatch.setattr(notify, "_db_pooled", lambda: False)  # the checks read no database
    caplog.set_level(logging.WARNING, logger="execution.notify")
    consumer_layer = get_channel_layer()
    consumer_loop = asyncio.new_event_loop()
    threading.Thread(target=consumer_loop.run_forever, daemon=True).start()

    async def consumer_round_trip() -> dict[str, object]:
        channel = await consumer_layer.new_channel()
        await consumer_layer.send(channel, {"type": "ping"})
        return dict(await asyncio.wait_for(consumer_layer.receive(channel), 10))

    # A consumer is receiving on the default layer from its loop the whole time.
    idle_channel = asyncio.run_coroutine_threadsafe(
        consumer_layer.new_channel(), consumer_loop
    ).result(10)
    idle = asyncio.run_coroutine_threadsafe(consumer_layer.receive(idle_channel), consumer_loop)

    groups = [f"test.{uuid.uuid4().hex}" for _ in range(20)]
    ready = {group: threading.Event() for group in groups}
    checked = {group: threading.Event() for group in groups}
    results: dict[str, bool] = {}

    def waiter(group: str) -> None:
        def check() -> bool:
            checked[group].set()
            return ready[group].is_set()

        results[group] = notify.wait_for_group(group, check, timeout_s=300)

    threads = [threading.Thread(target=waiter, args=(g,), daemon=True) for g in groups]
    for thread in threads:
        thread.start()
    for group in groups:
        assert checked[group].wait(30)
    for group in groups:
        ready[group].set()
        notify.publish_group(group, {"type": "test.event"})
    for thread in threads:
        thread.join(timeout=60)  # a lost wake-up would hold its thread for 300 s
    assert not any(t.is_alive() for t in threads), "a wait was not woken by its message"
    assert results == {group: True for group in groups}
    assert not [r.getMessage() for r in caplog.records if "polling" in r.getMessage()]
    # The consumer's layer still receives on its own loop.
    assert not idle.done()
    idle.cancel()
    pong = asyncio.run_coroutine_threadsafe(consumer_round_trip(), consumer_loop).result(30)
    assert pong == {"type": "ping"}

    async def settled() -> None:
        # The cancelled receive ends on its loop (releasing the layer's receive lock)
        # before the loop stops: a stopped loop would keep it half-done.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.gather(*others, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(settled(), consumer_loop).result(30)
    consumer_loop.call_soon_threadsafe(consumer_loop.stop)


def test_waits_share_one_subscription_and_leave_nothing_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many waits, one after another and at once, add no subscription to Redis (the
    process's pattern subscription serves all), and once they end nothing of them is
    left in the process: messages that arrive later are dropped."""
    monkeypatch.setattr(notify, "_db_pooled", lambda: False)
    subscriber = notify._subscriber()
    assert subscriber is not None
    wait_once(f"test.{uuid.uuid4().hex}", 1)  # subscribed from here on
    redis = _redis()
    patterns = redis.pubsub_numpat()

    def wait_for(group: str) -> None:
        wait_once(group, 50)  # leaves on the first message; 49 arrive after it

    threads = [
        threading.Thread(target=wait_for, args=(f"test.{uuid.uuid4().hex}",)) for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert redis.pubsub_numpat() == patterns
    assert subscriber.waiting_groups() == 0


def wait_once(group: str, count: int) -> None:
    """A wait on ``group`` ended by the first of ``count`` messages published once it is
    subscribed."""
    done = threading.Event()
    subscribed = threading.Event()
    checks = [0]

    def check() -> bool:
        result = done.is_set()
        checks[0] += 1
        if checks[0] >= 2:  # the check once it is subscribed
            subscribed.set()
        return result

    def publish_once_receiving() -> None:
        subscribed.wait(30)
        done.set()
        for n in range(count):
            notify.publish_group(group, {"type": "test.event", "data": "x" * 1000, "n": n})

    publisher = threading.Thread(target=publish_once_receiving)
    publisher.start()
    assert notify.wait_for_group(group, check, timeout_s=60)
    publisher.join()


def test_a_lost_subscription_is_told_to_its_waits_which_poll_and_later_waits_resubscribe(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(notify, "RECHECK_S", 600.0)  # only a message or polling ends a wait
    monkeypatch.setattr(notify, "_db_pooled", lambda: False)
    caplog.set_level(logging.WARNING, logger="execution.wakeups")
    wait_once(f"test.{uuid.uuid4().hex}", 1)  # subscribed
    group = f"test.{uuid.uuid4().hex}"
    ended = threading.Event()
    waiter, _checks, result = _wait_in_a_thread(group, ended)
    killed = _redis().client_kill_filter(_type="pubsub")
    assert killed >= 1
    deadline = time.monotonic() + 30
    while "wake-ups lost" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "wake-ups lost" in caplog.text
    # No message can reach it now: it polls the database, and sees the end there.
    ended.set()
    waiter.join(timeout=30)
    assert not waiter.is_alive(), "the wait did not poll once its subscription was lost"
    assert result == [True]
    # A new wait subscribes again and is woken by its message.
    wait_once(f"test.{uuid.uuid4().hex}", 1)


def _redis() -> Any:
    import redis

    from execution.notify import _layer, _wake_address

    layer = _layer()
    assert layer is not None
    return redis.Redis.from_url(_wake_address(layer)[0])


def _completed(message: dict[str, Any]) -> bool:
    return message.get("status") == "completed"


def _wait_in_a_thread(
    group: str, ended: threading.Event, **options: Any
) -> tuple[threading.Thread, list[bool], list[bool]]:
    """A waiter on ``group`` whose check says whether ``ended`` is set, started once it is
    subscribed (its first check runs then): the thread, its checks and its result."""
    checks: list[bool] = []
    result: list[bool] = []
    subscribed = threading.Event()

    def check() -> bool:
        checks.append(ended.is_set())
        subscribed.set()
        return ended.is_set()

    waiter = threading.Thread(
        target=lambda: result.append(
            notify.wait_for_group(group, check, timeout_s=300, check_first=False, **options)
        ),
        daemon=True,
    )
    waiter.start()
    assert subscribed.wait(30)
    return waiter, checks, result


def test_a_wait_reads_the_database_only_for_messages_that_can_end_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Messages carry the state they announce: a waiter for the end skips the check on
    progress messages, checks on the one announcing the end, and (without ``check_first``)
    does not look before it is subscribed."""
    monkeypatch.setattr(notify, "RECHECK_S", 600.0)  # only a message can end a wait early
    monkeypatch.setattr(notify, "_db_pooled", lambda: False)  # the checks read no database
    group = f"test.{uuid.uuid4().hex}"
    ended = threading.Event()
    waiter, checks, result = _wait_in_a_thread(group, ended, wake_on=_completed)
    for seq in range(1, 6):
        notify.publish_group(group, {"type": "exec.event", "last_seq": seq, "status": "running"})
    ended.set()
    notify.publish_group(group, {"type": "exec.event", "last_seq": 5, "status": "completed"})
    waiter.join(timeout=60)
    assert not waiter.is_alive(), "the message announcing the end did not end the wait"
    assert result == [True]
    # One check once subscribed, one for the end: none for the five progress messages.
    assert checks == [False, True]


def test_a_message_announcing_a_committed_end_ends_the_wait_without_a_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``ends_on``: the end is announced once it is committed, so the waiter that hears
    it reads nothing more before returning (the caller reads the row once, after)."""
    monkeypatch.setattr(notify, "RECHECK_S", 600.0)
    monkeypatch.setattr(notify, "_db_pooled", lambda: False)
    group = f"test.{uuid.uuid4().hex}"
    never = threading.Event()  # the row never says it ended: only the message can
    waiter, checks, result = _wait_in_a_thread(group, never, ends_on=_completed)
    notify.publish_group(group, {"type": "exec.event", "last_seq": 1, "status": "running"})
    # Sent before the end is published (a wake-up still queued would be superseded).
    deadline = time.monotonic() + 30
    while len(checks) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    notify.publish_group(group, {"type": "exec.event", "last_seq": 1, "status": "completed"})
    waiter.join(timeout=60)
    assert not waiter.is_alive(), "the end's message did not end the wait"
    assert result == [True]
    # The check once subscribed, one for the progress message (no wake_on: every
    # message wakes it), none for the end.
    assert checks == [False, False]
