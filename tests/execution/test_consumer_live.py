"""The exec websocket on the live path, driven in process through the real ASGI
application and the Redis channel layer: live messages are published by hand, the
database is written by hand, so every interleaving is deterministic."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from execution import ahead, consumers, notify
from execution.models import ExecChunk, ExecStatus
from tests.factories import ExecFactory
from workspaces.runtime.remote import NodeUnavailable

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

OUT = 1


def _live(*chunks: tuple[int, bytes]) -> dict[str, Any]:
    return {
        "type": notify.EVENT_TYPE,
        "last_seq": chunks[-1][0],
        "status": "running",
        "chunks": [[seq, OUT, data] for seq, data in chunks],
    }


def _wake(last_seq: int, status: str = ExecStatus.RUNNING) -> dict[str, Any]:
    return {"type": notify.EVENT_TYPE, "last_seq": last_seq, "status": status}


def _store(exec_: Any, *chunks: tuple[int, bytes]) -> None:
    for seq, data in chunks:
        ExecChunk.objects.create(exec=exec_, seq=seq, stream=OUT, data=data)


class Watcher:
    def __init__(self, exec_: Any, token: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        from devbench_site.asgi import application

        self.exec = exec_
        self.reads = 0  # database reads the consumer has finished
        poll = consumers.services.exec_poll

        def counted_poll(**kwargs: Any) -> Any:
            try:
                return poll(**kwargs)
            finally:
                self.reads += 1

        monkeypatch.setattr(consumers.services, "exec_poll", counted_poll)
        self.group = notify.exec_group(exec_.public_id)
        self.ws = WebsocketCommunicator(
            application,
            f"/ws/execs/{exec_.public_id}/",
            headers=[
                (b"origin", b"http://127.0.0.1"),
                (b"authorization", f"Bearer {token.raw}".encode()),
            ],
        )

    async def publish(self, message: dict[str, Any]) -> None:
        output = "chunks" in message
        group = notify.exec_output_group(self.exec.public_id) if output else self.group
        await get_channel_layer().group_send(group, message)

    async def frames(self, n: int) -> list[dict[str, Any]]:
        return [json.loads(await self.ws.receive_from(timeout=10)) for _ in range(n)]

    async def reads_done(self, n: int) -> None:
        """Wait until the consumer has read the database ``n`` times in all: a store made
        after that cannot be seen by a read still in flight."""
        for _ in range(1000):
            if self.reads >= n:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"the consumer read the database {self.reads} times, not {n}")

    async def arrivals(self, within_s: float) -> list[Any]:
        """Whatever reaches the client within ``within_s`` (shown when it should be nothing)."""
        if await self.ws.receive_nothing(timeout=within_s):
            return []
        waiting = self.ws.output_queue.qsize()
        return [await self.ws.receive_output(timeout=1) for _ in range(waiting)]

    async def connected_following(self) -> None:
        """Connected; a follower's backlog is the runner's to send: nothing is read from
        the database (where seq 1 is stored) until the follow says so."""
        connected, _ = await self.ws.connect()
        assert connected
        assert await self.arrivals(0.3) == []
        assert self.reads == 0

    async def outputs(self, n: int) -> list[tuple[int, str]]:
        frames = await self.frames(n)
        assert all(f["type"] == "output" for f in frames), frames
        return [(f["seq"], f["data"]) for f in frames]


@pytest.fixture
def running_exec(tenant: Any) -> Any:
    assert notify.live_output()  # production mode: the Redis channel layer
    exec_ = ExecFactory(workspace__tenant=tenant, status=ExecStatus.RUNNING)
    _store(exec_, (1, b"a"))
    exec_.last_seq = 1
    exec_.save(update_fields=["last_seq"])
    return exec_


def test_live_output_past_a_gap_is_kept_and_sent_once_the_database_fills_it(
    running_exec: Any, token: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    watcher = Watcher(running_exec, token, monkeypatch)

    async def scenario() -> None:
        connected, _ = await watcher.ws.connect()
        assert connected
        assert await watcher.outputs(1) == [(1, "a")]  # the stored backlog
        await watcher.reads_done(2)  # and the read that found nothing more
        # Published live before seq 2 is stored (the store runs behind the live path).
        await watcher.publish(_live((3, b"c"), (4, b"d")))
        await watcher.publish(_live((5, b"e")))
        assert await watcher.arrivals(0.5) == []
        await sync_to_async(_store)(running_exec, (2, b"b"))
        await watcher.publish(_wake(2))
        # 2 from the database, then 3-5 as they came live: none of them is stored yet.
        assert await watcher.outputs(4) == [(2, "b"), (3, "c"), (4, "d"), (5, "e")]
        await watcher.publish(_live((6, b"f")))  # in order now: straight through
        assert await watcher.outputs(1) == [(6, "f")]
        await sync_to_async(_finish)(running_exec, (3, b"c"), (4, b"d"), (5, b"e"), (6, b"f"))
        await watcher.publish(_wake(6, ExecStatus.COMPLETED))
        [end] = await watcher.frames(1)
        assert (end["type"], end["status"], end["last_seq"]) == ("complete", "completed", 6)
        await watcher.ws.disconnect()

    async_to_sync(scenario)()


def test_a_watcher_too_far_behind_drops_what_it_kept_and_reads_everything_stored(
    running_exec: Any, token: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ahead, "MAX_AHEAD_BYTES", 4)
    # Only the messages below make the watcher read the database: its once-a-second
    # re-read, landing between a store and its wake-up on a slow machine, would send
    # 3 and 4 live as soon as 2 is out, which is right but not this test's sequence.
    monkeypatch.setattr(notify, "RECHECK_S", 600.0)
    watcher = Watcher(running_exec, token, monkeypatch)

    async def scenario() -> None:
        connected, _ = await watcher.ws.connect()
        assert connected
        assert await watcher.outputs(1) == [(1, "a")]
        # The backlog read ends with a read that finds nothing more; were 2 stored before
        # it, it would send 2, and 3 and 4 would then come live in order (right, but not
        # this test's sequence).
        await watcher.reads_done(2)
        await watcher.publish(_live((3, b"cc"), (4, b"ddd")))  # past the bound: let go
        await sync_to_async(_store)(running_exec, (2, b"b"))
        await watcher.publish(_wake(2))
        assert await watcher.outputs(1) == [(2, "b")]
        assert await watcher.arrivals(0.5) == []  # 3 and 4 are not stored yet
        await sync_to_async(_finish)(running_exec, (3, b"cc"), (4, b"ddd"))
        await watcher.publish(_wake(4, ExecStatus.COMPLETED))
        assert await watcher.outputs(2) == [(3, "cc"), (4, "ddd")]  # every byte, in order
        [end] = await watcher.frames(1)
        assert (end["type"], end["last_seq"]) == ("complete", 4)
        await watcher.ws.disconnect()

    async_to_sync(scenario)()


def _finish(exec_: Any, *chunks: tuple[int, bytes]) -> None:
    _store(exec_, *chunks)
    exec_.last_seq = chunks[-1][0]
    exec_.status = ExecStatus.COMPLETED
    exec_.exit_code = 0
    exec_.save(update_fields=["last_seq", "status", "exit_code"])


class FakeFollow:
    """What ``live.follow`` returns, fed by the test: batches, then an end or a break."""

    END = object()

    def __init__(self) -> None:
        self.batches: queue.Queue[Any] = queue.Queue()
        self.closed = threading.Event()
        self.asked: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> FakeFollow:
        self.asked.append(kwargs)
        return self

    def __iter__(self) -> Iterator[list[list[Any]]]:
        while not self.closed.is_set():
            batch = self.batches.get(timeout=30)
            if batch is self.END:
                return
            if isinstance(batch, Exception):
                raise batch
            yield batch

    def close(self) -> None:
        self.closed.set()
        self.batches.put(self.END)


@pytest.fixture
def follow(monkeypatch: pytest.MonkeyPatch) -> FakeFollow:
    """Every follow the consumer starts is this one; the database is read only on the
    messages and ends the tests send (no once-a-second re-read)."""
    fake = FakeFollow()
    monkeypatch.setattr(consumers.live, "follow", fake)
    monkeypatch.setattr(notify, "RECHECK_S", 600.0)
    return fake


@pytest.fixture
def watcher(running_exec: Any, token: Any, monkeypatch: pytest.MonkeyPatch) -> Watcher:
    return Watcher(running_exec, token, monkeypatch)


def test_a_follower_gets_output_from_the_runner_and_the_end_from_the_database(
    running_exec: Any, follow: FakeFollow, watcher: Watcher
) -> None:
    async def scenario() -> None:
        await watcher.connected_following()
        # The backlog (1 is stored) and what is not stored yet, all from the runner.
        follow.batches.put([[1, OUT, b"a"], [2, OUT, b"b"], [3, OUT, b"c"]])
        assert await watcher.outputs(3) == [(1, "a"), (2, "b"), (3, "c")]
        assert watcher.reads == 0
        # Output through the channel layer is not for a follower: it never joined.
        await watcher.publish(_live((4, b"d")))
        assert await watcher.arrivals(0.3) == []
        # The store announces what it wrote ahead of the follow: the follow brings it, so
        # the database is not read for it.
        await sync_to_async(_store)(running_exec, (2, b"b"), (3, b"c"), (4, b"d"))
        await watcher.publish(_wake(4))
        assert await watcher.arrivals(0.3) == []
        assert watcher.reads == 0
        follow.batches.put([[4, OUT, b"d"]])
        assert await watcher.outputs(1) == [(4, "d")]
        await sync_to_async(_finish)(running_exec, (5, b"e"))
        follow.batches.put(FakeFollow.END)  # the runner's end is committed
        # What the follow did not bring comes from the database, then the end.
        assert await watcher.outputs(1) == [(5, "e")]
        [end] = await watcher.frames(1)
        assert (end["type"], end["status"], end["last_seq"]) == ("complete", "completed", 5)
        await watcher.ws.disconnect()

    async_to_sync(scenario)()
    assert follow.asked == [
        {"node": running_exec.workspace.node, "public_id": running_exec.public_id, "after_seq": 0}
    ]


def test_a_follow_that_breaks_falls_back_to_the_channel_layer_and_loses_nothing(
    running_exec: Any, follow: FakeFollow, watcher: Watcher
) -> None:
    async def scenario() -> None:
        await watcher.connected_following()
        follow.batches.put([[1, OUT, b"a"], [2, OUT, b"b"]])
        assert await watcher.outputs(2) == [(1, "a"), (2, "b")]
        await sync_to_async(_store)(running_exec, (2, b"b"), (3, b"c"))
        follow.batches.put(NodeUnavailable("gone", node="n"))  # the node worker went away
        assert await watcher.outputs(1) == [(3, "c")]  # read from the database at once
        for _ in range(100):  # joined the channel layer's output group
            await watcher.publish(_live((4, b"d")))
            if arrived := await watcher.arrivals(0.05):
                break
        frames = [json.loads(message["text"]) for message in arrived]
        assert [(f["seq"], f["data"]) for f in frames] == [(4, "d")]
        await sync_to_async(_finish)(running_exec, (4, b"d"))
        await watcher.publish(_wake(4, ExecStatus.COMPLETED))
        [end] = await watcher.frames(1)
        assert (end["type"], end["last_seq"]) == ("complete", 4)
        await watcher.ws.disconnect()

    async_to_sync(scenario)()


def test_a_follower_behind_what_the_runner_keeps_fills_the_gap_from_the_database(
    running_exec: Any, follow: FakeFollow, watcher: Watcher
) -> None:
    async def scenario() -> None:
        await watcher.connected_following()
        # The runner no longer keeps 1 to 3: the follow starts at 4. The gap is read
        # from the database at once (1 is stored there).
        follow.batches.put([[4, OUT, b"d"], [5, OUT, b"e"]])
        assert await watcher.outputs(1) == [(1, "a")]
        await watcher.reads_done(2)  # the read that sent 1, and the one that found no more
        assert await watcher.arrivals(0.3) == []  # held until the database has 2 and 3
        await sync_to_async(_store)(running_exec, (2, b"b"), (3, b"c"))
        await watcher.publish(_wake(3))  # the store's wake-up
        assert await watcher.outputs(4) == [(2, "b"), (3, "c"), (4, "d"), (5, "e")]
        follow.batches.put([[6, OUT, b"f"]])
        assert await watcher.outputs(1) == [(6, "f")]
        await sync_to_async(_finish)(running_exec, (4, b"d"), (5, b"e"), (6, b"f"))
        follow.batches.put(FakeFollow.END)
        [end] = await watcher.frames(1)
        assert (end["type"], end["last_seq"]) == ("complete", 6)
        await watcher.ws.disconnect()

    async_to_sync(scenario)()
