"""The node agent over TLS: the real agent on the real engine, reached by the remote driver.

Only the caller holding the node's pinned certificate and its secret gets in; files,
archives, exec output and the shell all cross the TLS connection byte-exact.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import tarfile
import threading
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.errors import DevBenchError
from tests.nodes.agent_checks import TOKEN, MiB, check_archive_round_trip, check_the_shell, tar_of
from workspaces.filesystem.tario import SizedTar, member_body, new_info, open_stream
from workspaces.runtime import wire
from workspaces.runtime.agent import AgentServer, agent_serve
from workspaces.runtime.agent_tls import (
    agent_certificate_generate,
    agent_client_context,
    agent_server_context,
    certificate_fingerprint,
)
from workspaces.runtime.base import (
    WORKSPACE_USER,
    EnginePathNotFound,
    ExecSpec,
    PathStat,
)
from workspaces.runtime.docker import DockerDriver
from workspaces.runtime.remote import NodeAgentMisconfigured, NodeUnavailable, RemoteDriver

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def agent(engine: DockerDriver) -> Iterator[tuple[AgentServer, str]]:
    cert, key = agent_certificate_generate(node="tls-node")
    server = agent_serve(
        bind="127.0.0.1:0",
        driver=engine,
        token=TOKEN,
        tls=agent_server_context(cert_pem=cert, key_pem=key),
    )
    yield server, cert
    server.shutdown()
    server.server_close()


def _remote(agent: tuple[AgentServer, str], *, token: str = TOKEN, cert: str = "") -> RemoteDriver:
    server, pinned = agent
    return RemoteDriver(node="tls-node", url=server.url, token=token, cert=cert or pinned)


def test_the_agent_speaks_only_tls(agent: tuple[AgentServer, str]) -> None:
    server, _ = agent
    assert server.url.startswith("https://127.0.0.1:")
    host, port = server.server_address[:2]
    with socket.create_connection((str(host), port), timeout=10) as sock:
        sock.sendall(b"POST /v1/ping HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        try:
            answer = sock.recv(4096)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"HTTP/")  # a plain client gets no HTTP: a reset or an alert


def test_a_caller_without_the_secret_is_refused(agent: tuple[AgentServer, str]) -> None:
    with pytest.raises(DevBenchError) as caught:
        _remote(agent, token="wrong").ping()
    assert caught.value.http_status == 401
    _remote(agent).ping()  # the right secret passes


def test_an_agent_without_the_pinned_key_is_refused(agent: tuple[AgentServer, str]) -> None:
    # Another node's certificate (or an impostor's): the handshake fails, nothing is sent.
    other_cert, _ = agent_certificate_generate(node="tls-node")
    with pytest.raises(NodeUnavailable) as caught:
        _remote(agent, cert=other_cert).ping()
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message


def test_a_client_trusting_the_system_store_is_refused(agent: tuple[AgentServer, str]) -> None:
    server, _ = agent
    host, port = server.server_address[:2]
    context = ssl.create_default_context()
    context.check_hostname = False
    with (
        socket.create_connection((str(host), port), timeout=10) as sock,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(sock)


def test_files_and_archives_round_trip_over_tls(
    agent: tuple[AgentServer, str], container: str
) -> None:
    check_archive_round_trip(_remote(agent), container)


def test_a_tar_of_known_length_goes_over_tls_unframed(
    agent: tuple[AgentServer, str], container: str
) -> None:
    remote = _remote(agent)
    data = os.urandom(3 * MiB + 5)  # several pieces on the agent's side
    sized = SizedTar([(new_info("sized.bin", size=len(data)), data)])
    remote.archive_put(container, "/tmp", sized)  # a Content-Length body, no chunks
    with remote.archive_get(container, "/tmp/sized.bin") as reader:
        member, chunks = member_body(reader)
        assert member is not None and member.size == len(data)
        assert b"".join(chunks) == data
    assert remote._pool.qsize() == 1  # the answer left the connection reusable


def test_exec_output_streams_over_tls(agent: tuple[AgentServer, str], container: str) -> None:
    remote = _remote(agent)
    exec_id = remote.exec_create(
        container, ExecSpec(cmd=["sh", "-c", "echo out; echo err >&2; exit 3"])
    )
    # (the engine does not order stdout against stderr)
    assert sorted(remote.exec_stream(exec_id)) == [(1, b"out\n"), (2, b"err\n")]
    assert remote.exec_wait(exec_id).exit_code == 3


def test_exec_streams_share_one_pooled_connection(
    agent: tuple[AgentServer, str], container: str
) -> None:
    server, pinned = agent
    remote = RemoteDriver(node="tls-node", url=server.url, token=TOKEN, cert=pinned, timeout_s=0.5)
    for i in range(3):
        exec_id = remote.exec_create(container, ExecSpec(cmd=["echo", str(i)]))
        assert list(remote.exec_stream(exec_id)) == [(1, f"{i}\n".encode())]
        assert remote.exec_wait(exec_id).exit_code == 0
    assert remote._pool.qsize() == 1  # every exec above went over the same connection

    # Quiet for longer than the driver's call timeout: a stream waits as long as it runs.
    exec_id = remote.exec_create(container, ExecSpec(cmd=["sh", "-c", "sleep 1; echo late"]))
    assert list(remote.exec_stream(exec_id)) == [(1, b"late\n")]
    [pooled] = list(remote._pool.queue)
    assert pooled.sock is not None and pooled.sock.gettimeout() == 0.5  # calls time out again

    # Closed from another thread while quiet: cut, and the next calls still work.
    output = remote.exec_stream(remote.exec_create(container, ExecSpec(cmd=["sleep", "30"])))
    threading.Timer(0.3, output.close).start()
    assert list(output) == []
    done = remote.exec_stream(remote.exec_create(container, ExecSpec(cmd=["echo", "after"])))
    assert list(done) == [(1, b"after\n")]
    done.close()  # after a clean end: leaves the pooled connection alone
    assert remote.path_stat(container, "/tmp") is not None
    assert remote._pool.qsize() == 1


def test_the_shell_works_both_ways_over_tls(agent: tuple[AgentServer, str], container: str) -> None:
    check_the_shell(_remote(agent), container, rows=31, cols=97)


def test_the_shell_carries_both_directions_at_once_over_tls(
    agent: tuple[AgentServer, str], container: str
) -> None:
    """Keystrokes go in while output streams out: each side reads and writes one TLS
    connection from two threads, and no byte is lost, reordered or garbled."""
    payload = base64.b64encode(os.urandom(768 * 1024))  # 1 MiB of text, no control bytes
    tty = _remote(agent).exec_open_tty(
        container, ExecSpec(cmd=["sh", "-c", "stty raw -echo; echo READY; exec cat"])
    )
    try:
        seen = b""
        while b"READY" not in seen:
            chunk = tty.read()
            assert chunk, f"the shell ended early: {seen!r}"
            seen += chunk
        echoed = bytearray(seen.split(b"READY", 1)[1].lstrip(b"\r\n"))

        def type_it() -> None:
            for start in range(0, len(payload), 4096):
                tty.write(payload[start : start + 4096])

        writer = threading.Thread(target=type_it)
        writer.start()
        while len(echoed) < len(payload):
            chunk = tty.read()
            assert chunk, f"the shell ended after {len(echoed)} of {len(payload)} bytes"
            echoed += chunk
        writer.join()
        assert bytes(echoed) == payload
    finally:
        tty.close()


def test_plain_http_only_on_the_loopback(engine: DockerDriver) -> None:
    with pytest.raises(ImproperlyConfigured):
        agent_serve(bind="0.0.0.0:0", driver=engine, token=TOKEN, tls=None)
    with pytest.raises(NodeAgentMisconfigured):
        RemoteDriver(node="n", url="http://10.1.2.3:7400", token=TOKEN)
    with pytest.raises(NodeAgentMisconfigured):
        RemoteDriver(node="n", url="https://10.1.2.3:7400", token=TOKEN)  # no certificate
    server = agent_serve(bind="127.0.0.1:0", driver=engine, token=TOKEN, tls=None)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        RemoteDriver(node="n", url=server.url, token=TOKEN).ping()
    finally:
        server.shutdown()
        server.server_close()


def test_the_client_context_pins_one_certificate() -> None:
    cert, _ = agent_certificate_generate(node="n1")
    context = agent_client_context(cert_pem=cert)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.cert_store_stats()["x509"] == 1  # the pin and nothing else


def test_archive_streams_share_one_pooled_connection(
    agent: tuple[AgentServer, str], container: str
) -> None:
    remote = _remote(agent)
    remote.archive_put(container, "/tmp", [tar_of("small.bin", b"x" * 5000)])
    for _ in range(3):
        with (
            remote.archive_get(container, "/tmp/small.bin") as reader,
            open_stream(reader) as tar,  # stops reading before the last chunk
        ):
            member = tar.next()
            assert member is not None
            body = tar.extractfile(member)
            assert body is not None and body.read() == b"x" * 5000
    assert remote._pool.qsize() == 1  # every call above went over the same connection

    # A reader that stops early and an error answer leave the next calls working.
    big = os.urandom(2 * MiB)
    remote.archive_put(container, "/tmp", [tar_of("big.bin", big)])
    with remote.archive_get(container, "/tmp/big.bin") as reader:
        assert len(reader.read(1000)) == 1000
    with pytest.raises(DevBenchError) as caught:
        remote.archive_get(container, "/tmp/missing.bin")
    assert caught.value.code == EnginePathNotFound.code
    stat = remote.path_stat(container, "/tmp/big.bin")
    assert stat is not None and stat.size == len(big)


def test_the_fingerprint_names_one_certificate() -> None:
    cert, _ = agent_certificate_generate(node="n1")
    other, _ = agent_certificate_generate(node="n1")
    fingerprint = certificate_fingerprint(cert)
    assert len(fingerprint.split(":")) == 32 and fingerprint == fingerprint.upper()
    assert fingerprint == certificate_fingerprint(cert) != certificate_fingerprint(other)


def test_work_handed_off_through_the_agent(
    agent: tuple[AgentServer, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registered work starts on the agent's side; the caller learns whether it was taken,
    a refusal or an unknown name is "not taken", bad arguments are refused, and a worker
    slower than the caller's timeout counts as unreachable (the caller queues instead)."""
    from workspaces.runtime import agent as agent_module

    monkeypatch.setattr(agent_module, "_hand_offs", {})
    taken: list[dict[str, object]] = []
    release = threading.Event()

    def take(args: dict[str, object]) -> bool:
        if "bad" in args:
            raise ValueError("bad must not be given")
        if args.get("slow"):
            release.wait(10)
        taken.append(args)
        return bool(args.get("accept"))

    agent_module.register_hand_off("work", take)
    remote = _remote(agent)
    assert remote.hand_off("work", {"accept": True, "n": 1}, timeout_s=5) is True
    assert remote.hand_off("work", {"accept": False}, timeout_s=5) is False
    assert taken == [{"accept": True, "n": 1}, {"accept": False}]
    with pytest.raises(DevBenchError) as refused:
        remote.hand_off("work", {"bad": 1}, timeout_s=5)
    assert refused.value.code == "agent_bad_request"
    with pytest.raises(DevBenchError):
        remote.hand_off("other", {}, timeout_s=5)
    with pytest.raises(NodeUnavailable):
        remote.hand_off("work", {"slow": True, "accept": True}, timeout_s=0.3)
    release.set()
    # The pool's connections keep their own timeout: a call after the short one works.
    assert remote.hand_off("work", {"accept": True}, timeout_s=5) is True
    assert remote.engine_info().version


