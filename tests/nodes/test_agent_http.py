"""The HTTP both ends of a node agent call speak: heads parsed by httptools, answers in
one piece, bad input refused with a status rather than a hang.

The real agent on its Unix socket, spoken to over a raw socket; the caller's side
against small agents made of a listening socket, for the answers a real agent never
gives (cut short, not HTTP) and for one that drops idle connections.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.errors import ContainerGone
from tests.nodes.agent_checks import TOKEN
from workspaces.runtime import wire
from workspaces.runtime.agent import AgentBadRequest, AgentSocketServer, register_follow
from workspaces.runtime.base import ExecSpec
from workspaces.runtime.remote import NodeUnavailable, RemoteDriver

pytestmark = pytest.mark.docker


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    return sock


def _ping(head: str = "") -> bytes:
    body = b"{}"
    return (
        f"POST {wire.API_PREFIX}ping HTTP/1.1\r\nHost: agent\r\n"
        f"authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n{head}\r\n"
    ).encode() + body


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One answer with a Content-Length, read off ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        assert part, f"the agent closed the connection after {data!r}"
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(fields.get("content-length", "0")):
        body += sock.recv(65536)
    return int(status_line.split()[1]), fields, body


def _closed(sock: socket.socket) -> bool:
    return sock.recv(1) == b""


def test_calls_on_one_connection_with_names_in_any_case(socket_agent: AgentSocketServer) -> None:
    with _connect(socket_agent.path) as sock:
        for _ in range(3):  # kept alive between calls
            sock.sendall(_ping())
            status, fields, body = _answer(sock)
            assert status == 200 and json.loads(body) == {"result": None}
            assert fields["content-type"] == "application/json"
        sock.sendall(_ping("Connection: close\r\n"))
        assert _answer(sock)[0] == 200
        assert _closed(sock)  # as asked


def test_a_caller_expecting_100_continue_is_told_to_go_on(
    socket_agent: AgentSocketServer,
) -> None:
    request = _ping("Expect: 100-continue\r\n")
    head, body = request[:-2], request[-2:]
    with _connect(socket_agent.path) as sock:
        sock.sendall(head)  # the head only: the body waits for the go-ahead
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        assert _answer(sock)[0] == 200


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (_ping("Content-Length: 7\r\n"), 400),  # two lengths: which body is it?
        (_ping("X-Long: " + "a" * 70_000 + "\r\n"), 431),
        (_ping("".join(f"X-{n}: {n}\r\n" for n in range(120))), 431),
    ],
    ids=["not-http", "two-lengths", "line-too-long", "too-many-fields"],
)
def test_a_bad_head_is_refused_and_the_connection_closed(
    socket_agent: AgentSocketServer, request_bytes: bytes, status: int
) -> None:
    with _connect(socket_agent.path) as sock:
        sock.sendall(request_bytes)
        assert _answer(sock)[0] == status
        assert _closed(sock)
    with _connect(socket_agent.path) as sock:  # and the agent serves the next caller
        sock.sendall(_ping())
        assert _answer(sock)[0] == 200


def test_a_caller_that_leaves_mid_head_costs_nothing(socket_agent: AgentSocketServer) -> None:
    with _connect(socket_agent.path) as sock:
        sock.sendall(_ping()[:40])
    with _connect(socket_agent.path) as sock:
        sock.sendall(_ping())
        assert _answer(sock)[0] == 200


class _Agent:
    """A listening socket that answers each request with ``answer`` and closes the
    connection after ``per_connection`` of them."""

    def __init__(self, path: Path, answer: bytes, *, per_connection: int) -> None:
        self.path = str(path)
        self.accepted = 0
        self.answer = answer
        self.per_connection = per_connection
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(8)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                for _ in range(self.per_connection):
                    if not conn.recv(65536):
                        break
                    conn.sendall(self.answer)

    def remote(self) -> RemoteDriver:
        return RemoteDriver(
            node="small", url="http://127.0.0.1:9", token=TOKEN, socket_path=self.path
        )


_OK = b'HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n{"result": {}}'


def test_a_connection_the_agent_dropped_while_idle_is_replaced_once(tmp_path: Path) -> None:
    agent = _Agent(tmp_path / "agent.sock", _OK, per_connection=1)
    remote = agent.remote()
    for _ in range(3):
        assert remote.hand_off("work", {}, timeout_s=5) is False
    assert agent.accepted == 3  # each call found its pooled connection dropped


@pytest.mark.parametrize(
    "answer",
    [
        _OK[:-3],  # the connection ends mid-body
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",  # not HTTP
    ],
    ids=["cut-short", "not-http"],
)
def test_an_answer_cut_short_or_not_http_is_node_unavailable(tmp_path: Path, answer: bytes) -> None:
    agent = _Agent(tmp_path / "agent.sock", answer, per_connection=1)
    with pytest.raises(NodeUnavailable):
        agent.remote().ping()
    assert agent.accepted == 1  # never sent twice: the agent may have acted on it


def test_a_shell_the_agent_refuses_raises_its_error(socket_agent: AgentSocketServer) -> None:
    remote = RemoteDriver(
        node="socket-node", url="http://127.0.0.1:9", token=TOKEN, socket_path=socket_agent.path
    )
    # No such container: the agent answers its error instead of a 101, and it is rebuilt.
    with pytest.raises(ContainerGone):
        remote.exec_open_tty("no-such-container", ExecSpec(cmd=["/bin/sh"]))


def test_a_shell_answer_that_is_not_http_is_node_unavailable(tmp_path: Path) -> None:
    agent = _Agent(tmp_path / "agent.sock", b"SSH-2.0-OpenSSH_9.2\r\n\r\n", per_connection=1)
    with pytest.raises(NodeUnavailable):
        agent.remote().exec_open_tty("c", ExecSpec(cmd=["/bin/sh"]))


def test_a_follow_streams_pieces_until_their_end_and_a_caller_may_stop_it(
    socket_agent: AgentSocketServer,
) -> None:
    pieces: list[bytes] = [b"first", b"", b"\x00" * 300_000, b"last"]
    stopped = threading.Event()

    class Pieces:
        def __init__(self, endless: bool) -> None:
            self.endless = endless

        def __iter__(self) -> Iterator[bytes]:
            yield from pieces
            while self.endless and not stopped.wait(0.01):
                yield b""

        def close(self) -> None:
            stopped.set()

    def open_stream(args: dict[str, Any]) -> Pieces | None:
        if args.get("bad"):
            raise ValueError("bad is bad")
        return Pieces(bool(args.get("endless"))) if args.get("here") else None

    register_follow("test-pieces", open_stream)
    remote = RemoteDriver(
        node="socket-node", url="http://127.0.0.1:9", token=TOKEN, socket_path=socket_agent.path
    )
    assert remote.follow("test-pieces", {}) is None  # nothing to follow: the caller's other way
    assert remote.follow("not-registered", {"here": True}) is None
    with pytest.raises(AgentBadRequest):
        remote.follow("test-pieces", {"bad": True})

    followed = remote.follow("test-pieces", {"here": True})
    assert followed is not None
    assert list(followed) == pieces  # every piece as it was, empty ones too, then the end
    assert remote.follow("test-pieces", {}) is None  # the connection served the next call

    endless = remote.follow("test-pieces", {"here": True, "endless": True})
    assert endless is not None
    got = iter(endless)
    assert [next(got) for _ in pieces] == pieces
    threading.Timer(0.2, endless.close).start()  # from another thread, as a watcher leaves
    assert set(got) <= {b""}  # the reads end
    assert stopped.wait(10)  # and the agent's side stopped the stream it served
