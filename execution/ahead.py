"""Live output that reached a watcher before output it still lacks.

A watcher that connects while an exec is running reads the stored backlog,
while the runner already publishes later chunks live: the store runs behind
the live path by up to a batch, so the first live messages begin past the end
of what the database holds. Dropping them would leave the watcher following
the database (a query per stored batch) for the rest of the exec; keeping them
lets it send them the moment the database has filled the gap, and follow the
live path from then on.

Bounded: past ``max_bytes`` the kept chunks are let go and the watcher reads
the database, which has every byte, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Above the store's own limit of output waiting for the database
# (execution.persist.MAX_PENDING_BYTES): the gap can be that large.
MAX_AHEAD_BYTES = 16 * 1024 * 1024


class AheadBuffer:
    """Numbered ``[seq, stream, data]`` chunks kept until the ones before them are sent."""

    def __init__(self, *, max_bytes: int | None = None) -> None:
        self.max_bytes = MAX_AHEAD_BYTES if max_bytes is None else max_bytes
        self._chunks: dict[int, Sequence[Any]] = {}
        self._bytes = 0

    def __bool__(self) -> bool:
        return bool(self._chunks)

    def keep(self, chunks: Sequence[Sequence[Any]], *, sent_seq: int) -> bool:
        """Keep the chunks not sent yet; False (and nothing kept) once past ``max_bytes``."""
        for chunk in chunks:
            seq = chunk[0]
            if seq > sent_seq and seq not in self._chunks:
                self._chunks[seq] = chunk
                self._bytes += len(chunk[2])
        if self._bytes > self.max_bytes:
            self.clear()
            return False
        return True

    def take_ready(self, *, sent_seq: int) -> list[Sequence[Any]]:
        """The kept chunks that follow ``sent_seq`` without a gap, in order (removed);
        chunks at or before ``sent_seq`` (sent from the database meanwhile) are dropped."""
        for seq in [seq for seq in self._chunks if seq <= sent_seq]:
            self._bytes -= len(self._chunks.pop(seq)[2])
        ready: list[Sequence[Any]] = []
        seq = sent_seq + 1
        while (chunk := self._chunks.pop(seq, None)) is not None:
            self._bytes -= len(chunk[2])
            ready.append(chunk)
            seq += 1
        return ready

    def clear(self) -> None:
        self._chunks.clear()
        self._bytes = 0
