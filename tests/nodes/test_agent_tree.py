"""A directory's entries are read where the engine is: the agent parses the archive and
only names and stats reach the caller, never the files' contents; what the caller gets
is what the engine's own driver reads; a caller that stops early, a stream that breaks
and an agent of an earlier version are each handled.

The real agent on its Unix socket, the real engine and the remote driver; a fake
engine only where a stream must break mid-way.
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.nodes.agent_checks import TOKEN, MiB, agent_in_front_of
from workspaces.filesystem.tarlib import tarfile
from workspaces.runtime import agent, wire
from workspaces.runtime.agent import AgentSocketServer
from workspaces.runtime.base import (
    ArchiveReader,
    EnginePathNotFound,
    PathStat,
    TreeEntries,
    TreeEntry,
)
from workspaces.runtime.docker import DockerDriver
from workspaces.runtime.remote import NodeUnavailable, RemoteDriver
from workspaces.runtime.tree import ArchiveUnreadable, TarEntries

NOT_UTF8 = b"caf\xe9.txt".decode("utf-8", "surrogateescape")
BIG = 8 * MiB


def _remote(path: str) -> RemoteDriver:
    # The URL leads nowhere: every call takes the socket.
    return RemoteDriver(node="tree-node", url="http://127.0.0.1:9", token=TOKEN, socket_path=path)


def _tree_tar(top: str, files: int = 0) -> bytes:
    """``top``/ with a nested directory, an empty one, a symlink, a name that is not
    UTF-8, a big file and ``files`` small ones."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, **extra: Any) -> None:
            info = tarfile.TarInfo(f"{top}/{name}" if name else top)
            info.type, info.size, info.mtime, info.mode = kind, len(data), 1_700_000_000, 0o640
            for key, value in extra.items():
                setattr(info, key, value)
            tar.addfile(info, io.BytesIO(data) if data else None)

        add("", kind=tarfile.DIRTYPE, mode=0o755)
        add("big.bin", b"\x07" * BIG)
        add("empty", kind=tarfile.DIRTYPE, mode=0o700)
        add("link", kind=tarfile.SYMTYPE, linkname="sub/deep.txt")
        add(NOT_UTF8, b"bytes")
        add("sub", kind=tarfile.DIRTYPE, mode=0o755)
        add("sub/deep.txt", b"deep")
        for i in range(files):
            add(f"sub/f{i:05}", b"x" * 10)
    return out.getvalue()


@pytest.fixture(scope="module")
def tree(engine: DockerDriver, container: str) -> str:
    top = f"tree-{uuid.uuid4().hex[:8]}"
    engine.archive_put(container, "/tmp", [_tree_tar(top, files=2000)])
    return f"/tmp/{top}"


def _all(entries: TreeEntries) -> list[TreeEntry]:
    with entries:
        return list(entries)


def test_the_agents_entries_are_the_engines_own(
    engine: DockerDriver, socket_agent: AgentSocketServer, container: str, tree: str
) -> None:
    remote = _remote(socket_agent.path)
    for whole_tree in (False, True):
        local = _all(engine.tree_entries(container, tree, nested=whole_tree))
        assert _all(remote.tree_entries(container, tree, nested=whole_tree)) == local
    with remote.tree_entries(container, tree, nested=False) as entries:
        # The directory's own stat comes with its entries, as the engine's driver reads it.
        assert entries.stat == engine.path_stat(container, tree)
        assert entries.stat.kind == "dir"
    top = _all(remote.tree_entries(container, tree, nested=False))
    by_name = {e.relative: e for e in top}
    assert sorted(by_name) == sorted(["big.bin", "empty", "link", NOT_UTF8, "sub"])
    assert by_name["big.bin"] == TreeEntry("big.bin", "file", BIG, 0o640, 1_700_000_000)
    assert by_name["empty"].kind == "dir" and by_name["empty"].mode == 0o700
    assert by_name["link"].kind == "symlink" and by_name["link"].link == "sub/deep.txt"
    assert by_name[NOT_UTF8].size == 5  # its bytes kept across the wire
    nested = _all(remote.tree_entries(container, tree, nested=True))
    assert len(nested) == 5 + 1 + 2000
    assert nested[-1].relative == "sub/f01999" and nested[-1].size == 10


