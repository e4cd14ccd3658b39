"""Concurrent writers and large files (their own workspaces: these tests commit)."""

from __future__ import annotations

import hashlib
import os
import threading
import tracemalloc
from collections.abc import Iterator

import pytest
from django.db import connection

from core.errors import DevBenchError
from workspaces.filesystem.services import fs_read, fs_read_stream, fs_write

pytestmark = [pytest.mark.docker, pytest.mark.integration]

MiB = 1024 * 1024


def _race(calls: list) -> list:
    """Run the calls at the same moment on separate threads (separate DB sessions)."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = calls[i]()
        except DevBenchError as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_two_writers_with_the_same_etag_exactly_one_wins(running_workspace, actor):
    ws = running_workspace
    path = "/workspace/contended.txt"
    base = fs_write(actor=actor, workspace=ws, path=path, content=b"base")
    for round_no in range(3):
        current = fs_read(actor=actor, workspace=ws, path=path).etag
        contents = [f"writer-a-{round_no}".encode(), f"writer-b-{round_no}".encode()]
        results = _race(
            [
                lambda c=c, current=current: fs_write(
                    actor=actor, workspace=ws, path=path, content=c, if_match_etag=current
                )
                for c in contents
            ]
        )
        winners = [r for r in results if not isinstance(r, DevBenchError)]
        losers = [r for r in results if isinstance(r, DevBenchError)]
        assert len(winners) == 1, results
        assert [e.code for e in losers] == ["precondition_failed"]
        final = fs_read(actor=actor, workspace=ws, path=path)
        assert final.content in contents
        assert final.etag == winners[0].etag
        assert losers[0].extra["current_etag"] == winners[0].etag
    assert base.etag != final.etag


def test_readers_never_see_half_a_file(running_workspace, actor):
    """While a large file is replaced again and again, every read is one whole version."""
    ws = running_workspace
    path = "/workspace/swapped.bin"
    versions = [bytes([v]) * (4 * MiB) for v in range(4)]
    etags = {hashlib.sha256(v).hexdigest() for v in versions}
    fs_write(actor=actor, workspace=ws, path=path, content=versions[0])
    done = threading.Event()
    seen: list[str] = []

    def writer() -> None:
        try:
            for v in versions[1:] * 2:
                fs_write(actor=actor, workspace=ws, path=path, content=v)
        finally:
            done.set()
            connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    while not done.is_set():
        read = fs_read_stream(actor=actor, workspace=ws, path=path)
        digest = hashlib.sha256(b"".join(read.chunks())).hexdigest()
        assert digest == read.etag
        seen.append(digest)
    thread.join()
    assert seen and set(seen) <= etags


def _pattern(total: int) -> Iterator[bytes]:
    block = os.urandom(MiB)
    for i in range(total // MiB):
        yield i.to_bytes(4, "big") + block[4:]


@pytest.mark.slow
def test_a_100_mib_file_round_trips_in_bounded_memory(running_workspace, actor):
    ws = running_workspace
    size = 100 * MiB
    expected = hashlib.sha256()
    chunks = list(_pattern(size))  # the source lives in the test, not in the service
    for c in chunks:
        expected.update(c)
    tracemalloc.start()
    try:
        written = fs_write(
            actor=actor, workspace=ws, path="/workspace/big.bin", content=iter(chunks)
        )
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        stream = fs_read_stream(actor=actor, workspace=ws, path="/workspace/big.bin")
        got = hashlib.sha256()
        count = 0
        for chunk in stream.chunks():
            got.update(chunk)
            count += len(chunk)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert written.size == size and count == size
    assert written.etag == expected.hexdigest() == got.hexdigest() == stream.etag
    # Allocations on top of the source: spool memory (8 MiB) plus a few 1 MiB chunks.
    print(
        f"peak traced allocations: write {write_peak / MiB:.1f} MiB, read {read_peak / MiB:.1f} MiB"
    )
    assert write_peak < 24 * MiB
    assert read_peak < 24 * MiB
