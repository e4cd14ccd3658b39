"""Output reaches live watchers before it is stored; the terminal state waits for storage.

The runner runs in this process (a row only, no task sent), with the database
write of chunks held back, while a listener on the exec's channel-layer group
plays a watcher.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.db import connection

from execution import live, notify, persist, runner, state
from execution.models import Exec, ExecChunk, ExecStatus
from execution.tasks import SENDERS
from workspaces.runtime.agent import follow_here

pytestmark = [pytest.mark.integration, pytest.mark.docker]


class Listener:
    """A channel-layer subscriber of one exec's group, on a loop thread of its own."""

    def __init__(self, public_id: str) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.layer = get_channel_layer()
        self.group = notify.exec_output_group(public_id)
        self.channel = self._run(self._subscribe())

    def _run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _subscribe(self) -> str:
        channel: str = await self.layer.new_channel()
        await self.layer.group_add(self.group, channel)
        return channel

    def next_output(self) -> list[list[Any]]:
        """The chunks of the next message that carries output (wake-ups are skipped)."""
        while True:
            message = self._run(self.layer.receive(self.channel))
            if message.get("chunks"):
                return list(message["chunks"])

    def close(self) -> None:
        self._run(self.layer.group_discard(self.group, self.channel))
        self.loop.call_soon_threadsafe(self.loop.stop)


class _Follower(threading.Thread):
    """Follows the exec in this process (as the node's agent does) once its runner is up."""

    def __init__(self, public_id: str) -> None:
        super().__init__(daemon=True)
        self.public_id = public_id
        self.chunks: list[list[Any]] = []
        self.status_at_end = ""
        self.start()

    def run(self) -> None:
        live.follow_register()
        args = {"exec_id": self.public_id, "after_seq": 0}
        for _ in range(3000):
            if (followed := follow_here(live.FOLLOW, args)) is not None:
                break
            time.sleep(0.01)
        else:
            return
        try:
            for piece in followed:
                self.chunks += live.decode(piece) if piece else []
            self.status_at_end = Exec.objects.get(public_id=self.public_id).status
        finally:
            connection.close()


def test_watchers_get_output_before_it_is_stored_and_the_end_waits_for_it(
    running_workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert notify.live_output()  # production mode: a channel layer across processes
    exec_ = Exec.objects.create(
        tenant=running_workspace.tenant,
        workspace=running_workspace,
        # Output before the end: a short exec's output that comes whole with its end is
        # stored by the terminal statement instead (test_a_short_execs_output_...).
        cmd=["sh", "-c", "echo first; echo second >&2; sleep 0.5"],
        status=ExecStatus.STARTING,
    )
    release = threading.Event()
    stored_while_held: list[int] = []
    real_insert = persist.insert_chunks

    def held_insert(rows: list[ExecChunk]) -> None:
        assert release.wait(60), "the test never released the store"
        real_insert(rows)

    monkeypatch.setattr(persist, "insert_chunks", held_insert)
    listener = Listener(exec_.public_id)
    loaded = Exec.objects.select_related("workspace", "tenant").get(pk=exec_.pk)

    def run_it() -> None:
        try:
            runner.run_exec(loaded, senders=SENDERS)
        finally:
            connection.close()  # a worker thread's connection, like the runner's own

    run = threading.Thread(target=run_it)
    run.start()
    followed = _Follower(exec_.public_id)
    try:
        seen: list[list[Any]] = []
        while sum(len(bytes(c[2])) for c in seen) < len(b"first\nsecond\n"):
            seen += listener.next_output()
        stored_while_held.append(ExecChunk.objects.filter(exec=exec_).count())
        run.join(timeout=1.0)  # the command has ended; the runner must still be waiting
        still_running = run.is_alive()
        status_while_held = Exec.objects.get(pk=exec_.pk).status
    finally:
        release.set()
        run.join(timeout=60)
        listener.close()

    assert [c[0] for c in seen] == list(range(1, len(seen) + 1))  # numbered in order
    by_stream: dict[int, bytes] = {1: b"", 2: b""}
    for _, stream, data in seen:
        by_stream[stream] += bytes(data)
    assert by_stream == {1: b"first\n", 2: b"second\n"}
    assert stored_while_held == [0]  # the watcher did not wait for the database
    assert still_running and status_while_held == ExecStatus.RUNNING

    exec_.refresh_from_db()
    assert exec_.status == ExecStatus.COMPLETED and exec_.exit_code == 0
    # A follower in the runner's process got the same chunks, and its stream ended only
    # once the end was committed.
    followed.join(30)
    assert followed.chunks == seen
    assert followed.status_at_end == ExecStatus.COMPLETED
    stored = list(ExecChunk.objects.filter(exec=exec_).order_by("seq").values_list("seq", "data"))
    assert [(seq, bytes(data)) for seq, data in stored] == [(c[0], bytes(c[2])) for c in seen]
    assert exec_.last_seq == len(seen)


def _run_in_process(exec_: Exec) -> BaseException | None:
    """Run ``exec_``'s runner in a thread of this process; what it raised, if anything."""
    loaded = Exec.objects.select_related("workspace", "tenant").get(pk=exec_.pk)
    raised: list[BaseException] = []

    def run_it() -> None:
        try:
            runner.run_exec(loaded, senders=SENDERS)
        except BaseException as exc:
            raised.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run_it)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    return raised[0] if raised else None


