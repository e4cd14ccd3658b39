"""Tar streams, spooling and chunked bodies (no engine needed)."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import tarfile
import time
from typing import IO, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import DevBenchError
from workspaces.filesystem import tarlib
from workspaces.filesystem.results import Chunks
from workspaces.filesystem.tario import (
    CHUNK,
    PASS_BYTES,
    SPOOL_MEMORY_BYTES,
    Entry,
    Received,
    SizedTar,
    dir_infos,
    hashed,
    member_body,
    new_info,
    spool,
    tar_stream,
)
from workspaces.runtime.base import body_length


@given(st.lists(st.binary(max_size=3000), min_size=1, max_size=5))
def test_tar_stream_is_a_valid_archive_of_exactly_the_bodies(bodies):
    entries: list[tuple[tarfile.TarInfo, io.BytesIO | None]] = [
        (info, None) for info in dir_infos("", ["d"])
    ]
    for i, body in enumerate(bodies):
        entries.append((new_info(f"d/f{i}", size=len(body), mode=0o640), io.BytesIO(body)))
    data = b"".join(tar_stream(entries))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["d"] + [f"d/f{i}" for i in range(len(bodies))]
        for i, body in enumerate(bodies):
            member = tar.extractfile(f"d/f{i}")
            assert member is not None and member.read() == body
        assert {(m.uid, m.gid) for m in members} == {(1000, 1000)}
        assert members[1].mode == 0o640 and members[0].isdir()


def test_spool_hashes_and_refuses_past_the_limit_without_reading_it_all():
    chunks_read = []

    def source():
        for i in range(100):
            chunks_read.append(i)
            yield b"x" * 1000

    with pytest.raises(DevBenchError) as exc:
        spool(source(), limit=5000)
    assert exc.value.code == "file_too_large" and exc.value.extra["limit_bytes"] == 5000
    assert len(chunks_read) == 6
    body = spool(io.BytesIO(b"y" * (SPOOL_MEMORY_BYTES + 10)), limit=SPOOL_MEMORY_BYTES * 2)
    assert body.size == SPOOL_MEMORY_BYTES + 10
    assert body.sha256 == hashlib.sha256(b"y" * (SPOOL_MEMORY_BYTES + 10)).hexdigest()
    assert body.file.read(3) == b"yyy"
    body.file.close()


def test_chunks_close_the_body_even_if_never_iterated():
    closed = []
    chunks = Chunks(io.BytesIO(b"abc").read, lambda: closed.append(True))
    chunks.close()
    chunks.close()
    assert closed == [True]
    assert list(chunks) == []
    read_all = Chunks(io.BytesIO(b"abc").read, lambda: closed.append(True))
    assert list(read_all) == [b"abc"]
    assert closed == [True, True]


def test_a_sized_tar_is_exactly_as_long_as_its_stream_and_sends_bytes_bodies_uncopied():
    big = os.urandom(2 * CHUNK + 7)  # several slices of one buffer, and a partial block
    entries: list[Entry] = [
        (info, None)
        for info in dir_infos("", ["a", "b" * 120])  # a long name: PAX header
    ]
    entries.append((new_info(f"a/{'b' * 120}/big.bin", size=len(big)), big))
    entries.append((new_info("a/small.txt", size=5), io.BytesIO(b"hello")))
    entries.append((new_info("a/empty", size=0), b""))
    sized = SizedTar(entries)
    pieces = list(sized)
    assert any(isinstance(p, memoryview) and p.obj is big for p in pieces)
    data = b"".join(pieces)
    assert len(sized) == len(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = [m.name for m in tar.getmembers()]
        assert names[-3:] == [f"a/{'b' * 120}/big.bin", "a/small.txt", "a/empty"]
        member = tar.extractfile(names[-3])
        assert member is not None and member.read() == big


def test_a_bytes_body_shorter_than_its_header_is_refused():
    with pytest.raises(OSError):
        b"".join(tar_stream([(new_info("f", size=10), b"123")]))


class _Reader:
    """A tar stream read the way an engine response is, recording what was taken."""

    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def tell(self) -> int:
        return self._file.tell()


@pytest.mark.parametrize("name", ["f.bin", "d" * 150 + ".bin"])  # ustar and PAX headers
def test_member_body_reads_the_body_straight_off_the_stream(name):
    data = os.urandom(CHUNK + 1000)
    reader = _Reader(b"".join(tar_stream([(new_info(name, size=len(data)), data)])))
    member, chunks = member_body(reader)
    assert member is not None and member.name == name and member.size == len(data)
    # tarfile took the header blocks and nothing more: the body is read from the reader.
    assert reader.tell() == member.offset_data
    assert b"".join(chunks) == data


def test_member_body_of_a_cut_stream_fails_and_of_a_directory_has_none():
    data = os.urandom(5000)
    whole = b"".join(tar_stream([(new_info("f", size=len(data)), data)]))
    member, chunks = member_body(_Reader(whole[:3000]))
    with pytest.raises(tarlib.tarfile.ReadError):  # the module the services read with
        b"".join(chunks)
    directory = b"".join(tar_stream([(dir_infos("", ["d"])[0], None)]))
    member, chunks = member_body(_Reader(directory))
    assert member is not None and member.isdir() and list(chunks) == []


def test_hashed_chunks_hash_in_order_and_reused_buffers_are_hashed_at_once():
    chunks = [os.urandom(100_000) for _ in range(20)] + [b"tail"]
    digest = hashlib.sha256()
    assert list(hashed(chunks, digest)) == chunks
    assert digest.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()

    buffer = bytearray(200_000)

    def reused():
        for i in range(5):
            buffer[:] = bytes([i]) * len(buffer)
            yield buffer  # the producer overwrites it for the next chunk

    digest = hashlib.sha256()
    for _ in hashed(reused(), digest):
        pass
    expected = hashlib.sha256(b"".join(bytes([i]) * 200_000 for i in range(5)))
    assert digest.hexdigest() == expected.hexdigest()


def test_spool_keeps_a_bytes_body_as_it_is():
    data = os.urandom(CHUNK + 3)
    body = spool(data, limit=2 * CHUNK)
    assert body.data is data and body.content is data
    assert body.size == len(data) and body.sha256 == hashlib.sha256(data).hexdigest()
    with pytest.raises(DevBenchError) as exc:
        spool(data, limit=CHUNK)
    assert exc.value.code == "file_too_large"


def test_only_bodies_that_know_their_byte_length_are_sent_with_one():
    sized = SizedTar([(new_info("f", size=3), b"abc")])
    assert body_length(sized) == len(b"".join(sized))
    assert body_length(b"abcd") == 4
    # A list or tuple of chunks counts chunks, not bytes; a generator does not know.
    assert body_length([b"abcd", b"ef"]) is None
    assert body_length((b"abcd",)) is None
    assert body_length(iter([b"abcd"])) is None


def test_a_forked_child_hashes_in_its_own_threads():
    data = os.urandom(CHUNK)
    assert spool(data, limit=CHUNK).sha256 == hashlib.sha256(data).hexdigest()  # pool in use
    pid = os.fork()
    if pid == 0:  # the child: without threads of its own the hash would never finish
        ok = spool(data, limit=CHUNK).sha256 == hashlib.sha256(data).hexdigest()
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the child's hash never finished")
    assert os.waitstatus_to_exitcode(done[1]) == 0


def test_an_uploads_receive_pieces_pass_through_the_tar_stream_uncopied():
    # A received body comes in the server's pieces (64-256 KiB): each goes on as it is,
    # and only the small tar pieces (header, padding, end) are joined.
    pieces = [os.urandom(PASS_BYTES), os.urandom(3 * PASS_BYTES), os.urandom(PASS_BYTES + 7)]
    body = io.BytesIO(b"".join(pieces))
    reader = _PieceReader(pieces)
    size = sum(len(p) for p in pieces)
    out = list(tar_stream([(new_info("f", size=size), cast(IO[bytes], reader))]))
    assert [chunk for chunk in out if any(chunk is p for p in pieces)] == pieces
    with tarfile.open(fileobj=io.BytesIO(b"".join(out)), mode="r|") as tar:
        member = tar.next()
        assert member is not None
        extracted = tar.extractfile(member)
        assert extracted is not None and extracted.read() == body.getvalue()


class _PieceReader:
    """Gives its pieces one per read, as a streamed request body does."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = list(pieces)

    def read(self, size: int = -1) -> bytes:
        assert self._pieces and size >= len(self._pieces[0])
        return self._pieces.pop(0)


def test_hashing_a_body_in_many_small_pieces_matches_hashing_it_whole():
    pieces = [os.urandom(n) for n in (1, 70_000, 3, 300_000, 1_500_000, 12)]
    data = b"".join(pieces)
    body = spool(Received(reader=_PieceReader(pieces), size=len(data)), limit=len(data))
    assert b"".join(iter(lambda: body.file.read(CHUNK * 2), b"")) == data
    assert body.sha256 == hashlib.sha256(data).hexdigest()
