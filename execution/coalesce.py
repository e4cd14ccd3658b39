"""Coalescing raw exec output into chunks (pure code, no I/O).

Output is coalesced per exec, not per stream: frames are kept in arrival
order and consecutive frames of the same stream merge, so the interleaving
of stdout and stderr survives. A batch is flushed once it holds
``max_bytes`` or its oldest byte is ``max_delay_s`` old.

UTF-8 at chunk boundaries: a chunk is cut on a character boundary whenever
the data allows it, and an incomplete character at the end of the newest
data is held back (at most 3 bytes) until its stream continues, another
stream writes, or the output ends. So text written in valid UTF-8 arrives as
valid UTF-8 chunks; anything else is sent base64-encoded (see ``encode``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

# A chunk is a row in the database and a message to a watcher: a fast stream costs per
# chunk in every process on its way (the web process's frame, the watcher's parse), and
# 64 KiB chunks had 8 MiB reach a websocket a fifth later than 256 KiB ones.
MAX_CHUNK_BYTES = 256 * 1024
MAX_DELAY_S = 0.05
# The cap on an exec's stored output keeps its tail in whole chunks: with chunks of at
# most a quarter of the cap, at least three quarters of the cap are kept.
CAP_SHARE = 4
MIN_CHUNK_BYTES = 1024


def chunk_bytes_for(cap: int) -> int:
    """The largest chunk of an exec whose stored output is capped at ``cap`` bytes."""
    return max(MIN_CHUNK_BYTES, min(MAX_CHUNK_BYTES, cap // CAP_SHARE))


def _is_continuation(byte: int) -> bool:
    return byte & 0xC0 == 0x80


def _sequence_length(lead: int) -> int:
    if lead < 0x80:
        return 1
    if lead & 0xE0 == 0xC0:
        return 2
    if lead & 0xF0 == 0xE0:
        return 3
    if lead & 0xF8 == 0xF0:
        return 4
    return 1  # a stray continuation or invalid byte: nothing to wait for


def incomplete_tail(data: bytes | bytearray) -> int:
    """How many trailing bytes form the start of a character that is not complete yet."""
    n = len(data)
    for back in range(1, min(4, n) + 1):
        byte = data[n - back]
        if not _is_continuation(byte):
            need = _sequence_length(byte)
            return back if need > back else 0
    return 0


def split_points(data: bytes | bytearray, max_bytes: int) -> list[int]:
    """End offsets of pieces of at most ``max_bytes``, cut on a character boundary if one
    lies within 3 bytes of the limit."""
    ends: list[int] = []
    start, n = 0, len(data)
    while n - start > max_bytes:
        cut = start + max_bytes
        for candidate in range(cut, max(cut - 3, start + 1) - 1, -1):
            if not _is_continuation(data[candidate]):
                cut = candidate
                break
        ends.append(cut)
        start = cut
    ends.append(n)
    return ends


@dataclass
class _Segment:
    """Consecutive output of one stream, as the pieces it came in (joined only when taken:
    a piece that makes a whole chunk goes on without a copy)."""

    stream: int
    parts: list[bytes]

    def data(self) -> bytes:
        return self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)


class Coalescer:
    def __init__(self, *, max_bytes: int = MAX_CHUNK_BYTES, max_delay_s: float = MAX_DELAY_S):
        self.max_bytes = max_bytes
        self.max_delay_s = max_delay_s
        self._segments: list[_Segment] = []
        self._pending = 0
        self._oldest: float | None = None
        self._carry: _Segment | None = None

    @property
    def pending_bytes(self) -> int:
        return self._pending

    def add(self, stream: int, data: bytes, now: float) -> None:
        if not data:
            return
        if self._carry is not None:
            carry, self._carry = self._carry, None
            if carry.stream == stream:
                data = carry.data() + data
            else:
                self._append(carry.stream, carry.data(), now)
        self._append(stream, bytes(data), now)

    def _append(self, stream: int, data: bytes, now: float) -> None:
        if self._segments and self._segments[-1].stream == stream:
            self._segments[-1].parts.append(data)
        else:
            self._segments.append(_Segment(stream, [data]))
        self._pending += len(data)
        if self._oldest is None:
            self._oldest = now

    def due(self, now: float) -> bool:
        if self._pending >= self.max_bytes:
            return True
        return self._oldest is not None and now - self._oldest >= self.max_delay_s

    def next_deadline(self) -> float | None:
        """When the oldest pending byte must be flushed (``None``: nothing pending)."""
        return None if self._oldest is None else self._oldest + self.max_delay_s

    def take(self, *, final: bool = False) -> list[tuple[int, bytes]]:
        """Everything pending as ``(stream, data)`` chunks; ``final`` also releases held bytes."""
        segments, self._segments = self._segments, []
        self._pending, self._oldest = 0, None
        if final and self._carry is not None:
            segments.append(self._carry)
            self._carry = None
        joined = [(segment.stream, segment.data()) for segment in segments]
        if joined and not final:
            stream, data = joined[-1]
            held = incomplete_tail(data)
            if held:
                self._carry = _Segment(stream, [data[-held:]])
                joined[-1] = (stream, data[:-held])
        chunks: list[tuple[int, bytes]] = []
        for stream, data in joined:
            start = 0
            for end in split_points(data, self.max_bytes):
                if end > start:
                    # The whole of it (no copy) or a slice of it.
                    chunks.append((stream, data if end - start == len(data) else data[start:end]))
                start = end
        return chunks


def encode(data: bytes) -> tuple[str, str]:
    """Text for a client: ``(data, "utf-8")`` if the chunk is valid UTF-8, else base64."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"
