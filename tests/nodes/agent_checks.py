"""What a caller of the node agent must get over any connection (TLS, Unix socket)."""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from workspaces.runtime.agent import AgentSocketServer, agent_serve_socket
from workspaces.runtime.base import ExecSpec, RuntimeDriver
from workspaces.runtime.remote import RemoteDriver

TOKEN = "s3cret-token"
MiB = 1024 * 1024


@contextlib.contextmanager
def agent_in_front_of(engine: object, directory: Path) -> Iterator[AgentSocketServer]:
    """The real agent on a Unix socket in ``directory``, its engine a fake."""
    server = agent_serve_socket(
        directory=str(directory), driver=cast(RuntimeDriver, engine), token=TOKEN
    )
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def tar_of(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def check_archive_round_trip(remote: RemoteDriver, container: str) -> None:
    """3 MiB and a bit up in pieces, stat, back down: byte-exact."""
    data = os.urandom(3 * MiB + 17)
    # A generator body: the upload is streamed in pieces, as the file services send it.
    payload = tar_of("blob.bin", data)
    remote.archive_put(
        container, "/tmp", (payload[i : i + 65536] for i in range(0, len(payload), 65536))
    )
    stat = remote.path_stat(container, "/tmp/blob.bin")
    assert stat is not None and stat.size == len(data)
    with remote.archive_get(container, "/tmp/blob.bin") as reader:
        assert reader.stat.size == len(data)
        raw = b""
        while chunk := reader.read(1 << 20):
            raw += chunk
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        member = tar.extractfile("blob.bin")
        assert member is not None and member.read() == data


def check_the_shell(remote: RemoteDriver, container: str, *, rows: int, cols: int) -> None:
    """A shell resized, typed into, answering, ended by its own exit."""
    tty = remote.exec_open_tty(container, ExecSpec(cmd=["/bin/sh"], env={"PS1": "$ "}))
    try:
        tty.resize(rows=rows, cols=cols)
        tty.write(b"stty size; echo d''one\n")
        seen = b""
        while b"done" not in seen:
            chunk = tty.read()
            assert chunk, f"the shell ended early: {seen!r}"
            seen += chunk
        assert f"{rows} {cols}".encode() in seen
        tty.write(b"exit\n")
        while tty.read():  # the agent ends the stream when the shell exits
            pass
    finally:
        tty.close()
