"""core.streamed_body: a request body read by the view's thread while the server still
receives it. The server's side is a queue of ASGI messages on a real event loop in its
own thread; the reader is this test's thread, as a view's would be."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from core import streamed_body
from core.http_uvicorn import _BodyPieces
from core.streamed_body import BUFFER_BYTES, RequestBodyIncomplete, StreamedBody


class Server:
    """An event loop in a thread, and the ``receive`` of one request on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.messages: asyncio.Queue[dict[str, Any]] = self.call(asyncio.Queue)
        self.receives = 0

    def call(self, fn: Any, *args: Any) -> Any:
        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(5)

    async def receive(self) -> dict[str, Any]:
        self.receives += 1
        return await self.messages.get()

    def send(self, body: bytes, *, more: bool = True) -> None:
        message = {"type": "http.request", "body": body, "more_body": more}
        self.loop.call_soon_threadsafe(self.messages.put_nowait, message)

    def disconnect(self) -> None:
        self.loop.call_soon_threadsafe(self.messages.put_nowait, {"type": "http.disconnect"})

    def body(self, stall_s: float = 5.0) -> StreamedBody:
        return self.call(lambda: StreamedBody(self.receive, stall_s=stall_s))

    def settle(self) -> None:
        """Let the loop run what is ready (the pump's next steps)."""
        for _ in range(5):
            self.call(lambda: None)

    def stop(self) -> None:
        async def end_pumps() -> None:
            pumps = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(end_pumps(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.stop()


def test_bytes_arrive_in_order_in_reads_of_any_size(server: Server) -> None:
    data = os.urandom(300_000)
    body = server.body()
    pieces = [data[i : i + 70_001] for i in range(0, len(data), 70_001)]
    for piece in pieces[:-1]:
        server.send(piece)
    server.send(pieces[-1], more=False)
    got = bytearray()
    for size in (1, 10, 65_536, 100_000, 1_000_000):
        got += body.read(size)
    while chunk := body.read(12_345):
        assert len(chunk) <= 12_345
        got += chunk
    assert bytes(got) == data
    assert body.read(10) == b"" and body.read() == b""  # the end stays the end


def test_a_read_waits_for_what_has_not_arrived_and_reads_to_the_end(server: Server) -> None:
    body = server.body()
    threading.Timer(0.2, server.send, args=(b"late",)).start()
    threading.Timer(0.3, server.send, args=(b" and last",), kwargs={"more": False}).start()
    started = time.monotonic()
    assert body.read(100) == b"late"  # what has arrived, not a full 100 bytes
    assert time.monotonic() - started >= 0.15
    assert body.read() == b" and last"


def test_the_pump_stops_asking_for_more_while_its_buffer_is_full(server: Server) -> None:
    body = server.body()
    chunk = b"x" * (1024 * 1024)
    count = BUFFER_BYTES // len(chunk) + 3
    for _ in range(count):
        server.send(chunk)
    server.settle()
    # It took the buffer's worth and waits: the rest stays with the server, unread.
    assert server.receives == BUFFER_BYTES // len(chunk)
    read = 0
    while read < BUFFER_BYTES // 2 + len(chunk):
        read += len(body.read(len(chunk)))
    server.settle()
    assert server.receives > BUFFER_BYTES // len(chunk)
    server.send(b"", more=False)
    while piece := body.read(len(chunk)):
        read += len(piece)
    assert read == count * len(chunk)


def test_a_disconnect_fails_the_read_after_what_had_arrived(server: Server) -> None:
    body = server.body()
    server.send(b"first part")
    server.disconnect()
    assert body.read(100) == b"first part"  # nothing that arrived is lost
    with pytest.raises(RequestBodyIncomplete, match="disconnected") as caught:
        body.read(100)
    assert caught.value.code == "request_body_incomplete"
    assert caught.value.http_status == 400
    with pytest.raises(RequestBodyIncomplete):
        body.read(100)  # and stays failed


def test_a_stalled_body_fails_the_read_after_the_stall_time(server: Server) -> None:
    body = server.body(stall_s=0.3)
    server.send(b"some")
    assert body.read(10) == b"some"
    started = time.monotonic()
    with pytest.raises(RequestBodyIncomplete, match="No part of the request body arrived"):
        body.read(10)
    assert 0.25 <= time.monotonic() - started < 3


def test_closing_ends_the_pump_and_frees_its_place(server: Server) -> None:
    before = streamed_body._streamed_now
    body = server.body()
    assert streamed_body._streamed_now == before + 1
    server.send(b"unread")
    body.close()
    server.settle()
    assert streamed_body._streamed_now == before
    assert body._task.cancelled()
    # Closed before the pump ever ran: it counts as ended too.
    closed_at_once = server.call(lambda: _open_and_close(server))
    server.settle()
    assert closed_at_once._task.cancelled() and streamed_body._streamed_now == before


def _open_and_close(server: Server) -> StreamedBody:
    body = StreamedBody(server.receive, stall_s=1)
    body.close()
    return body


def _scope(method: str, path: str, length: int | None) -> dict[str, Any]:
    headers = [(b"content-type", b"application/octet-stream")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http", "method": method, "path": path, "headers": headers}


def test_only_registered_uploads_with_a_large_declared_length_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    big = streamed_body.STREAM_MIN_BYTES
    files = "/api/v1/workspaces/abc123/files"
    assert streamed_body.wants_stream(_scope("PUT", files, big))
    assert streamed_body.wants_stream(_scope("POST", "/api/v1/workspaces/abc123/archive", big))
    assert not streamed_body.wants_stream(_scope("PUT", files, big - 1))  # small: stored
    assert not streamed_body.wants_stream(_scope("PUT", files, None))  # chunked: stored
    assert not streamed_body.wants_stream(_scope("POST", files, big))  # not registered
    assert not streamed_body.wants_stream(_scope("PUT", f"{files}/move", big))
    assert not streamed_body.wants_stream(_scope("PUT", "/api/v1/workspaces/a/b/files", big))
    monkeypatch.setattr(streamed_body, "_streamed_now", streamed_body.MAX_STREAMED)
    assert not streamed_body.wants_stream(_scope("PUT", files, big))  # busy: stored first


def test_a_read_gives_one_message_at_most_without_copying_it(server: Server) -> None:
    body = server.body()
    first, second = os.urandom(70_000), os.urandom(50_000)
    server.send(first)
    server.send(second, more=False)
    server.settle()
    got = body.read(1_000_000)
    assert got is first  # handed on as the server gave it: not joined with the next
    assert body.read(20_000) == second[:20_000]
    assert body.read(1_000_000) == second[20_000:]
    assert body.read(1) == b""


def test_the_production_servers_body_buffer_joins_pieces_once() -> None:
    pieces = _BodyPieces()
    assert len(pieces) == 0 and not pieces
    one = os.urandom(1000)
    pieces += one
    assert bytes(pieces) is one  # one piece: no copy at all
    pieces += b"two"
    pieces += b"three"
    assert len(pieces) == 1008 and bytes(pieces) == one + b"twothree"
