"""A download the agent reads (from an engine over TCP, or to a caller over TLS) leaves
it in growing pieces: the caller has the first 64 KiB while the engine is still
producing the rest (a tar's reader starts early), and a large transfer goes on in
whole megabytes.

The real agent on its Unix socket and the real remote driver; the engine's side is an
archive reader that holds its second piece back until told.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nodes.agent_checks import TOKEN, MiB, agent_in_front_of
from workspaces.runtime.agent import AgentSocketServer
from workspaces.runtime.base import ArchiveReader, PathStat
from workspaces.runtime.remote import RemoteDriver

TOTAL = 4 * MiB


class _HeldBackReader(ArchiveReader):
    """TOTAL bytes of ``x``, of which only the first 96 KiB exist until ``go``: a read
    asking for more waits (an engine's stream fills each read). Records the sizes asked."""

    def __init__(self) -> None:
        self.stat = PathStat(name="t", kind="file", size=TOTAL, mode=0o644, mtime="")
        self.asked: list[int] = []
        self.go = threading.Event()
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        self.asked.append(size)
        if self._read + size > 96 * 1024:
            assert self.go.wait(10)
        data = b"x" * min(size, TOTAL - self._read)
        self._read += len(data)
        return data

    def close(self) -> None:
        pass


class _Engine:
    def __init__(self) -> None:
        self.reader = _HeldBackReader()

    def archive_get(self, container_id: str, path: str) -> ArchiveReader:
        return self.reader

    def archive_get_spliceable(self, container_id: str, path: str) -> None:
        return None  # (an engine over TCP: what the agent reads, it forwards)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[AgentSocketServer, _Engine]]:
    engine = _Engine()
    with agent_in_front_of(engine, tmp_path / "sockets") as server:
        yield server, engine
        engine.reader.go.set()


def test_the_first_piece_arrives_before_the_engine_sends_the_rest(
    served: tuple[AgentSocketServer, _Engine],
) -> None:
    server, engine = served
    remote = RemoteDriver(
        node="pieces", url="http://127.0.0.1:9", token=TOKEN, socket_path=server.path
    )
    later = threading.Timer(3.0, engine.reader.go.set)
    later.start()
    with remote.archive_get("c", "/t") as reader:
        first = reader.read(64 * 1024)
        assert first == b"x" * 64 * 1024
        assert not engine.reader.go.is_set()  # it came before the engine had more
        engine.reader.go.set()
        rest = b""
        while data := reader.read(MiB):
            rest += data
    later.cancel()
    assert len(first) + len(rest) == TOTAL
    # 64 KiB, then doubling up to whole megabytes; the last read finds the end.
    assert engine.reader.asked[:6] == [64 * 1024, 128 * 1024, 256 * 1024, 512 * 1024, MiB, MiB]
    assert engine.reader.asked[-1] == MiB
