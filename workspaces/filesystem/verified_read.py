"""A file streamed to a client under the ETag the cache remembers for it, checked as it goes.

A streamed read's answer carries the file's ETag in its head, before the body. Without
a remembered ETag the file is spooled off the engine first and hashed on the way
(``reads._spooled``); with one (``etags``: the same path, size and engine mtime) it is
sent while the engine still reads it, and hashed as it passes. The last piece of the
answer is held back until the whole file has been hashed: if the hash is not the
remembered one (a file given another's size and mtime, ``touch -d`` or ``cp -p``: the
bound ``etags`` describes), that piece is never sent, the answer ends short of its
``Content-Length``, and the client sees a broken download rather than content under an
ETag that is not its own. The right hash is remembered, so the next read succeeds.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Generator
from typing import TYPE_CHECKING

from django.utils import timezone

from workspaces.filesystem.errors import PathNotFound
from workspaces.filesystem.etags import etag_forget, etag_remember
from workspaces.filesystem.tario import member_body
from workspaces.runtime.base import ArchiveReader, PathStat

if TYPE_CHECKING:
    from workspaces.filesystem.access import Target

log = logging.getLogger(__name__)


class FileChangedWhileRead(Exception):
    """The file's content is not what its remembered ETag says: the answer is cut short."""


class VerifiedRead:
    """``read``/``close`` over ``[offset, offset + length)`` of the file ``reader`` streams
    (its archive, open; closed here), the last piece released only once the whole file
    hashed to ``etag``."""

    def __init__(
        self,
        target: Target,
        path: str,
        reader: ArchiveReader,
        *,
        stat: PathStat,
        offset: int,
        length: int,
        etag: str,
    ) -> None:
        self._target = target
        self._path = path
        self._reader = reader
        self._stat = stat
        self._etag = etag
        self._started = timezone.now()
        self._pieces = self._ranged(offset, offset + length)
        self._held: bytes | None = None
        self._closed = False

    def _ranged(self, start: int, end: int) -> Generator[bytes, None, None]:
        member, chunks = member_body(self._reader)
        if member is None or not member.isreg():
            raise PathNotFound(f"{self._path} is not a regular file.", path=self._path)
        digest = hashlib.sha256()
        position = 0
        for chunk in chunks:
            digest.update(chunk)
            piece = chunk
            if position < start or position + len(chunk) > end:
                piece = chunk[max(start - position, 0) : max(end - position, 0)]
            position += len(chunk)
            if piece:
                yield piece
        actual = digest.hexdigest()
        if actual != self._etag:
            log.warning("file %s changed under its remembered ETag; read cut short", self._path)
            etag_forget(self._target, self._path, self._stat)
            etag_remember(self._target, self._path, self._stat, actual, read_started=self._started)
            raise FileChangedWhileRead(self._path)

    def read(self, size: int = -1, /) -> bytes:
        """The next piece (the engine's chunks: ``size`` is not honoured); ``b""`` at the
        end. Raises :class:`FileChangedWhileRead` instead of the last piece when the
        file did not hash to ``etag``."""
        if self._closed:
            return b""
        for piece in self._pieces:
            held, self._held = self._held, piece
            if held is not None:
                return held
        # The whole file hashed to ``etag``: the held piece may go.
        held, self._held = self._held, None
        if held is None:
            self.close()
            return b""
        return held

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pieces.close()
            self._reader.close()