def test_only_names_and_stats_leave_the_node(
    socket_agent: AgentSocketServer,
    container: str,
    tree: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[int] = []
    real = agent._Handler._write_chunk

    def counted(self: Any, data: bytes) -> None:
        sent.append(len(data))
        real(self, data)

    monkeypatch.setattr(agent._Handler, "_write_chunk", counted)
    assert len(_all(_remote(socket_agent.path).tree_entries(container, tree, nested=False))) == 5
    # The directory's archive is over 8 MiB; the caller got a few hundred bytes.
    assert 0 < sum(sent) < 4096


def test_a_caller_that_stops_early_leaves_the_agent_serving(
    socket_agent: AgentSocketServer, container: str, tree: str
) -> None:
    remote = _remote(socket_agent.path)
    for _ in range(3):
        with remote.tree_entries(container, tree, nested=True) as entries:
            assert next(entries).relative == "big.bin"
    assert len(_all(remote.tree_entries(container, tree, nested=False))) == 5
    stat = remote.path_stat(container, f"{tree}/sub/deep.txt")
    assert stat is not None and stat.size == 4


def test_a_missing_directory_is_the_engines_error(
    socket_agent: AgentSocketServer, container: str
) -> None:
    with pytest.raises(EnginePathNotFound):
        _remote(socket_agent.path).tree_entries(container, "/tmp/no-such-dir", nested=True)


def test_an_agent_without_the_call_gets_the_archive_read_by_the_caller(
    engine: DockerDriver,
    socket_agent: AgentSocketServer,
    container: str,
    tree: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unknown(self: Any, args: dict[str, Any]) -> None:
        self._send_json(404, {"error": {"code": wire.UNKNOWN_METHOD}})

    monkeypatch.setattr(agent._Handler, "_tree_entries", unknown)
    entries = _remote(socket_agent.path).tree_entries(container, tree, nested=False)
    assert isinstance(entries, TarEntries)
    assert _all(entries) == _all(engine.tree_entries(container, tree, nested=False))


# --- a stream that breaks, and what is not a tar --------------------------------------


class _Breaking(TreeEntries):
    """A hundred entries, then the engine's stream fails."""

    def __init__(self) -> None:
        self.stat = PathStat(name="d", kind="dir", size=0, mode=0o755, mtime="")
        self._given = 0
        self.closed = False

    def __next__(self) -> TreeEntry:
        if self._given == 100:
            raise OSError("engine stream reset")
        self._given += 1
        return TreeEntry(f"f{self._given}", "file", 1, 0o644, 0)

    def close(self) -> None:
        self.closed = True


def test_a_stream_that_breaks_mid_way_is_not_taken_for_its_end(tmp_path: Path) -> None:
    broken = _Breaking()
    engine = SimpleNamespace(tree_entries=lambda *args, **kwargs: broken)
    got: list[TreeEntry] = []
    with agent_in_front_of(engine, tmp_path / "sockets") as server:
        entries = _remote(server.path).tree_entries("c", "/d", nested=True)
        with pytest.raises(NodeUnavailable), entries:
            for entry in entries:
                got.append(entry)
    # What arrived before the break was whole; the engine's stream was released.
    assert [e.relative for e in got] == [f"f{i}" for i in range(1, len(got) + 1)]
    assert len(got) < 100 and broken.closed


class _Bytes(ArchiveReader):
    def __init__(self, data: bytes) -> None:
        self.stat = PathStat(name="d", kind="dir", size=0, mode=0o755, mtime="")
        self._data = io.BytesIO(data)
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)

    def close(self) -> None:
        self.closed = True


def test_an_archive_that_is_not_tar_is_an_engine_error() -> None:
    reader = _Bytes(b"this is not a tar archive" * 100)
    with pytest.raises(ArchiveUnreadable) as caught:
        TarEntries(reader, nested=True)
    assert caught.value.code == "engine_error" and reader.closed


def test_entry_lines_grow_and_keep_every_field() -> None:
    entries = [TreeEntry(f"d/{NOT_UTF8}{i}", "file", i, 0o600, 1.5 + i, "") for i in range(1000)]
    lines = list(wire.entry_lines(entries))
    assert [line.count(b"\n") for line in lines] == [1] * len(lines)
    sizes = [len(wire.entries_of_line(line)) for line in lines]
    assert sizes[:5] == [32, 64, 128, 256, 512] and sum(sizes) == 1000
    assert [e for line in lines for e in wire.entries_of_line(line)] == entries
    with pytest.raises(ValueError):
        wire.entries_of_line(b'[["only a name"]]')
