"""Tar streams in and out, and spooling, without holding large bodies in memory.

Bodies are spooled into :func:`tempfile.SpooledTemporaryFile` (memory up to
``SPOOL_MEMORY_BYTES``, then a temporary file on disk): a body is checked
whole (size limit, hash, archive rules) before anything reaches the workspace,
and the engine then reads it back in chunks.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, BinaryIO, Protocol, cast

from workspaces.filesystem.errors import FileTooLarge
from workspaces.filesystem.tarlib import tarfile
from workspaces.runtime.base import WORKSPACE_UID

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

CHUNK = 1024 * 1024
# Small tar pieces (headers, padding, small bodies) are sent together; pieces from
# PASS_BYTES up as they come, without a copy (an upload's receive pieces are 64-256 KiB).
FLUSH = 256 * 1024
PASS_BYTES = 32 * 1024
SPOOL_MEMORY_BYTES = 8 * 1024 * 1024
_END_OF_ARCHIVE = b"\0" * (2 * tarfile.BLOCKSIZE)

Spool = IO[bytes]


def new_spool() -> Spool:
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES, prefix="devbench-fs-")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _new_hasher() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="devbench-sha256")


# Hashing releases the GIL: an in-memory body is hashed here while it is being sent.
_HASHER = _new_hasher()


def _after_fork() -> None:
    # A forked child has none of its parent's threads: a pool that believes it has
    # idle workers would never run what it is given.
    global _HASHER
    _HASHER = _new_hasher()


os.register_at_fork(after_in_child=_after_fork)
_HASH_BATCH_BYTES = 1024 * 1024


@dataclass(frozen=True)
class SpooledBody:
    file: Spool  # positioned at 0
    size: int
    digest: str | Future[str]
    data: bytes | None = None  # an in-memory body: sent from this buffer, without copies

    @property
    def sha256(self) -> str:
        return self.digest if isinstance(self.digest, str) else self.digest.result()

    @property
    def content(self) -> IO[bytes] | bytes:
        """What a tar entry reads the body from."""
        return self.file if self.data is None else self.data


class _InOrder:
    """Updates of ``digest`` run in another thread, a batch at a time, in the order given,
    so hashing overlaps reading (or sending) what comes next.

    Chunks are handed over in batches of at least :data:`_HASH_BATCH_BYTES`: an upload
    arrives in the server's receive pieces (64-256 KiB), and a hand-over per piece (a
    submit, a wake-up, a result) cost more of the interpreter's time than the hash it
    moved."""

    def __init__(self, digest: Hash) -> None:
        self.digest = digest
        self._pending: Future[None] | None = None
        self._batch: list[bytes] = []
        self._batch_bytes = 0

    def add(self, chunk: bytes) -> None:
        if not isinstance(chunk, bytes):
            # A buffer its producer may reuse once it has the next one: hashed now.
            self.finish()
            self.digest.update(chunk)
            return
        self._batch.append(chunk)
        self._batch_bytes += len(chunk)
        if self._batch_bytes >= _HASH_BATCH_BYTES:
            batch, self._batch, self._batch_bytes = self._batch, [], 0
            self._wait()  # one batch at a time keeps the chunks in order
            self._pending = _HASHER.submit(_update_all, self.digest, batch)

    def finish(self) -> None:
        """Every chunk given so far is in ``digest`` once this returns."""
        self._wait()
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        for chunk in batch:
            self.digest.update(chunk)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()


def _update_all(digest: Hash, chunks: list[bytes]) -> None:
    for chunk in chunks:
        digest.update(chunk)


def hashed(chunks: Iterable[bytes], digest: Hash) -> Iterator[bytes]:
    """The chunks, each added to ``digest`` in another thread while the next one is read
    (and this one stored): hashing overlaps the transfer instead of following it."""
    in_order = _InOrder(digest)
    try:
        for chunk in chunks:
            in_order.add(chunk)
            yield chunk
    finally:
        in_order.finish()


@dataclass(frozen=True)
class Received:
    """A body the server has already received whole, with a known size (an ASGI
    request's, which the server stored before the view ran)."""

    reader: Readable
    size: int


class _HashingReader(io.RawIOBase):
    """Reads exactly ``size`` bytes of a received body, each chunk hashed in another
    thread while the next is read and sent; ``digest`` resolves at the end."""

    def __init__(self, received: Received) -> None:
        super().__init__()
        self._reader = received.reader
        self._remaining = received.size
        self._hash = _InOrder(hashlib.sha256())
        self.digest: Future[str] = Future()
        if not self._remaining:
            self.digest.set_result(self._hash.digest.hexdigest())

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        wanted = self._remaining if size < 0 else min(size, self._remaining)
        if not wanted:
            return b""
        chunk = self._reader.read(wanted)
        if not chunk:
            raise OSError(f"the received body ended {self._remaining} bytes early")
        self._remaining -= len(chunk)
        self._hash.add(chunk)
        if not self._remaining:
            self._hash.finish()
            self.digest.set_result(self._hash.digest.hexdigest())
        return chunk

    def close(self) -> None:
        if not self.digest.done():
            self.digest.set_exception(OSError("the body was not read to its end"))
        super().close()


def spool(source: bytes | BinaryIO | Iterable[bytes] | Received, *, limit: int) -> SpooledBody:
    """Copy a body into a spool while hashing it; FileTooLarge past ``limit`` bytes.

    Reading stops at ``limit + 1`` bytes: an oversized body is refused without
    being read (or stored) whole. A body already in memory, or already received
    whole by the server (:class:`Received`, its size known), is not copied again:
    it is hashed in another thread while it is sent.
    """
    if isinstance(source, Received):
        if source.size > limit:
            raise FileTooLarge(size_bytes=source.size, limit_bytes=limit)
        reader = _HashingReader(source)
        # A body's users only read() it, in order, and close it.
        return SpooledBody(file=cast(Spool, reader), size=source.size, digest=reader.digest)
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)  # no copy when it already is bytes
        if len(data) > limit:
            raise FileTooLarge(size_bytes=len(data), limit_bytes=limit)
        digest = _HASHER.submit(sha256_hex, data) if len(data) >= CHUNK else sha256_hex(data)
        return SpooledBody(file=io.BytesIO(data), size=len(data), digest=digest, data=data)
    out = new_spool()
    hasher = hashlib.sha256()
    size = 0
    try:
        for chunk in hashed(_limited(_chunks(source), limit), hasher):
            out.write(chunk)
            size += len(chunk)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return SpooledBody(file=out, size=size, digest=hasher.hexdigest())


