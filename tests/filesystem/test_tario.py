"""Tar streams, spooling and chunked bodies (no engine needed)."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import DevBenchError
from workspaces.filesystem.results import Chunks
from workspaces.filesystem.tario import SPOOL_MEMORY_BYTES, dir_infos, new_info, spool, tar_stream


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
