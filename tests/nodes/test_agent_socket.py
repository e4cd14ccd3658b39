"""The node agent on a Unix socket: callers on the worker's host skip TLS and TCP.

The real agent on the real engine. Calls, archives, exec output and the shell go
over the socket while the agent's URL leads nowhere; a socket this host lacks, one
another user owns or one whose worker is gone sends the caller to the URL.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import DevBenchError
from tests.nodes.agent_checks import TOKEN, check_archive_round_trip, check_the_shell
from workspaces.runtime.agent import (
    AgentServer,
    AgentSocketServer,
    agent_serve,
    agent_socket_sweep,
)
from workspaces.runtime.base import ExecSpec
from workspaces.runtime.docker import DockerDriver
from workspaces.runtime.remote import NodeUnavailable, RemoteDriver

pytestmark = pytest.mark.docker


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens: a call that used it would fail


def _remote(path: str, *, url: str = "", token: str = TOKEN) -> RemoteDriver:
    return RemoteDriver(
        node="socket-node", url=url or _closed_port_url(), token=token, socket_path=path
    )


def test_the_socket_and_its_directory_are_owner_only(socket_agent: AgentSocketServer) -> None:
    info = os.stat(socket_agent.path)
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(socket_agent.path)).st_mode) == 0o700
    socket_agent.shutdown()
    socket_agent.server_close()
    assert not os.path.exists(socket_agent.path)  # a stopped agent leaves no socket


def test_a_caller_without_the_secret_is_refused_on_the_socket(
    socket_agent: AgentSocketServer,
) -> None:
    with pytest.raises(DevBenchError) as caught:
        _remote(socket_agent.path, token="wrong").ping()
    assert caught.value.http_status == 401
    _remote(socket_agent.path).ping()


def test_files_archives_and_exec_output_go_over_the_socket(
    socket_agent: AgentSocketServer, container: str
) -> None:
    remote = _remote(socket_agent.path)
    check_archive_round_trip(remote, container)
    exec_id = remote.exec_create(container, ExecSpec(cmd=["sh", "-c", "echo out; exit 3"]))
    assert list(remote.exec_stream(exec_id)) == [(1, b"out\n")]
    assert remote.exec_wait(exec_id).exit_code == 3
    [pooled] = list(remote._pool.queue)  # every call above on one kept-alive connection
    assert pooled.sock is not None and pooled.sock.family == socket.AF_UNIX


def test_the_shell_works_over_the_socket(socket_agent: AgentSocketServer, container: str) -> None:
    check_the_shell(_remote(socket_agent.path), container, rows=29, cols=91)


@pytest.fixture
def tcp_agent(engine: DockerDriver) -> Iterator[AgentServer]:
    server = agent_serve(bind="127.0.0.1:0", driver=engine, token=TOKEN, tls=None)
    yield server
    server.shutdown()
    server.server_close()


def _assert_it_goes_to_the_url(socket_path: str, url: str) -> None:
    remote = _remote(socket_path, url=url)
    remote.ping()
    [pooled] = list(remote._pool.queue)
    assert pooled.sock is not None and pooled.sock.family == socket.AF_INET


def test_a_socket_this_host_lacks_sends_the_caller_to_the_url(
    tcp_agent: AgentServer, tmp_path: Path
) -> None:
    _assert_it_goes_to_the_url(str(tmp_path / "agent-elsewhere.sock"), tcp_agent.url)


def test_a_socket_whose_worker_is_gone_sends_the_caller_to_the_url(
    tcp_agent: AgentServer, tmp_path: Path
) -> None:
    left_behind = str(tmp_path / "agent-dead.sock")
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(left_behind)  # bound, never listening, its file left: as after a SIGKILL
    _assert_it_goes_to_the_url(left_behind, tcp_agent.url)
    with pytest.raises(NodeUnavailable):  # and with no agent at the URL either: unavailable
        _remote(left_behind).ping()


def test_a_socket_another_user_owns_is_not_used(
    socket_agent: AgentSocketServer, tcp_agent: AgentServer
) -> None:
    # Whoever owns the socket bound it: a process of another user could be listening
    # there to collect the node's secret. (The test runs as root, who could connect.)
    os.chown(socket_agent.path, 65534, 65534)
    with pytest.raises(NodeUnavailable):
        _remote(socket_agent.path).ping()
    _assert_it_goes_to_the_url(socket_agent.path, tcp_agent.url)


def test_the_sweep_removes_only_sockets_nobody_serves(
    socket_agent: AgentSocketServer, tmp_path: Path
) -> None:
    directory = os.path.dirname(socket_agent.path)
    dead = os.path.join(directory, "agent-dead.sock")
    with socket.socket(socket.AF_UNIX) as gone:
        gone.bind(dead)
    not_a_socket = os.path.join(directory, "agent-notes.sock")
    Path(not_a_socket).write_text("not a socket")
    not_ours = os.path.join(directory, "other.sock")
    with socket.socket(socket.AF_UNIX) as someone_elses:
        someone_elses.bind(not_ours)
    agent_socket_sweep(directory)
    assert not os.path.exists(dead)
    assert os.path.exists(socket_agent.path)
    assert os.path.exists(not_a_socket) and os.path.exists(not_ours)
    _remote(socket_agent.path).ping()  # the live agent still answers