def _short_exec(workspace: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Exec, list[Any]]:
    """An exec whose whole output comes with its end (the runner coalesces it until
    then), and the chunk writes of the store's own path."""
    monkeypatch.setattr(runner, "LIVE_FLUSH_S", 30.0)
    writes: list[Any] = []
    real_insert = persist.insert_chunks

    def recorded(rows: list[ExecChunk]) -> None:
        writes.append([row.seq for row in rows])
        real_insert(rows)

    monkeypatch.setattr(persist, "insert_chunks", recorded)
    exec_ = Exec.objects.create(
        tenant=workspace.tenant,
        workspace=workspace,
        cmd=["sh", "-c", "echo one; echo two >&2; echo three"],
        status=ExecStatus.STARTING,
    )
    return exec_, writes


def _stored(exec_: Exec) -> dict[int, bytes]:
    by_stream: dict[int, bytes] = {1: b"", 2: b""}
    for stream, data in (
        ExecChunk.objects.filter(exec=exec_).order_by("seq").values_list("stream", "data")
    ):
        by_stream[stream] += bytes(data)
    return by_stream


def test_a_short_execs_output_is_stored_by_its_terminal_statement(
    running_workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    exec_, writes = _short_exec(running_workspace, monkeypatch)
    assert _run_in_process(exec_) is None
    exec_.refresh_from_db()
    assert (exec_.status, exec_.exit_code) == (ExecStatus.COMPLETED, 0)
    assert _stored(exec_) == {1: b"one\nthree\n", 2: b"two\n"}
    seqs = list(ExecChunk.objects.filter(exec=exec_).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1)) and exec_.last_seq == seqs[-1]
    assert (exec_.first_seq, exec_.truncated, exec_.stdout_bytes) == (1, False, 10)
    assert writes == []  # no write of the store's own (nor a thread started for one)


def test_held_output_is_stored_when_the_terminal_statement_fails(
    running_workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    exec_, writes = _short_exec(running_workspace, monkeypatch)
    real_end_run = state.end_run
    calls: list[Any] = []

    def failing_once(*args: Any, **kwargs: Any) -> bool:
        calls.append(kwargs.get("chunks"))
        if len(calls) == 1:
            raise RuntimeError("the database went away")
        return real_end_run(*args, **kwargs)

    monkeypatch.setattr(state, "end_run", failing_once)
    raised = _run_in_process(exec_)
    assert isinstance(raised, RuntimeError)
    assert calls[0]  # the held chunks went with the statement that failed
    exec_.refresh_from_db()
    assert (exec_.status, exec_.error_code) == (ExecStatus.FAILED, "internal_error")
    # The runner's abort stored them on its own: no byte lost, the end after them.
    assert _stored(exec_) == {1: b"one\nthree\n", 2: b"two\n"}
    assert len(writes) == 1 and exec_.last_seq == writes[0][-1]
