"""Exec create/inspect and path stats on the local socket without docker-py's requests
layer: the same answers and the same errors as docker-py's, kept-alive connections,
a connection the engine dropped while idle, an engine gone or silent."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from django.conf import settings

from core.errors import (
    ContainerGone,
    EngineConflict,
    EngineRefused,
    EngineTimeout,
    EngineUnavailable,
)
from workspaces.runtime.base import LABEL_INSTANCE, ContainerSpec, ExecSpec
from workspaces.runtime.docker import DockerDriver
from workspaces.runtime.docker.archive import STAT_HEADER, parse_stat
from workspaces.runtime.docker.client import api_client
from workspaces.runtime.docker.errors import translated
from workspaces.runtime.docker.exec import DockerExecOutput
from workspaces.runtime.docker.quick import QuickEngine, quick_engine

pytestmark = pytest.mark.docker


@pytest.fixture
def driver(settings: Any) -> DockerDriver:
    # The engine's own exec calls are what is tested here, not runc's beside it.
    settings.DEVBENCH_RUNC_EXECS = False
    return DockerDriver(base_url=settings.DEVBENCH_DOCKER_HOST, timeout_s=30)


@pytest.fixture
def container(driver: DockerDriver) -> Iterator[str]:
    name = f"quick-{uuid.uuid4().hex[:8]}"
    info = driver.create(
        ContainerSpec(
            image="devbench/busybox:latest",
            name=name,
            labels={LABEL_INSTANCE: settings.DEVBENCH_INSTANCE, "devbench.test": name},
            entrypoint=["/bin/sh"],
            command=["-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
            read_only_rootfs=False,  # files made below (the archive API does not see tmpfs)
        )
    )
    driver.start(info.id)
    try:
        yield info.id
    finally:
        driver.remove(info.id)


def test_the_local_engine_takes_the_quick_path_and_tcp_does_not(driver: DockerDriver) -> None:
    assert settings.DEVBENCH_DOCKER_HOST.startswith("unix://")
    assert driver.quick is not None
    assert quick_engine("tcp://127.0.0.1:2376", 30, lambda: "1.41") is None


def test_an_exec_is_created_and_inspected_as_docker_py_does(
    driver: DockerDriver, container: str
) -> None:
    api = api_client(settings.DEVBENCH_DOCKER_HOST, 30)
    spec = ExecSpec(
        cmd=["sh", "-c", 'echo "$A $B"; pwd; id -u; exit 3'],
        env={"A": "x y", "B": "ü=1"},
        workdir="/tmp",
        user="1000",
    )
    exec_id = driver.exec_create(container, spec)
    config = api.exec_inspect(exec_id)
    assert config["ProcessConfig"]["entrypoint"] == "sh"
    assert config["ProcessConfig"]["arguments"] == spec.cmd[1:]
    assert config["ProcessConfig"]["user"] == "1000"
    assert driver.exec_inspect(exec_id).running is False
    output = driver.exec_stream(exec_id)
    try:
        out = b"".join(data for stream, data in output if stream == 1)
    finally:
        output.close()
    assert out == "x y ü=1\n/tmp\n1000\n".encode()
    state = driver.exec_wait(exec_id)
    assert state.exit_code == 3 == api.exec_inspect(exec_id)["ExitCode"]
    assert driver.exec_inspect(exec_id).pid == api.exec_inspect(exec_id)["Pid"]


def test_an_exec_stream_started_here_is_docker_pys_byte_for_byte(
    driver: DockerDriver, container: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both streams, interleaved, a few MiB in writes of every size, binary bytes too.
    script = (
        "i=0; while [ $i -lt 40 ]; do head -c $((i * 7919)) /dev/zero | tr '\\0' $((i % 10)); "
        "echo err$i >&2; printf '\\377\\000'; i=$((i + 1)); done; exit 4"
    )

    def streamed() -> tuple[dict[int, bytes], int | None]:
        exec_id = driver.exec_create(container, ExecSpec(cmd=["sh", "-c", script]))
        output = driver.exec_stream(exec_id)
        try:
            frames = list(output)
        finally:
            output.close()
        by_stream = {n: b"".join(d for s, d in frames if s == n) for n in (1, 2)}
        return by_stream, driver.exec_wait(exec_id).exit_code

    ours, code = streamed()
    assert code == 4 and len(ours[1]) == sum(i * 7919 + 2 for i in range(40))
    assert ours[1].startswith(b"\xff\x00" + b"1" * 7919 + b"\xff\x00" + b"2" * 15838)
    assert ours[2] == b"".join(b"err%d\n" % i for i in range(40))
    monkeypatch.setattr(type(driver), "quick", property(lambda self: None))
    theirs, their_code = streamed()  # docker-py's start and parser, the same program
    assert (theirs, their_code) == (ours, 4)


def test_an_exec_start_refused_is_docker_pys_error_and_keeps_no_connection(
    driver: DockerDriver, container: str
) -> None:
    quick = driver.quick
    assert quick is not None
    quick.close()
    with pytest.raises(ContainerGone):
        driver.exec_stream("0" * 64)  # no such exec: a 404, as docker-py reports it
    output = driver.exec_stream(driver.exec_create(container, ExecSpec(cmd=["echo", "hi"])))
    try:
        assert list(output) == [(1, b"hi\n")]
        # An upgraded connection is its stream's, never pooled (the create's is).
        assert isinstance(output, DockerExecOutput)
        assert quick._idle and all(conn.sock is not output._sock for conn in quick._idle)
    finally:
        output.close()


def test_stats_answer_as_docker_py_does(driver: DockerDriver, container: str) -> None:
    api = api_client(settings.DEVBENCH_DOCKER_HOST, 30)
    for path, kind in (("/etc", "dir"), ("/etc/passwd", "file"), ("/bin/sh", "symlink")):
        ours = driver.path_stat(container, path)
        theirs = api.head(api._url("/containers/{0}/archive", container), params={"path": path})
        assert ours is not None and ours.kind == kind
        assert ours == parse_stat(theirs.headers[STAT_HEADER])
    assert driver.path_stat(container, "/etc/nothing") is None
    with pytest.raises(EngineRefused):  # the engine's 500 for "not a directory", as before
        driver.path_stat(container, "/etc/passwd/under-a-file")
    assert driver.path_stat(container, "/etc/with space & ü?") is None
    odd = "/srv/a dir/with space+plus&and=equals?%20ü #"
    assert (
        driver.exec_collect(
            container,
            ExecSpec(
                cmd=["sh", "-c", 'mkdir -p "${1%/*}" && echo 12345 > "$1"', "-", odd], user="0"
            ),
        )[0]
        == 0
    )
    found = driver.path_stat(container, odd)
    assert found is not None and found.kind == "file" and found.size == 6
    assert driver.path_stat(container, odd.replace(" ", "+")) is None


def test_engine_errors_are_docker_pys(driver: DockerDriver, container: str) -> None:
    with pytest.raises(ContainerGone):
        driver.exec_inspect("0" * 64)  # no such exec: a 404, as docker-py reports it
    with pytest.raises(ContainerGone):
        driver.exec_create("no-such-container-" + uuid.uuid4().hex, ExecSpec(cmd=["true"]))
    with pytest.raises(ContainerGone):
        driver.path_stat("no-such-container-" + uuid.uuid4().hex, "/")
    driver.stop(container, timeout_s=5)
    with pytest.raises(EngineConflict):  # a stopped container runs no exec: 409
        driver.exec_create(container, ExecSpec(cmd=["true"]))


def test_connections_are_kept_alive_and_shared(driver: DockerDriver, container: str) -> None:
    quick = QuickEngine(
        settings.DEVBENCH_DOCKER_HOST[len("unix://") :],
        timeout_s=30,
        version=lambda: str(driver.api.api_version),
    )
    opened: list[int] = []
    real_connect = socket.socket.connect

    def counting(self: socket.socket, address: Any) -> None:
        if self.family == socket.AF_UNIX:
            opened.append(1)
        real_connect(self, address)

    exec_id = driver.exec_create(container, ExecSpec(cmd=["true"]))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", counting)
        for _ in range(20):
            assert quick.json("GET", f"/exec/{exec_id}/json")["ID"] == exec_id
            # A HEAD answer announces no body it would send: the connection stays usable.
            status, headers = quick.head(f"/containers/{container}/archive", {"path": "/etc"})
            assert status == 200 and parse_stat(headers[STAT_HEADER.lower()]).kind == "dir"
        threads = [
            threading.Thread(target=lambda: quick.json("GET", f"/exec/{exec_id}/json"))
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert 1 <= len(opened) <= 5  # one for the 20 in a row; at most one per thread at once
    quick.close()


class _FakeEngine:
    """A local socket that answers each connection's first request (saying it keeps the
    connection) and then drops it, or never answers at all."""

    def __init__(self, path: Path, *, answer: bool) -> None:
        self.accepted = 0
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(8)
        self.answer = answer
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            if not self.answer:
                self.held.append(conn)  # never answered
                continue
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            time.sleep(0.05)
            conn.close()

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()


def test_a_connection_dropped_while_idle_is_replaced(tmp_path: Path) -> None:
    fake = _FakeEngine(tmp_path / "engine.sock", answer=True)
    quick = QuickEngine(str(tmp_path / "engine.sock"), timeout_s=5, version=lambda: "1.41")
    try:
        assert quick.json("GET", "/info") == {}
        time.sleep(0.2)  # the engine has closed the kept connection meanwhile
        assert quick.json("GET", "/info") == {}
        assert fake.accepted == 2
    finally:
        fake.close()


def test_an_engine_gone_or_silent_is_unavailable_or_timed_out(tmp_path: Path) -> None:
    gone = QuickEngine(str(tmp_path / "nothing.sock"), timeout_s=5, version=lambda: "1.41")
    with pytest.raises(EngineUnavailable) as unavailable, translated(engine_url="unix://x"):
        gone.json("GET", "/info")
    assert unavailable.value.code == "engine_unavailable"
    assert "nothing.sock" in str(unavailable.value.__cause__)
    fake = _FakeEngine(tmp_path / "silent.sock", answer=False)
    silent = QuickEngine(str(tmp_path / "silent.sock"), timeout_s=0.3, version=lambda: "1.41")
    try:
        with pytest.raises(EngineTimeout), translated(engine_url="unix://silent.sock"):
            silent.head("/containers/x/archive", {"path": "/"})
    finally:
        fake.close()


def test_a_docker_py_error_and_ours_are_the_same_class() -> None:
    from workspaces.runtime.docker.quick import raise_engine_error

    for status, body, expected in (
        (404, b'{"message": "No such exec instance: x"}', docker.errors.NotFound),
        (409, b'{"message": "container is not running"}', docker.errors.APIError),
        (500, b"not json", docker.errors.APIError),
    ):
        with pytest.raises(expected) as raised:
            raise_engine_error(status, body)
        assert raised.value.status_code == status
        assert (
            raised.value.explanation
            == {
                404: "No such exec instance: x",
                409: "container is not running",
                500: "not json",
            }[status]
        )
