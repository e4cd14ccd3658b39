"""An upload of known length over the agent's Unix socket goes to the engine in the
kernel (``splice.py``), and a download comes back the same way: byte-exact, the
engine's refusals still its own errors, a caller that leaves mid-way costs the agent
nothing, and an engine stream cut short is a broken stream for the caller.

The real agent on the real engine, reached by the remote driver.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import threading
import time
from typing import Any

import pytest

from core.errors import ContainerGone, DevBenchError
from tests.nodes.agent_checks import TOKEN, MiB
from workspaces.filesystem.tario import SizedTar, member_body, new_info
from workspaces.runtime import agent, wire
from workspaces.runtime.agent import AgentSocketServer
from workspaces.runtime.base import EnginePathNotFound
from workspaces.runtime.docker import DockerDriver, archive
from workspaces.runtime.docker.quick import StreamedAnswer
from workspaces.runtime.remote import NodeUnavailable, RemoteDriver

pytestmark = pytest.mark.docker


def _remote(server: AgentSocketServer) -> RemoteDriver:
    # The URL leads nowhere: every call takes the socket.
    return RemoteDriver(
        node="splice-node", url="http://127.0.0.1:9", token=TOKEN, socket_path=server.path
    )


@pytest.fixture
def spliced(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The lengths the agent handed to the kernel, one per upload."""
    lengths: list[int] = []
    real = agent.splice_between

    def spy(src: socket.socket, dst: socket.socket, length: int, **kwargs: Any) -> None:
        lengths.append(length)
        real(src, dst, length, **kwargs)

    monkeypatch.setattr(agent, "splice_between", spy)
    return lengths


def _sized(name: str, data: bytes) -> SizedTar:
    return SizedTar([(new_info(name, size=len(data)), data)])


def test_a_sized_upload_is_spliced_byte_exact(
    socket_agent: AgentSocketServer, container: str, spliced: list[int]
) -> None:
    remote = _remote(socket_agent)
    data = os.urandom(8 * MiB + 7)
    body = _sized("spliced.bin", data)
    remote.archive_put(container, "/tmp", body)
    # All but what the agent had read with the request's head went through the kernel.
    assert len(spliced) == 1 and 7 * MiB < spliced[0] <= len(body)
    with remote.archive_get(container, "/tmp/spliced.bin") as reader:
        member, chunks = member_body(reader)
        assert member is not None and member.size == len(data)
        assert b"".join(chunks) == data
    # A small one may be whole with the head: then nothing is left to splice.
    remote.archive_put(container, "/tmp", _sized("small.txt", b"small"))
    stat = remote.path_stat(container, "/tmp/small.txt")
    assert stat is not None and stat.size == 5


