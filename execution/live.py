"""An exec's output followed straight from its runner, past Redis and the database.

A runner keeps its exec's most recent output in memory (:class:`LiveOutput`, at most
``KEEP_BYTES``). A websocket watcher asks the node's worker for it through the worker's
agent (``workspaces.nodes.node_follow``): the agent streams every chunk after the
watcher's last seq as the runner emits it, and ends the stream once the exec's terminal
state is committed. So output reaches the watcher with one hop and no Redis command,
message or database read per chunk.

The database stays the source of truth. A watcher whose follow cannot start (the runner
runs in another process, the node is unreachable, the exec has ended) gets live output
through the channel layer as before; one whose follow breaks falls back the same way. A
watcher that lags behind what the runner keeps gets a gap, which it fills from the
database, as it does for any live output that comes ahead of what it has sent.

Wire: the agent carries opaque pieces; each piece here is a batch of chunks, each
``CHUNK`` (seq, stream, length) then the data. An empty piece is a keep-alive.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from workspaces.nodes import node_follow
from workspaces.runtime.agent import register_follow
from workspaces.runtime.base import Followed

FOLLOW = "exec_output"
# Output a runner keeps for watchers that join late or fall behind: about what the store
# may not have written yet (a batch being written, the next one filling), so that a
# watcher rarely needs the database while the exec runs.
KEEP_BYTES = 2 * 1024 * 1024
# ... and at most this many chunks (output in many tiny chunks: a line at a time).
KEEP_CHUNKS = 4096
# Output a follower has not been given yet is kept longer, up to these bounds: a burst
# (8 MiB in ~40 ms) outruns any watcher by more than KEEP_BYTES, and each watcher then
# read the rest back from the database, a megabyte at a time, in the web process (a
# stream's time up by a fifth or more; bench/README.md). Past them, the gap as before.
FOLLOWED_KEEP_BYTES = 16 * 1024 * 1024
FOLLOWED_KEEP_CHUNKS = 4 * KEEP_CHUNKS
# A batch sent to a watcher holds at most this much (then the next one)...
BATCH_BYTES = 1024 * 1024
# ... but a follow's first batches are smaller, doubling up to it: a watcher sees nothing
# of a batch until all of it has crossed to the web process, and a first megabyte held
# its first byte back by ~5 ms (bench/README.md).
FIRST_BATCH_BYTES = 64 * 1024
# A quiet follow sends an empty piece this often: a watcher that left is noticed.
KEEPALIVE_S = 5.0
CHUNK = struct.Struct(">QBI")

Chunk = tuple[int, int, bytes]


class LiveOutput:
    """One running exec's recent chunks; written by its runner, read by its followers.

    Chunks come numbered one after another (the runner's seq), so the chunk after a
    follower's seq is found by subtraction, not a scan."""

    def __init__(
        self,
        keep_bytes: int = KEEP_BYTES,
        keep_chunks: int = KEEP_CHUNKS,
        *,
        followed_bytes: int = FOLLOWED_KEEP_BYTES,
        followed_chunks: int = FOLLOWED_KEEP_CHUNKS,
    ) -> None:
        self._keep_bytes = keep_bytes
        self._keep_chunks = keep_chunks
        self._followed_bytes = max(keep_bytes, followed_bytes)
        self._followed_chunks = max(keep_chunks, followed_chunks)
        self._changed = threading.Condition()
        self._chunks: list[Chunk] = []
        self._head = 0  # index of the oldest chunk kept; those before it are let go
        self._bytes = 0
        self._ended = False
        # Each follower's seq: what it has been given (it asks for what comes after).
        self._given: dict[object, int] = {}

    def add(self, chunks: Sequence[Chunk]) -> None:
        with self._changed:
            for chunk in chunks:
                self._chunks.append(chunk)
                self._bytes += len(chunk[2])
            self._trim()
            self._changed.notify_all()

    def join(self, follower: object, after_seq: int) -> None:
        """``follower`` reads from ``after_seq`` on: what it has not been given is kept
        longer (up to the followed bounds) until it leaves (:meth:`leave`)."""
        with self._changed:
            self._given[follower] = after_seq

    def leave(self, follower: object) -> None:
        with self._changed:
            self._given.pop(follower, None)
            self._trim()

    def _trim(self) -> None:
        """Let the oldest chunks go past the bounds; the newest stays even if it alone is
        larger than them."""
        behind = min(self._given.values(), default=None)
        while (kept := len(self._chunks) - self._head) > 1 and (
            self._bytes > self._keep_bytes or kept > self._keep_chunks
        ):
            oldest_seq, _, oldest = self._chunks[self._head]
            if (
                behind is not None
                and oldest_seq > behind
                and self._bytes <= self._followed_bytes
                and kept <= self._followed_chunks
            ):
                break  # a follower has yet to be given it
            self._bytes -= len(oldest)
            self._head += 1
        if self._head > self._keep_chunks:  # now and then, not on every add
            del self._chunks[: self._head]
            self._head = 0

    def end(self) -> None:
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def wake(self) -> None:
        """Wake the followers waiting (one of them stops)."""
        with self._changed:
            self._changed.notify_all()

    def after(
        self,
        seq: int,
        *,
        timeout_s: float,
        stop: threading.Event | None = None,
        follower: object = None,
        max_bytes: int | None = None,
    ) -> tuple[list[Chunk], bool]:
        """Chunks after ``seq`` (up to ``max_bytes``, BATCH_BYTES by default, and at least
        one; those no longer kept are skipped), waiting up to ``timeout_s`` for one (or
        ``stop``); and whether the output has ended with them. A ``follower`` that joined
        has been given everything up to ``seq``."""
        with self._changed:
            if follower in self._given and self._given[follower] < seq:
                self._given[follower] = seq
                self._trim()
            self._changed.wait_for(
                lambda: (
                    self._ended
                    or (stop is not None and stop.is_set())
                    or bool(len(self._chunks) > self._head and self._chunks[-1][0] > seq)
                ),
                timeout=timeout_s,
            )
            batch: list[Chunk] = []
            size = 0
            kept = len(self._chunks) - self._head
            start = self._head
            if kept:
                start += min(kept, max(0, seq + 1 - self._chunks[self._head][0]))
            for index in range(start, len(self._chunks)):
                chunk = self._chunks[index]
                if batch and size + len(chunk[2]) > (max_bytes or BATCH_BYTES):
                    return batch, False
                batch.append(chunk)
                size += len(chunk[2])
            return batch, self._ended


_running: dict[str, LiveOutput] = {}
_running_lock = threading.Lock()


def begin(public_id: str) -> LiveOutput:
    """The exec's output, followable in this process until :func:`end`."""
    output = LiveOutput()
    with _running_lock:
        _running[public_id] = output
    return output


def end(public_id: str, output: LiveOutput) -> None:
    """``output`` is over (the exec's terminal state committed, or its runner did not
    claim it): its followers finish."""
    with _running_lock:
        if _running.get(public_id) is output:  # not another runner's (of the same exec)
            del _running[public_id]
    output.end()


def encode(chunks: Sequence[Chunk]) -> bytes:
    parts: list[bytes] = []
    for seq, stream, data in chunks:
        parts.append(CHUNK.pack(seq, stream, len(data)))
        parts.append(data)
    return b"".join(parts)


def decode(piece: bytes) -> list[list[Any]]:
    """A batch's chunks as ``[seq, stream, data]``, as live messages carry them."""
    chunks: list[list[Any]] = []
    view = memoryview(piece)
    at = 0
    while at < len(piece):
        seq, stream, length = CHUNK.unpack_from(piece, at)
        at += CHUNK.size
        if at + length > len(piece):
            raise ValueError("a followed chunk is cut short")
        chunks.append([seq, stream, bytes(view[at : at + length])])
        at += length
    return chunks


def _pieces(
    output: LiveOutput, after_seq: int, stop: threading.Event, follower: object
) -> Iterator[bytes]:
    seq = after_seq
    batch_bytes = FIRST_BATCH_BYTES
    while not stop.is_set():
        # Asked once the previous piece is on its way: that piece has been given.
        chunks, ended = output.after(
            seq,
            timeout_s=KEEPALIVE_S,
            stop=stop,
            follower=follower,
            max_bytes=min(batch_bytes, BATCH_BYTES),
        )
        if chunks:
            seq = chunks[-1][0]
            batch_bytes *= 2
            yield encode(chunks)
        elif not ended:
            yield b""  # keep-alive
        if ended and not chunks:
            return


class _Following:
    """A follow of an exec running in this process."""

    def __init__(self, output: LiveOutput, after_seq: int) -> None:
        self._output = output
        self._stop = threading.Event()
        output.join(self, after_seq)
        self._pieces = _pieces(output, after_seq, self._stop, self)

    def __iter__(self) -> Iterator[bytes]:
        return self._pieces

    def close(self) -> None:
        self._stop.set()
        self._output.leave(self)
        self._output.wake()


def _follow_here(args: dict[str, Any]) -> Followed | None:
    public_id, after_seq = args.get("exec_id"), args.get("after_seq", 0)
    if not isinstance(public_id, str):
        raise ValueError("exec_id must be a string.")
    if not isinstance(after_seq, int) or isinstance(after_seq, bool) or after_seq < 0:
        raise ValueError("after_seq must be a whole number.")
    with _running_lock:
        output = _running.get(public_id)
    if output is None:
        return None  # not running in this process (or over)
    return _Following(output, after_seq)


def follow_register() -> None:
    register_follow(FOLLOW, _follow_here)


class Batches:
    """A followed exec's chunks in batches (``[seq, stream, data]`` each); ``close`` may
    be called from another thread and ends the reads."""

    def __init__(self, followed: Followed) -> None:
        self._followed = followed

    def __iter__(self) -> Iterator[list[list[Any]]]:
        for piece in self._followed:
            if piece:
                yield decode(piece)

    def close(self) -> None:
        self._followed.close()


def follow(*, node: str, public_id: str, after_seq: int) -> Batches | None:
    """The exec's chunks after ``after_seq``, straight from its runner on ``node`` until
    its output ends and its end is committed; None if they cannot be followed there now."""
    followed = node_follow(node, FOLLOW, {"exec_id": public_id, "after_seq": after_seq})
    return None if followed is None else Batches(followed)
