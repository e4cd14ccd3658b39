"""Tar streams in and out, and spooling, without holding large bodies in memory.

Bodies are spooled into :func:`tempfile.SpooledTemporaryFile` (memory up to
``SPOOL_MEMORY_BYTES``, then a temporary file on disk): a body is checked
whole (size limit, hash, archive rules) before anything reaches the workspace,
and the engine then reads it back in chunks.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, BinaryIO, Protocol

from workspaces.filesystem.errors import FileTooLarge
from workspaces.filesystem.tarlib import tarfile
from workspaces.runtime.base import WORKSPACE_UID

CHUNK = 1024 * 1024
FLUSH = 256 * 1024  # small tar pieces are sent together, large ones as they come
SPOOL_MEMORY_BYTES = 8 * 1024 * 1024
_END_OF_ARCHIVE = b"\0" * (2 * tarfile.BLOCKSIZE)

Spool = IO[bytes]


def new_spool() -> Spool:
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES, prefix="devbench-fs-")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class SpooledBody:
    file: Spool  # positioned at 0
    size: int
    sha256: str


def spool(source: bytes | BinaryIO | Iterable[bytes], *, limit: int) -> SpooledBody:
    """Copy a body into a spool while hashing it; FileTooLarge past ``limit`` bytes.

    Reading stops at ``limit + 1`` bytes: an oversized body is refused without
    being read (or stored) whole.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if len(data) > limit:
            raise FileTooLarge(size_bytes=len(data), limit_bytes=limit)
        out: Spool = io.BytesIO(data)
        return SpooledBody(file=out, size=len(data), sha256=sha256_hex(data))
    out = new_spool()
    digest = hashlib.sha256()
    size = 0
    try:
        for chunk in _chunks(source):
            size += len(chunk)
            if size > limit:
                raise FileTooLarge(limit_bytes=limit)
            digest.update(chunk)
            out.write(chunk)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return SpooledBody(file=out, size=size, sha256=digest.hexdigest())


def _chunks(source: BinaryIO | Iterable[bytes]) -> Iterator[bytes]:
    read = getattr(source, "read", None)
    if read is None:
        yield from source
        return
    while True:
        chunk = read(CHUNK)
        if not chunk:
            return
        yield chunk


def new_info(
    name: str,
    *,
    type: bytes = tarfile.REGTYPE,
    size: int = 0,
    mode: int = 0o644,
    mtime: float | None = None,
    linkname: str = "",
) -> tarfile.TarInfo:
    """A fresh header owned by the workspace user: no xattrs, no foreign owners."""
    info = tarfile.TarInfo(name)
    info.type = type
    info.size = size if type == tarfile.REGTYPE else 0
    info.mode = mode & 0o777
    info.mtime = int(time.time() if mtime is None else mtime)
    info.linkname = linkname
    info.uid = info.gid = WORKSPACE_UID
    info.uname = info.gname = ""
    return info


def dir_infos(prefix: str, names: Iterable[str]) -> list[tarfile.TarInfo]:
    """Headers for the directories ``names`` nested one inside the other under ``prefix``."""
    infos, path = [], prefix
    for name in names:
        path = f"{path}/{name}" if path else name
        infos.append(new_info(path, type=tarfile.DIRTYPE, mode=0o755))
    return infos


def tar_stream(entries: Iterable[tuple[tarfile.TarInfo, IO[bytes] | None]]) -> Iterator[bytes]:
    """A tar stream of the entries; a regular file's body is read in chunks."""
    buffer = bytearray()
    for piece in _tar_pieces(entries):
        if len(piece) >= FLUSH:
            if buffer:
                yield bytes(buffer)
                buffer.clear()
            yield piece
        else:
            buffer += piece
            if len(buffer) >= FLUSH:
                yield bytes(buffer)
                buffer.clear()
    if buffer:
        yield bytes(buffer)


def _tar_pieces(entries: Iterable[tuple[tarfile.TarInfo, IO[bytes] | None]]) -> Iterator[bytes]:
    for info, body in entries:
        yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        if info.type != tarfile.REGTYPE or not info.size:
            continue
        assert body is not None
        remaining = info.size
        while remaining:
            chunk = body.read(min(CHUNK, remaining))
            if not chunk:
                raise OSError(f"{info.name}: body ended {remaining} bytes early")
            remaining -= len(chunk)
            yield chunk
        tail = info.size % tarfile.BLOCKSIZE
        if tail:
            yield b"\0" * (tarfile.BLOCKSIZE - tail)
    yield _END_OF_ARCHIVE


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def open_stream(reader: Readable, *, bulk: bool = False) -> tarfile.TarFile:
    """Read a tar stream front to back (the engine's archives are plain tar).

    tarfile's stream buffer is re-sliced on every read: a large buffer suits one
    big member (``bulk``), a small one many small headers (listings).
    """
    bufsize = CHUNK if bulk else 16 * tarfile.BLOCKSIZE
    return tarfile.open(fileobj=reader, mode="r|", bufsize=bufsize)  # type: ignore[call-overload]
