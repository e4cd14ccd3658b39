"""A file write's archive put made through the container's root, without the engine.

The engine answers an archive put by starting a process of its own that unpacks the
archive inside the container's filesystem (a chrooted ``docker-untar``): about 40 ms
on this kind of host before the first byte is written, most of a 1 MiB write's time,
and CPU taken from everything else on the machine (bench/README.md). A file write
puts one new file under a temp name in a directory that exists, then renames it
(``services.fs_write``), and the temp file can be created where renames are already
made: through the container's root, as the workspace user, the kernel checking the
user's rights (``rootfs.ContainerRoots.create_file``). The body then goes from the
caller's socket into the file in the kernel (``splice``).

Only that one shape is taken here: an archive whose first member is a regular file
named as the rename's source, owned by the user, in the directory the put names. Its
head is read to know; anything else (a directory to create first, another owner, a
container whose root this process cannot reach, a name that exists) goes to the
engine with what was read of the body put back in front of the rest. What follows the
file must be the archive's end (zero blocks): else the file is removed and the write
fails, as it would if the body broke off.
"""

from __future__ import annotations

import io
import posixpath
import socket
import tarfile
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal, InvalidOperation

from core.errors import EngineRefused
from workspaces.runtime.base import SocketBody, body_length
from workspaces.runtime.docker.rootfs import AskEngine, ContainerRoots
from workspaces.runtime.splice import write_all


def put_file_through_root(
    roots: ContainerRoots,
    container_id: str,
    directory: str,
    data: Iterable[bytes],
    *,
    src: str,
    user: str,
) -> Iterable[bytes] | None:
    """Write the archive ``data``'s file through the container's root: None when it is
    written (at ``src``); otherwise the whole body again, for the engine's put."""
    if posixpath.dirname(src) != directory or not roots.may_create(container_id, src):
        return data
    head = _Head(data)
    try:
        info = head.first_member()
    except (tarfile.TarError, EOFError, ValueError):  # the engine says what is wrong
        return head.replayed()
    if (
        info is None
        or not info.isreg()
        or info.name != posixpath.basename(src)
        or f"{info.uid}:{info.gid}" != user
    ):
        return head.replayed()
    try:
        roots.create_file(
            container_id,
            src,
            user=user,
            mode=info.mode & 0o7777,
            mtime_ns=_mtime_ns(info),
            fill=lambda fd: head.fill(fd, info),
        )
    except AskEngine:
        return head.replayed()
    except OSError as exc:
        raise EngineRefused(
            f"Writing {src} failed: {exc.strerror or exc}",
            engine_status=500,
            container_id=container_id,
        ) from exc
    return None


def _mtime_ns(info: tarfile.TarInfo) -> int:
    """The header's mtime to the nanosecond, as the engine applies it (a PAX record is
    decimal: a float would round it)."""
    try:
        return int(Decimal(info.pax_headers["mtime"]) * 1_000_000_000)
    except (KeyError, InvalidOperation):
        return int(info.mtime) * 1_000_000_000


class _Head:
    """The body, with what has been read of it kept until the file is known to be
    written here (to give the engine the whole body otherwise)."""

    def __init__(self, data: Iterable[bytes]) -> None:
        self._data = data
        self._chunks: Iterator[bytes] = iter(data)
        self._read: list[bytes] = []

    def _next(self) -> bytes:
        chunk = next(self._chunks, b"")
        if chunk:
            self._read.append(bytes(chunk))
        return chunk

    def first_member(self) -> tarfile.TarInfo | None:
        with tarfile.open(fileobj=_Reader(self._next), mode="r|") as archive:
            info: tarfile.TarInfo | None = archive.next()
            return info

    def replayed(self) -> Iterable[bytes]:
        read = b"".join(self._read)
        if isinstance(self._data, SocketBody):
            return _Replayed(read, self._data)
        length = body_length(self._data)
        if length is None:
            return _chained(read, self._chunks)
        return _Sized(_chained(read, self._chunks), length)

    def fill(self, fd: int, info: tarfile.TarInfo) -> None:
        """The member's data into ``fd``, then the rest of the body, which must be the
        archive's end."""
        read = b"".join(self._read)
        self._read = []
        data = memoryview(read)[info.offset_data : info.offset_data + info.size]
        write_all(fd, data)
        left = info.size - len(data)
        _end_of_archive(read[info.offset_data + len(data) :])
        if left and isinstance(self._data, SocketBody):
            self._data.write_into(fd, left)
            left = 0
        while left:
            chunk = next(self._chunks, b"")
            if not chunk:
                raise OSError(f"the archive ended {left} bytes into its file")
            write_all(fd, memoryview(chunk)[:left])
            _end_of_archive(chunk[left:])
            left -= min(left, len(chunk))
        for chunk in self._chunks:
            _end_of_archive(chunk)


def _end_of_archive(data: bytes | memoryview) -> None:
    """What follows the file: padding and the end's zero blocks, nothing else."""
    if bytes(data).strip(b"\0"):
        raise OSError("the archive holds more than one file")


class _Reader(io.RawIOBase):
    """What tarfile reads the head from: the body's chunks, as they come."""

    def __init__(self, next_chunk: Callable[[], bytes]) -> None:
        super().__init__()
        self._next_chunk = next_chunk
        self._pending = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        if not self._pending:
            self._pending = self._next_chunk()
        taken = self._pending if size < 0 else self._pending[:size]
        self._pending = self._pending[len(taken) :]
        return taken


def _chained(read: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    """A body with its first bytes (already read) put back."""
    if read:
        yield read
    yield from rest


class _Sized:
    """Chunks of a known total length (the engine then gets them unframed)."""

    def __init__(self, chunks: Iterator[bytes], length: int) -> None:
        self._chunks = chunks
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks


class _Replayed(SocketBody):
    """An upload still on its socket, with its first bytes (already read) put back."""

    def __init__(self, read: bytes, body: SocketBody) -> None:
        self._read = read
        self._body = body

    def __len__(self) -> int:
        return len(self._body)  # what was read and what is left: the whole body

    def __next__(self) -> bytes:
        if self._read:
            read, self._read = self._read, b""
            return read
        return next(self._body)

    @property
    def spliceable(self) -> bool:
        return self._body.spliceable

    def send_into(self, sock: socket.socket) -> None:
        if self._read:
            sock.sendall(self._read)
            self._read = b""
        self._body.send_into(sock)

    def write_into(self, fd: int, count: int) -> None:
        read, self._read = self._read[:count], self._read[count:]
        write_all(fd, read)
        if count > len(read):
            self._body.write_into(fd, count - len(read))