def _limited(chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise FileTooLarge(limit_bytes=limit)
        yield chunk


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
    # Sub-second (a PAX record the engine applies to the nanosecond): two writes of one
    # path never share an mtime, so the ETag cache (keyed by size and mtime) can never
    # take one write's content for another's (etags).
    info.mtime = time.time() if mtime is None else mtime
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


Body = IO[bytes] | bytes | None
Entry = tuple[tarfile.TarInfo, Body]


def _header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padded(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


class SizedTar:
    """A tar stream of a known length: sent with a ``Content-Length``, without chunk
    framing (which costs a copy of every chunk in the HTTP client)."""

    def __init__(self, entries: list[Entry]) -> None:
        self._entries = entries
        body_bytes = sum(_padded(i.size) for i, _ in entries if i.type == tarfile.REGTYPE)
        headers = sum(len(_header(i)) for i, _ in entries)
        self._length = headers + body_bytes + len(_END_OF_ARCHIVE)

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        return tar_stream(self._entries)


def tar_stream(entries: Iterable[Entry]) -> Iterator[bytes]:
    """A tar stream of the entries; a regular file's body is read in chunks."""
    buffer = bytearray()
    for piece in _tar_pieces(entries):
        if len(piece) >= PASS_BYTES:
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


def _tar_pieces(entries: Iterable[Entry]) -> Iterator[bytes]:
    for info, body in entries:
        yield _header(info)
        if info.type != tarfile.REGTYPE or not info.size:
            continue
        assert body is not None
        if isinstance(body, bytes):
            if len(body) != info.size:
                raise OSError(f"{info.name}: body of {len(body)} bytes, header says {info.size}")
            view = memoryview(body)
            for start in range(0, info.size, CHUNK):
                # bytes-like: the slice is sent from the caller's buffer, not copied
                yield view[start : start + CHUNK]  # type: ignore[misc]
        else:
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


class _Counted:
    """A reader that counts the bytes tarfile took from it."""

    def __init__(self, reader: Readable) -> None:
        self._reader = reader
        self.taken = 0

    def read(self, size: int = -1) -> bytes:
        data = self._reader.read(size)
        self.taken += len(data)
        return data


def member_body(reader: Readable) -> tuple[tarfile.TarInfo | None, Iterator[bytes]]:
    """The first member of a tar stream and, for a regular file, its body in chunks.

    tarfile reads the header with a one-block buffer, so it takes exactly the
    header's blocks: the body then follows on ``reader`` and is read from it
    directly, with no copy through tarfile's stream buffer. (Should tarfile
    ever read ahead, the count shows it and its own reader is used.)
    """
    counted = _Counted(reader)
    archive = tarfile.open(fileobj=counted, mode="r|", bufsize=tarfile.BLOCKSIZE)  # type: ignore[call-overload]
    member: tarfile.TarInfo | None = archive.next()
    if member is None or not member.isreg():
        return member, iter(())
    if counted.taken == member.offset_data:
        return member, _exactly(reader, member.size)
    body = archive.extractfile(member)
    assert body is not None
    return member, iter(functools.partial(body.read, CHUNK), b"")


def _exactly(reader: Readable, size: int) -> Iterator[bytes]:
    remaining = size
    while remaining:
        chunk = reader.read(min(CHUNK, remaining))
        if not chunk:
            raise tarfile.ReadError("unexpected end of data")
        remaining -= len(chunk)
        yield chunk


def open_stream(reader: Readable, *, bulk: bool = False) -> tarfile.TarFile:
    """Read a tar stream front to back (the engine's archives are plain tar).

    tarfile's stream buffer is re-sliced on every read: a large buffer suits one
    big member (``bulk``), a small one many small headers (listings).
    """
    bufsize = CHUNK if bulk else 16 * tarfile.BLOCKSIZE
    return tarfile.open(fileobj=reader, mode="r|", bufsize=bufsize)  # type: ignore[call-overload]
