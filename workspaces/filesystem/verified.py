"""A file streamed to a client as it comes off the engine, under an ETag known in advance.

A download announces the file's ETag (its sha256) in its headers, before the body.
Unless that hash is known, the file must be read (and spooled) whole first, so the
first byte goes out only after the last one came in. When the engine's stat of the
very read that is being answered has a remembered ETag (``etags``), the body goes
out as it is read instead, the whole file hashed on the way, and its last piece only
once the hash is the announced one. A file whose content changed without its size or
mtime changing (``touch -d``, ``cp -p``, a write during the read) makes the hash
differ: then the last piece is never sent, so the client sees a body shorter than its
``Content-Length`` (an error, never wrong bytes under that ETag), and the remembered
ETag is forgotten so that the next download reads the file whole again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Generator, Iterator

from workspaces.filesystem.tario import hashed

logger = logging.getLogger(__name__)


class ContentChanged(Exception):
    """The bytes read do not hash to the ETag announced for them."""


class VerifiedBody:
    """Bytes ``[offset, end)`` of a file whose whole body ``chunks`` yields, with ``read``
    and ``close`` as a spool has; see the module docstring."""

    def __init__(
        self,
        chunks: Iterator[bytes],
        *,
        offset: int,
        end: int,
        etag: str,
        on_mismatch: Callable[[], None],
        close: Callable[[], None],
    ) -> None:
        self._digest = hashlib.sha256()
        self._offset, self._end, self._etag = offset, end, etag
        self._on_mismatch = on_mismatch
        self._close = close
        self._pieces = self._in_range(hashed(chunks, self._digest))

    def _in_range(self, chunks: Iterator[bytes]) -> Generator[bytes, None, None]:
        held: bytes | None = None  # one piece behind: the last one waits for the hash
        position = 0
        for chunk in chunks:
            start, position = position, position + len(chunk)
            if position <= self._offset or start >= self._end:
                continue  # outside the range: hashed all the same
            if self._offset <= start and position <= self._end:
                piece = chunk
            else:
                piece = chunk[max(self._offset - start, 0) : self._end - start]
            if held is not None:
                yield held
            held = piece
        # ``hashed`` has finished here: every chunk is in the digest.
        if self._digest.hexdigest() != self._etag:
            self._on_mismatch()
            logger.warning("file content changed under its ETag; the download is cut short")
            raise ContentChanged("the file changed while it was read")
        if held is not None:
            yield held

    def read(self, size: int = -1) -> bytes:
        """The next piece of the range (whatever its size); ``b""`` at the end."""
        return next(self._pieces, b"")

    def close(self) -> None:
        self._pieces.close()  # a generator left mid-way: its hashing is wound up
        self._close()