def test_a_refused_upload_is_the_engines_error_and_the_agent_serves_on(
    socket_agent: AgentSocketServer, container: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent_into: list[socket.socket] = []
    real = agent._LengthBody.send_into

    def spy(body: agent._LengthBody, sock: socket.socket) -> None:
        sent_into.append(sock)
        real(body, sock)

    monkeypatch.setattr(agent._LengthBody, "send_into", spy)
    remote = _remote(socket_agent)
    big = _sized("refused.bin", os.urandom(16 * MiB))
    with pytest.raises(DevBenchError) as caught:
        remote.archive_put(container, "/no/such/directory", big)
    assert caught.value.code == EnginePathNotFound.code
    with pytest.raises(ContainerGone):
        remote.archive_put("no-such-container", "/tmp", _sized("gone.bin", os.urandom(16 * MiB)))
    # Both went the kernel's way (the engine may refuse before the splice begins).
    assert len(sent_into) == 2
    # The agent read the rest of each refused body, so the caller's connection and the
    # agent stay usable.
    remote.archive_put(container, "/tmp", _sized("after.bin", b"after"))
    with remote.archive_get(container, "/tmp/after.bin") as reader:
        member, chunks = member_body(reader)
        assert member is not None and b"".join(chunks) == b"after"


def test_a_caller_that_leaves_mid_upload_costs_the_agent_nothing(
    socket_agent: AgentSocketServer, container: str, spliced: list[int]
) -> None:
    length = 32 * MiB
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(socket_agent.path)
        sock.sendall(
            (
                f"POST {wire.API_PREFIX}archive_put HTTP/1.1\r\nHost: agent\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Length: {length}\r\n"
                f"X-Container-Id: {container}\r\nX-Path: {json.dumps('/tmp')}\r\n\r\n"
            ).encode()
        )
        sock.sendall(b"\0" * (2 * MiB))  # a tenth of it, then gone
    remote = _remote(socket_agent)
    remote.ping()  # the agent serves the next caller
    remote.archive_put(container, "/tmp", _sized("later.bin", b"later"))
    stat = remote.path_stat(container, "/tmp/later.bin")
    assert stat is not None and stat.size == 5
    assert spliced[0] > length - 2 * MiB  # it was on the kernel's path when the caller left


# --- downloads ------------------------------------------------------------------------


@pytest.fixture
def spliced_out(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """The lengths the engine's archive answers were spliced with (None: to their end)."""
    lengths: list[int | None] = []
    real = archive.splice_between

    def spy(src: socket.socket, dst: socket.socket, length: int | None, **kwargs: Any) -> None:
        lengths.append(length)
        real(src, dst, length, **kwargs)

    monkeypatch.setattr(archive, "splice_between", spy)
    return lengths


def _agent_threads() -> int:
    return sum(1 for t in threading.enumerate() if "process_request_thread" in t.name)


def test_a_download_is_spliced_byte_exact_in_the_engines_framing(
    engine: DockerDriver,
    socket_agent: AgentSocketServer,
    container: str,
    spliced_out: list[int | None],
) -> None:
    data = os.urandom(8 * MiB + 7)
    engine.archive_put(container, "/tmp", _sized("down.bin", data))
    remote = _remote(socket_agent)
    for _ in range(2):  # (each on a connection of its own: it ends with the answer)
        with remote.archive_get(container, "/tmp/down.bin") as reader:
            assert reader.stat.size == len(data) and reader.stat.kind == "file"
            member, chunks = member_body(reader)
            assert member is not None and b"".join(chunks) == data
    # A small one comes with a Content-Length (the big one's chunks): passed on as it came.
    engine.archive_put(container, "/tmp", _sized("tiny.txt", b"tiny"))
    assert remote._pool.qsize() == 0  # a chunked answer ended its connection
    with remote.archive_get(container, "/tmp/tiny.txt") as reader:
        member, chunks = member_body(reader)
        assert member is not None and b"".join(chunks) == b"tiny"
    assert remote._pool.qsize() == 1  # one of a stated length left it open
    assert spliced_out[:2] == [None, None] and spliced_out[2] is not None
    stat = remote.path_stat(container, "/tmp/down.bin")  # plain calls go on
    assert stat is not None and stat.size == len(data)


def test_a_read_stopped_early_leaves_no_agent_thread_behind(
    engine: DockerDriver, socket_agent: AgentSocketServer, container: str
) -> None:
    engine.archive_put(container, "/tmp", _sized("early.bin", os.urandom(32 * MiB)))
    remote = _remote(socket_agent)
    before = _agent_threads()
    for _ in range(3):
        with remote.archive_get(container, "/tmp/early.bin") as reader:
            assert len(reader.read(64 * 1024)) == 64 * 1024
    deadline = time.monotonic() + 10
    while _agent_threads() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _agent_threads() <= before  # each splice ended when its caller left
    stat = remote.path_stat(container, "/tmp/early.bin")
    assert stat is not None and stat.size == 32 * MiB


def test_a_refused_download_is_the_engines_error(
    socket_agent: AgentSocketServer, container: str, spliced_out: list[int | None]
) -> None:
    remote = _remote(socket_agent)
    with pytest.raises(EnginePathNotFound):
        remote.archive_get(container, "/tmp/no-such-file")
    with pytest.raises(ContainerGone):
        remote.archive_get("no-such-container", "/tmp")
    assert spliced_out == []
    remote.ping()


def _go_stat(size: int) -> str:
    stat = {"name": "cut.bin", "size": size, "mode": 0o644, "mtime": "", "linkTarget": ""}
    return base64.b64encode(json.dumps(stat).encode()).decode()


@pytest.mark.parametrize(
    ("framing", "sent"),
    [
        ({"content-length": "4096"}, b"x" * 1000),
        ({"transfer-encoding": "chunked"}, b"400\r\n" + b"x" * 1024 + b"\r\n"),
    ],
)
def test_an_engine_stream_cut_short_is_a_broken_stream_for_the_caller(
    engine: DockerDriver,
    socket_agent: AgentSocketServer,
    monkeypatch: pytest.MonkeyPatch,
    framing: dict[str, str],
    sent: bytes,
) -> None:
    """The engine goes away mid-answer: the agent, which never reads the body, ends
    where the engine did, and the caller knows by the framing."""
    theirs, ours = socket.socketpair()
    conn = http.client.HTTPConnection("localhost")
    conn.sock = ours
    headers = {**framing, archive.STAT_HEADER.lower(): _go_stat(4096)}
    answer = StreamedAnswer(status=200, headers=headers, received=sent[:10], conn=conn)
    theirs.sendall(sent[10:])
    theirs.close()
    monkeypatch.setattr(
        engine,
        "archive_get_spliceable",
        lambda container_id, path: archive._SplicedArchive(answer),
    )
    remote = _remote(socket_agent)
    with pytest.raises(NodeUnavailable), remote.archive_get("c", "/cut.bin") as reader:
        assert reader.stat.size == 4096
        while reader.read(MiB):
            pass
    remote.ping()
