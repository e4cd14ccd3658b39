"""An upload of known length over the agent's Unix socket goes to the engine in the
kernel (``splice.py``): byte-exact, the engine's refusals still its own errors, and a
caller that leaves mid-upload costs the agent nothing.

The real agent on the real engine, reached by the remote driver.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import pytest

from core.errors import ContainerGone, DevBenchError
from tests.nodes.agent_checks import TOKEN, MiB
from workspaces.filesystem.tario import SizedTar, member_body, new_info
from workspaces.runtime import agent, wire
from workspaces.runtime.agent import AgentSocketServer
from workspaces.runtime.base import EnginePathNotFound
from workspaces.runtime.remote import RemoteDriver

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
    remote.archive_put(container, "/tmp", _sized("spliced.bin", data))
    # All but what the agent had read with the request's head went through the kernel.
    assert len(spliced) == 1 and 7 * MiB < spliced[0] <= len(data) + 1024
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
