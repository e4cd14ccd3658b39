"""What the filesystem services return: frozen, interface-neutral values."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from workspaces.filesystem.tario import CHUNK, Spool
from workspaces.runtime.base import ArchiveReader

_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_engine_time(value: str) -> datetime | None:
    """The engine's RFC 3339 time (nanoseconds trimmed to what datetime holds)."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", value))
    except ValueError:
        return None


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


class Chunks(Iterator[bytes]):
    """A body in chunks that is closed at its end, on error, or by ``close()``.

    Unlike a generator, ``close()`` releases the body even if iteration never
    started (a client that hangs up before the first byte).
    """

    def __init__(self, read: Callable[[int], bytes], close: Callable[[], None]) -> None:
        self._read = read
        self._close = close
        self._closed = False

    def __next__(self) -> bytes:
        if self._closed:
            raise StopIteration
        try:
            chunk = self._read(CHUNK)
        except BaseException:
            self.close()
            raise
        if not chunk:
            self.close()
            raise StopIteration
        return chunk

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()


class _Described:
    """What the schemas read off a path besides its fields."""

    kind: str
    mode: int

    @property
    def is_dir(self) -> bool:
        return self.kind == "dir"

    @property
    def permissions(self) -> str:
        return f"{self.mode:04o}"


@dataclass(frozen=True)
class FileStat(_Described):
    path: str
    name: str
    kind: str  # file | dir | symlink | other
    size: int
    mode: int  # permission bits
    mtime: datetime | None
    link_target: str | None = None
    etag: str | None = None  # files only: sha256 of the content
    mime_type: str | None = None


@dataclass(frozen=True)
class DirEntry(_Described):
    name: str
    path: str
    kind: str
    size: int
    mode: int
    mtime: datetime | None
    link_target: str | None = None


@dataclass(frozen=True)
class DirListing:
    """One page of a directory listing (the list contract of ``core.pagination``)."""

    path: str
    items: tuple[DirEntry, ...]
    next_cursor: str | None  # set when more entries follow

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


@dataclass(frozen=True)
class FileContent:
    """A file (or a byte range of it) read whole into memory, within the policy limit."""

    path: str
    size: int  # of the whole file
    etag: str  # of the whole file
    offset: int
    content: bytes
    mime_type: str | None

    @property
    def length(self) -> int:
        return len(self.content)


class Body(Protocol):
    """What a file's body is read from: a spool, or the engine's stream itself."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class FileStream:
    """A file (or a byte range) off the engine, to be streamed to a client.

    ``etag`` is known before the first byte goes out and matches exactly the bytes
    sent: the body was read from the engine completely first (a spool), or it is read
    as it goes out and verified against the ETag remembered for this very read before
    its last piece does (``verified``).
    """

    path: str
    size: int
    etag: str
    offset: int
    length: int
    mime_type: str | None
    body: Body | Spool

    def chunks(self) -> Chunks:
        return Chunks(self.body.read, self.body.close)


@dataclass(frozen=True)
class FileWriteResult:
    path: str
    etag: str
    size: int
    mode: int
    created: bool


@dataclass(frozen=True)
class FileDeleteResult:
    path: str
    kind: str
    status: str = "deleted"


@dataclass(frozen=True)
class MkdirResult:
    path: str
    created: bool


@dataclass(frozen=True)
class MoveResult:
    path: str  # the new path
    source: str
    kind: str


@dataclass(frozen=True)
class ArchiveUploadResult:
    path: str
    files: int
    directories: int
    symlinks: int
    hardlinks: int
    bytes: int  # file content extracted


@dataclass(frozen=True)
class ArchiveDownload:
    """A tar stream of a path, straight from the engine (never held whole)."""

    path: str
    filename: str
    reader: ArchiveReader

    def chunks(self) -> Chunks:
        return Chunks(self.reader.read, self.reader.close)
