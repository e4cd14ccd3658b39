"""Archives read off the local engine's socket as they arrive (``QuickEngine.stream``):
byte-exact, never held back to fill a read, the engine's errors as docker-py's, the
connection kept after a whole body and dropped after a part of one."""

from __future__ import annotations

import io
import os
import socket
import tarfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from core.errors import ContainerGone, EngineUnavailable
from tests.nodes.agent_checks import tar_of
from tests.workspaces.conftest import idle_busybox, unix_connects
from workspaces.runtime.base import EnginePathNotFound
from workspaces.runtime.docker import DockerDriver
from workspaces.runtime.docker.errors import translated
from workspaces.runtime.docker.quick import QuickEngine

pytestmark = pytest.mark.docker

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def driver() -> DockerDriver:
    return DockerDriver(base_url=settings.DEVBENCH_DOCKER_HOST, timeout_s=30)


@pytest.fixture(scope="module")
def container(driver: DockerDriver) -> Iterator[str]:
    with idle_busybox(driver, "stream") as container_id:
        yield container_id


def test_an_archive_streams_byte_exact_and_keeps_its_connection(
    driver: DockerDriver, container: str
) -> None:
    data = os.urandom(4 * MiB + 3)
    driver.archive_put(container, "/tmp", [tar_of("big.bin", data)])
    assert driver.quick is not None
    with unix_connects() as opened:
        for _ in range(3):
            with driver.archive_get(container, "/tmp/big.bin") as reader:
                assert reader.stat.size == len(data) and reader.stat.kind == "file"
                pieces = []
                while piece := reader.read(MiB):
                    assert len(piece) <= MiB
                    pieces.append(piece)
            with tarfile.open(fileobj=io.BytesIO(b"".join(pieces))) as tar:
                member = tar.extractfile("big.bin")
                assert member is not None and member.read() == data
            assert driver.path_stat(container, "/tmp/big.bin") is not None
    assert len(opened) <= 1  # every archive and stat above on one kept connection


def test_a_reader_closed_mid_body_drops_its_connection(
    driver: DockerDriver, container: str
) -> None:
    driver.archive_put(container, "/tmp", [tar_of("part.bin", os.urandom(8 * MiB))])
    assert driver.quick is not None
    driver.quick.close()  # no idle connection: the archive opens one
    with unix_connects() as opened:
        with driver.archive_get(container, "/tmp/part.bin") as reader:
            assert reader.read(1000)
        # Its rest would spoil the next answer: the next call takes a new connection.
        stat = driver.path_stat(container, "/tmp/part.bin")
    assert stat is not None and stat.size == 8 * MiB
    assert len(opened) == 2


def test_the_engines_refusals_are_its_own_errors(driver: DockerDriver, container: str) -> None:
    with pytest.raises(EnginePathNotFound):
        driver.archive_get(container, "/no/such/file")
    with pytest.raises(ContainerGone):
        driver.archive_get("no-such-container-" + uuid.uuid4().hex, "/")
    with driver.archive_get(container, "/etc/hostname") as reader:  # and the next one works
        assert reader.stat.kind == "file"
        assert reader.read(-1)


class _SlowEngine:
    """Answers one archive request with its head and a first chunk, then waits for
    ``go`` before the rest (or, with ``cut``, closes the connection instead)."""

    def __init__(self, path: Path, *, cut: bool = False) -> None:
        self.go = threading.Event()
        self.cut = cut
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                b"X-Docker-Container-Path-Stat: e30=\r\n\r\n5\r\nfirst\r\n"
            )
            if self.cut:
                return
            self.go.wait(10)
            conn.sendall(b"4\r\nrest\r\n0\r\n\r\n")
            conn.recv(1)  # until the client leaves

    def close(self) -> None:
        self.server.close()


def test_what_has_arrived_is_read_without_waiting_for_more(tmp_path: Path) -> None:
    engine = _SlowEngine(tmp_path / "engine.sock")
    quick = QuickEngine(str(tmp_path / "engine.sock"), timeout_s=10, version=lambda: "1.41")
    try:
        stream = quick.stream("/containers/x/archive", {"path": "/"})
        assert stream.status == 200
        assert stream.read(MiB) == b"first"  # the rest has not been sent yet
        engine.go.set()
        assert stream.read(MiB) == b"rest"
        assert stream.read(MiB) == b""
    finally:
        engine.close()
        quick.close()


def test_a_body_cut_short_is_the_engine_unavailable(tmp_path: Path) -> None:
    engine = _SlowEngine(tmp_path / "engine.sock", cut=True)
    quick = QuickEngine(str(tmp_path / "engine.sock"), timeout_s=10, version=lambda: "1.41")
    try:
        stream = quick.stream("/containers/x/archive", {"path": "/"})
        assert stream.read(MiB) == b"first"
        with pytest.raises(EngineUnavailable), translated(engine_url="unix://engine.sock"):
            stream.read(MiB)
    finally:
        engine.close()
        quick.close()
