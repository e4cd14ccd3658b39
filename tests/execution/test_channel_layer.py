"""The channel layer against the real Redis: idle receives and many receivers."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from channels_redis.core import RedisChannelLayer
from redis.exceptions import TimeoutError as RedisTimeout

from core.channel_layer import WakeupChannelLayer
from execution import notify

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REDIS_URL = os.environ["REDIS_URL"]


async def _idle_receive(layer: RedisChannelLayer, seconds: float) -> None:
    channel = await layer.new_channel()
    try:
        await asyncio.wait_for(layer.receive(channel), seconds)
    finally:
        await layer.flush()


def test_stock_layer_fails_an_idle_receive_when_its_socket_timeout_is_not_longer() -> None:
    # The cause of the failed waits: redis-py's socket timeout ends a blocking pop that
    # is still waiting. At the stock 5 s against 5 s the two race; a shorter socket
    # timeout shows the failure every time.
    stock = RedisChannelLayer(hosts=[{"address": REDIS_URL, "socket_timeout": 2}])
    with pytest.raises(RedisTimeout):
        asyncio.run(_idle_receive(stock, 12))


def test_idle_receive_outlasts_the_blocking_pop() -> None:
    layer = WakeupChannelLayer(hosts=[REDIS_URL])
    assert layer.socket_timeout_s > layer.brpop_timeout
    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(_idle_receive(layer, layer.brpop_timeout * 2 + 1))


def test_many_receivers_more_than_the_pool_all_get_their_message() -> None:
    layer = WakeupChannelLayer(hosts=[REDIS_URL], max_connections=4)

    async def scenario() -> list[dict[str, object]]:
        channels = [await layer.new_channel() for _ in range(60)]
        group = "test-wakeup-group"
        await asyncio.gather(*(layer.group_add(group, c) for c in channels))
        receivers = [asyncio.ensure_future(layer.receive(c)) for c in channels]
        await asyncio.sleep(0.2)
        await layer.group_send(group, {"type": "exec.event", "n": 1})
        try:
            return list(await asyncio.wait_for(asyncio.gather(*receivers), 30))
        finally:
            await asyncio.gather(*(layer.group_discard(group, c) for c in channels))
            await layer.flush()

    assert asyncio.run(scenario()) == [{"type": "exec.event", "n": 1}] * 60


def test_output_goes_to_redis_only_while_its_group_has_members(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layer = WakeupChannelLayer(hosts=[REDIS_URL])
    group = notify.exec_output_group(f"test-{os.getpid()}-{time.monotonic_ns()}")
    output = {
        "type": notify.EVENT_TYPE,
        "last_seq": 1,
        "status": "running",
        "chunks": [[1, 1, b"x"]],
    }
    sent: list[str] = []
    real_send = layer.group_send

    async def counted_send(to: str, message: dict[str, object]) -> None:
        sent.append(to)
        await real_send(to, message)

    monkeypatch.setattr(layer, "group_send", counted_send)

    async def scenario() -> dict[str, object]:
        await notify._send_now(layer, group, output)
        assert sent == []  # nobody listens: no message at all
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        try:
            await notify._send_now(layer, group, output)
            assert sent == []  # what was seen holds a moment (the database has it)
            monkeypatch.setattr(notify, "MEMBERS_SEEN_FOR_S", 0.0)
            await notify._send_now(layer, group, output)
            assert sent == [group]
            return await asyncio.wait_for(layer.receive(channel), 10)
        finally:
            await layer.group_discard(group, channel)
            await layer.flush()

    assert asyncio.run(scenario())["chunks"] == [[1, 1, b"x"]]
