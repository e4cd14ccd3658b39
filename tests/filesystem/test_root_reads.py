"""A regular file's read through a node agent that reaches the container's root
(``file_get.py``): the engine's archive of it, byte-exact, with the stat the engine
gives, without the engine; anything else is still the engine's answer; and a file that
shrinks mid-read shows the caller a stream that broke.

The real engine, workspace and agent.
"""

from __future__ import annotations

import os
import socket
import tarfile
import tempfile
from typing import Any

import pytest

from workspaces.filesystem.tario import member_body
from workspaces.runtime import get_driver
from workspaces.runtime.base import PathStat
from workspaces.runtime.docker import DockerDriver
from workspaces.runtime.docker.file_get import RootFileArchive
from workspaces.runtime.docker.quick import QuickEngine
from workspaces.runtime.remote import RemoteDriver

pytestmark = [pytest.mark.docker, pytest.mark.integration]

MiB = 1024 * 1024


@pytest.fixture
def engine_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The archive reads the engine answers from now on (their URL paths)."""
    reads: list[str] = []
    real = QuickEngine.get_streamed

    def recorded(self: QuickEngine, path: str, *args: Any, **kwargs: Any) -> Any:
        reads.append(path)
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(QuickEngine, "get_streamed", recorded)
    return reads


def _read(remote: RemoteDriver, cid: str, path: str) -> tuple[tarfile.TarInfo, bytes]:
    with remote.archive_get(cid, path) as reader:
        member, chunks = member_body(reader)
        assert member is not None
        return member, b"".join(chunks)


def test_a_files_read_is_the_engines_archive_without_the_engine(
    env: Any, wdir: str, agent_remote: RemoteDriver, engine_reads: list[str]
) -> None:
    driver, cid = get_driver(), env.workspace.container_id
    assert isinstance(driver, DockerDriver)
    env.must("sh", "-c", f"head -c {5 * MiB + 3} /dev/urandom > {wdir}/f && chmod 640 {wdir}/f")
    expected = env.must("cat", f"{wdir}/f")
    with agent_remote.archive_get(cid, f"{wdir}/f") as reader:
        stat = reader.stat
        member, chunks = member_body(reader)
        assert member is not None and member.isreg() and member.name == "f"
        assert b"".join(chunks) == expected
    assert engine_reads == []
    # The stat the engine itself gives for the path, to the text of its time.
    assert stat == driver.engine_path_stat(cid, f"{wdir}/f")
    assert (member.size, member.mode, member.uid) == (len(expected), 0o640, 1000)
    # Through a link in a parent, resolved in the container's scope as the engine does.
    env.must("ln", "-s", wdir, f"{wdir}/up")
    assert _read(agent_remote, cid, f"{wdir}/up/f")[1] == expected
    assert engine_reads == []


def test_anything_but_a_regular_file_is_the_engines_answer(
    env: Any, wdir: str, agent_remote: RemoteDriver, engine_reads: list[str]
) -> None:
    cid = env.workspace.container_id
    env.must("sh", "-c", f"echo x > {wdir}/f && ln -s f {wdir}/link && mkfifo {wdir}/fifo")
    link, _ = _read(agent_remote, cid, f"{wdir}/link")
    assert link.issym() and link.linkname == "f"
    fifo, _ = _read(agent_remote, cid, f"{wdir}/fifo")  # never opened: no wait for a writer
    assert fifo.isfifo()
    directory, _ = _read(agent_remote, cid, wdir)
    assert directory.isdir()
    assert len(engine_reads) == 3


def test_a_file_that_shrinks_mid_read_ends_the_stream_early() -> None:
    with tempfile.NamedTemporaryFile() as file:
        file.write(b"x" * 1000)
        file.flush()
        # Described as it was when opened, then cut short before it is sent.
        stat = PathStat(name="f", kind="file", size=1000, mode=0o644, mtime="", link_target="")
        archive = RootFileArchive(os.open(file.name, os.O_RDONLY), stat)
        os.truncate(file.name, 400)
        left, right = socket.socketpair()
        with left, right, archive:
            assert archive.send_into(left) is False
            left.shutdown(socket.SHUT_WR)
            received = b"".join(iter(lambda: right.recv(65536), b""))
        assert archive.length is not None and len(received) < archive.length
        assert received.endswith(b"x" * 400)
