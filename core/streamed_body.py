"""A request body the view reads while the server is still receiving it.

Django's ASGI handler stores the whole body (in memory, then a temporary file
on disk) before the view runs. For a large file upload that is a serial step
in front of everything the view then does with it: the 64 MiB write received
the body, wrote it to disk, then read it back to send it on to the engine.
Upload routes registered here (:func:`register`, e.g. a raw ``PUT`` of a file)
with a ``Content-Length`` of at least :data:`STREAM_MIN_BYTES` instead get a
:class:`StreamedBody`: a pump task on the event loop takes the server's body
messages into a bounded buffer, and the view's thread reads from it, so the
receive, the checks the view makes first (path, lock, precondition) and the
transfer onwards overlap.

What callers rely on:

- Bytes arrive in order and exactly as sent; ``read`` returns ``b""`` only
  once the server has said the body ended (it enforces the
  ``Content-Length``).
- A body that cannot be completed (the client disconnected, or nothing
  arrived for ``DEVBENCH_UPLOAD_STALL_S`` seconds) raises
  :class:`RequestBodyIncomplete` from ``read``: whatever the view was
  writing fails with it, and an atomic write leaves the old file in place.
- The pump holds at most :data:`BUFFER_BYTES` (plus one message): past it, it
  stops asking the server for more, and the server's own flow control stops
  reading the socket. Nothing is written to disk.
- A view that answers without reading the body (an error) ends the pump;
  the server discards the rest of the body.

Each streamed request holds its request thread (and any lock its view takes: a
file write's path lock is a database transaction) while the body arrives, where a
stored body held neither: at most :data:`MAX_STREAMED` of them are streamed at
once per process, and later ones are stored first as before.
"""

from __future__ import annotations

import asyncio
import collections
import re
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings

from core.errors import DevBenchError

STREAM_MIN_BYTES = 1024 * 1024  # smaller bodies arrive in a message or two anyway
BUFFER_BYTES = 4 * 1024 * 1024
# Each holds a request thread and, for a file write, the path's lock: a PostgreSQL
# transaction (an advisory lock) on one of the process's database connections.
MAX_STREAMED = 8

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]

_routes: list[tuple[str, re.Pattern[str]]] = []
_streamed_now = 0  # touched on the event loop only


class RequestBodyIncomplete(DevBenchError):
    code = "request_body_incomplete"
    http_status = 400
    default_message = "The request body ended before its Content-Length."


def register(method: str, path: str) -> None:
    """Requests of ``method`` whose path matches the regular expression ``path`` stream."""
    route = (method.upper(), re.compile(path))
    if route not in _routes:
        _routes.append(route)


def _declared_length(scope: MutableMapping[str, Any]) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def wants_stream(scope: MutableMapping[str, Any]) -> bool:
    """A registered upload route with a declared body large enough to gain from it."""
    if _streamed_now >= MAX_STREAMED:
        return False
    method, path = scope["method"], scope["path"]
    if not any(method == m and pattern.search(path) for m, pattern in _routes):
        return False
    length = _declared_length(scope)
    return length is not None and length >= STREAM_MIN_BYTES


def stall_seconds() -> float:
    return float(settings.DEVBENCH_UPLOAD_STALL_S)


def _one_stream_less(_: asyncio.Task[None]) -> None:
    global _streamed_now
    _streamed_now -= 1


class StreamedBody:
    """The body as a file the view's thread reads; see the module's docstring."""

    def __init__(self, receive: Receive, *, stall_s: float | None = None) -> None:
        self._receive = receive
        self._stall_s = stall_seconds() if stall_s is None else stall_s
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._ended = False
        self._error: RequestBodyIncomplete | None = None
        self._space = asyncio.Event()  # set (from the reader's thread) when the buffer drains
        self._pump_waits = False
        self._closed = False
        global _streamed_now
        _streamed_now += 1
        self._task = self._loop.create_task(self._pump())
        # Not in the pump's own finally: a task cancelled before it first runs never
        # enters its body.
        self._task.add_done_callback(_one_stream_less)

    # --- the event loop's side -------------------------------------------------------

    async def _pump(self) -> None:
        try:
            while True:
                with self._lock:
                    full = self._buffered >= BUFFER_BYTES
                    self._pump_waits = full
                    if full:
                        self._space.clear()
                if full:
                    await self._space.wait()
                    continue
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    self._fail("The client disconnected before the request body was complete.")
                    return
                chunk = message.get("body", b"")
                more = message.get("more_body", False)
                with self._lock:
                    if chunk:
                        self._chunks.append(chunk)
                        self._buffered += len(chunk)
                    self._ended = not more
                    self._arrived.notify_all()
                if not more:
                    return
        except asyncio.CancelledError:
            self._fail("The request ended before its body was read.")
            raise
        except Exception as exc:  # the server's receive broke: the body cannot complete
            self._fail(f"The request body could not be received: {exc}")

    def _fail(self, message: str) -> None:
        with self._lock:
            if self._error is None and not self._ended:
                self._error = RequestBodyIncomplete(message)
            self._arrived.notify_all()

    # --- the reader's side (the view's thread) ------------------------------------------

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes (all of the rest when negative): the front of what has
        arrived, never more than one of the server's body messages (at least one byte
        until the end, then ``b""``). Readers take what they get, as from a socket;
        joining messages to fill ``size`` would copy every byte of an upload once more."""
        if size < 0:
            return b"".join(iter(lambda: self.read(BUFFER_BYTES), b""))
        if size == 0:
            return b""
        with self._lock:
            deadline = time.monotonic() + self._stall_s
            while not self._chunks and not self._ended and self._error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._error = RequestBodyIncomplete(
                        f"No part of the request body arrived for {self._stall_s:g} s."
                    )
                    break
                self._arrived.wait(remaining)
            if not self._chunks:
                if self._error is not None:
                    raise self._error
                return b""
            data = self._take(size)
            if self._pump_waits and self._buffered < BUFFER_BYTES // 2:
                self._pump_waits = False
                self._loop.call_soon_threadsafe(self._space.set)
            return data

    def _take(self, size: int) -> bytes:
        """At most ``size`` bytes of the first message in the buffer (which is not empty)."""
        chunk = self._chunks[0]
        if len(chunk) <= size:
            data = self._chunks.popleft()
        else:
            data, self._chunks[0] = chunk[:size], chunk[size:]
        self._buffered -= len(data)
        return data

    def close(self) -> None:
        """Ends the pump (from any thread); what was not read is dropped."""
        if self._closed:
            return
        self._closed = True
        self._fail("The request ended before its body was read.")
        if not self._task.done():
            self._loop.call_soon_threadsafe(self._task.cancel)