def _put_temp(name: str, data: bytes) -> SizedTar:
    return SizedTar([(new_info(name, size=len(data)), data)])


def test_a_put_and_its_rename_are_one_call_to_the_agent(
    agent: tuple[AgentServer, str], container: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = _remote(agent)
    data = os.urandom(MiB + 3)

    def no_second_call(*args: object, **kwargs: object) -> None:
        raise AssertionError("the rename took a call of its own")

    monkeypatch.setattr(remote, "path_rename", no_second_call)
    remote.archive_put_then_rename(
        container,
        "/tmp",
        _put_temp("w1.tmp", data),
        src="/tmp/w1.tmp",
        dst="/tmp/w1.bin",
        user=WORKSPACE_USER,
    )
    assert remote.path_stat(container, "/tmp/w1.tmp") is None
    with remote.archive_get(container, "/tmp/w1.bin") as reader:
        member, chunks = member_body(reader)
        assert member is not None and b"".join(chunks) == data


def test_a_put_carries_the_hint_to_free_a_large_replaced_file_later(
    agent: tuple[AgentServer, str], container: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = agent
    rename = server.driver.path_rename
    hints: list[bool] = []

    def spied(*args: Any, **kwargs: Any) -> None:
        hints.append(kwargs["large_file"])
        rename(*args, **kwargs)

    monkeypatch.setattr(server.driver, "path_rename", spied)
    remote = _remote(agent)
    for free_later, data in ((False, b"first"), (True, b"second")):
        remote.archive_put_then_rename(
            container,
            "/tmp",
            _put_temp("w4.tmp", data),
            src="/tmp/w4.tmp",
            dst="/tmp/w4.bin",
            user=WORKSPACE_USER,
            large_file=free_later,
        )
        with remote.archive_get(container, "/tmp/w4.bin") as reader:
            member, chunks = member_body(reader)
            assert member is not None and b"".join(chunks) == data
    assert hints == [False, True]


def test_a_failed_rename_after_the_put_raises_its_own_error(
    agent: tuple[AgentServer, str], container: str
) -> None:
    remote = _remote(agent)
    blocker = SizedTar([(new_info("busy", type=tarfile.DIRTYPE, mode=0o755), None)])
    remote.archive_put(container, "/tmp", blocker)
    remote.archive_put(container, "/tmp", SizedTar([(new_info("busy/x", size=1), b"x")]))
    with pytest.raises(DevBenchError) as direct:
        remote.path_rename(container, "/tmp/busy/x", "/tmp/busy", user=WORKSPACE_USER)
    with pytest.raises(DevBenchError) as joined:
        remote.archive_put_then_rename(
            container,
            "/tmp",
            _put_temp("w2.tmp", b"data"),
            src="/tmp/w2.tmp",
            dst="/tmp/busy",  # a non-empty directory: mv -T refuses it
            user=WORKSPACE_USER,
        )
    assert type(joined.value) is type(direct.value)
    stat = remote.path_stat(container, "/tmp/w2.tmp")  # the put happened; the caller cleans up
    assert stat is not None and stat.size == 4
    assert remote._pool.qsize() >= 1  # the error answer left the connection reusable


def test_an_agent_that_does_not_rename_gets_a_rename_call(
    agent: tuple[AgentServer, str], container: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workspaces.runtime import agent as agent_module

    # An agent of an earlier version: it ignores the header and answers a plain put.
    monkeypatch.setattr(agent_module._Handler, "_rename_after_put", lambda self: None)
    remote = _remote(agent)
    remote.archive_put_then_rename(
        container,
        "/tmp",
        _put_temp("w3.tmp", b"old agent"),
        src="/tmp/w3.tmp",
        dst="/tmp/w3.bin",
        user=WORKSPACE_USER,
    )
    assert remote.path_stat(container, "/tmp/w3.tmp") is None
    stat = remote.path_stat(container, "/tmp/w3.bin")
    assert stat is not None and stat.size == len(b"old agent")


def _counting_calls(remote: RemoteDriver, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the agent calls ``remote`` makes from now on."""
    calls: list[str] = []
    real_plain = remote._plain

    def plain(method: str, body: bytes, **kwargs: Any) -> bytes:
        calls.append(method)
        return real_plain(method, body, **kwargs)

    monkeypatch.setattr(remote, "_plain", plain)
    return calls


def _kinds(stats: list[PathStat | None]) -> list[str | None]:
    return [stat.kind if stat is not None else None for stat in stats]


def test_a_chain_of_stats_is_one_call_and_stops_where_a_walk_would(
    agent: tuple[AgentServer, str], container: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = _remote(agent)
    tree = SizedTar(
        [
            (new_info("c1", type=tarfile.DIRTYPE, mode=0o755), None),
            (new_info("c1/c2", type=tarfile.DIRTYPE, mode=0o755), None),
            (new_info("c1/c2/f", size=3), b"abc"),
            (new_info("c1/link", type=tarfile.SYMTYPE, linkname="/etc"), None),
        ]
    )
    remote.archive_put(container, "/tmp", tree)
    calls = _counting_calls(remote, monkeypatch)
    deep = ["/tmp/c1", "/tmp/c1/c2", "/tmp/c1/c2/f"]
    stats = remote.path_stat_chain(container, deep)
    assert _kinds(stats) == ["dir", "dir", "file"]
    assert stats[2] is not None and stats[2].size == 3
    assert calls == ["path_stat_chain"]
    # Nothing below a file (the engine would fail), a link (it would follow it) or a
    # missing path is asked for: the answer ends there.
    assert _kinds(remote.path_stat_chain(container, [*deep, "/tmp/c1/c2/f/x"])) == _kinds(stats)
    through_link = ["/tmp/c1", "/tmp/c1/link", "/tmp/c1/link/passwd"]
    assert _kinds(remote.path_stat_chain(container, through_link)) == ["dir", "symlink"]
    missing = ["/tmp/c1", "/tmp/c1/no", "/tmp/c1/no/x"]
    assert _kinds(remote.path_stat_chain(container, missing)) == ["dir", None]
    assert calls == ["path_stat_chain"] * 4


def test_an_agent_without_stat_chains_gets_one_stat_per_path(
    agent: tuple[AgentServer, str], container: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workspaces.runtime import agent as agent_module

    real_call = agent_module._Handler._call

    def earlier_version(handler: Any, method: str) -> None:
        if method != "path_stat_chain":
            real_call(handler, method)
            return
        handler._drain_body()
        handler._send_json(HTTPStatus.NOT_FOUND, {"error": {"code": wire.UNKNOWN_METHOD}})

    monkeypatch.setattr(agent_module._Handler, "_call", earlier_version)
    remote = _remote(agent)
    tree = SizedTar([(new_info("old1", type=tarfile.DIRTYPE, mode=0o755), None)])
    remote.archive_put(container, "/tmp", tree)
    calls = _counting_calls(remote, monkeypatch)
    stats = remote.path_stat_chain(container, ["/tmp/old1", "/tmp/old1/no", "/tmp/old1/no/x"])
    assert _kinds(stats) == ["dir", None]
    assert calls == ["path_stat_chain", "path_stat", "path_stat"]
