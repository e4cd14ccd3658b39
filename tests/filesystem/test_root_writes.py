"""A file write's temp file made through the container's root (``file_put.py``): created
as the workspace user with the kernel checking, exactly as the engine's archive put
would leave it (content, mode, owner, times), without the engine's put; every other
archive still goes to the engine, whole; and a body that is not what it announced
leaves no file behind.

The real engine and workspace, through the driver and through a node agent's socket.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest
from django.conf import settings

from core.errors import DevBenchError, EngineRefused
from tests.nodes.agent_checks import TOKEN
from workspaces.filesystem.tario import SizedTar, dir_infos, new_info
from workspaces.runtime import agent, get_driver, wire
from workspaces.runtime.base import LABEL_INSTANCE, EngineCommandFailed
from workspaces.runtime.docker import DockerDriver
from workspaces.runtime.docker.archive import DockerArchive
from workspaces.runtime.remote import RemoteDriver

pytestmark = [pytest.mark.docker, pytest.mark.integration]

USER = "1000:1000"
MiB = 1024 * 1024


def _driver() -> DockerDriver:
    driver = get_driver()
    assert isinstance(driver, DockerDriver)
    return driver


@pytest.fixture
def engine_puts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The directories the engine's archive put is asked to put into from now on."""
    puts: list[str] = []
    real = DockerArchive.archive_put

    def recorded(self: DockerArchive, container_id: str, path: str, data: Any) -> None:
        puts.append(path)
        real(self, container_id, path, data)

    monkeypatch.setattr(DockerArchive, "archive_put", recorded)
    return puts


def _one_file(name: str, data: bytes, **info: Any) -> SizedTar:
    return SizedTar([(new_info(name, size=len(data), **info), data)])


def _holds(env: Any, path: str, data: bytes) -> bool:
    """Whether the file at ``path`` in the workspace holds exactly ``data``."""
    return env.must("sha256sum", path).split()[0].decode() == hashlib.sha256(data).hexdigest()


def _stat(env: Any, path: str) -> list[str]:
    """Mode, owner, group, size and modification time (to the nanosecond) of ``path``."""
    return env.must("stat", "-c", "%a %u %g %s %y", path).decode().split()


def test_a_files_write_needs_no_engine_put(env: Any, wdir: str, engine_puts) -> None:
    driver, cid = _driver(), env.workspace.container_id
    data = os.urandom(3 * MiB + 5)
    tmp, dst = f"{wdir}/.tmp-1", f"{wdir}/f.bin"
    # 0666: the process's umask must not take bits away.
    body = _one_file(".tmp-1", data, mode=0o666, mtime=1700000000.1234567)
    driver.archive_put_then_rename(cid, wdir, body, src=tmp, dst=dst, user=USER)
    assert engine_puts == []
    assert _holds(env, dst, data)
    assert env.must("ls", "-A", wdir).split() == [b"f.bin"]
    # Exactly what the engine's put leaves for the same header (a directory entry first
    # sends this one to the engine).
    entries: list[Any] = [(info, None) for info in dir_infos("", ["sub"])]
    entries.append(
        (new_info("sub/.tmp-2", size=len(data), mode=0o666, mtime=1700000000.1234567), data)
    )
    driver.archive_put_then_rename(
        cid, wdir, SizedTar(entries), src=f"{wdir}/sub/.tmp-2", dst=f"{wdir}/sub/f.bin", user=USER
    )
    assert engine_puts == [wdir]
    ours, engines = _stat(env, dst), _stat(env, f"{wdir}/sub/f.bin")
    assert ours == engines
    assert ours[:4] == ["666", "1000", "1000", str(len(data))]
    assert ".1234567" in ours[5]  # the header's mtime, to its last digit


def test_an_empty_file_and_a_large_files_swap(env: Any, wdir: str, engine_puts) -> None:
    driver, cid = _driver(), env.workspace.container_id
    env.must("sh", "-c", f"echo old > {wdir}/f")
    driver.archive_put_then_rename(
        cid, wdir, _one_file(".e", b""), src=f"{wdir}/.e", dst=f"{wdir}/f", user=USER
    )
    assert env.must("cat", f"{wdir}/f") == b""
    data = os.urandom(9 * MiB)
    driver.archive_put_then_rename(
        cid,
        wdir,
        _one_file(".big", data),
        src=f"{wdir}/.big",
        dst=f"{wdir}/f",
        user=USER,
        large_file=True,
    )
    assert _holds(env, f"{wdir}/f", data)
    assert env.must("ls", "-A", wdir).split() == [b"f"]
    assert engine_puts == []


def test_another_owner_or_an_existing_name_goes_to_the_engine_whole(
    env: Any, wdir: str, engine_puts
) -> None:
    driver, cid = _driver(), env.workspace.container_id
    data = os.urandom(2 * MiB)
    root_owned = new_info(".r", size=len(data))
    root_owned.uid = root_owned.gid = 0
    driver.archive_put(cid, wdir, SizedTar([(root_owned, data)]))  # (as it was)
    engine_puts.clear()
    # The temp name exists already: never opened here, the engine's put replaces it.
    env.must("sh", "-c", f"echo stale > {wdir}/.t")
    driver.archive_put_then_rename(
        cid, wdir, _one_file(".t", data), src=f"{wdir}/.t", dst=f"{wdir}/g", user=USER
    )
    assert engine_puts == [wdir]
    assert _holds(env, f"{wdir}/g", data)
    assert _stat(env, f"{wdir}/.r")[1:3] == ["0", "0"]


def test_a_directory_the_user_may_not_write_refuses_as_before(
    env: Any, wdir: str, engine_puts
) -> None:
    driver, cid = _driver(), env.workspace.container_id
    # (Root in a workspace may not write in the user's directories: the user opens it.)
    env.must("chmod", "777", wdir)
    code, out = env.sh("mkdir", "-m", "755", f"{wdir}/ro", user="0")
    assert code == 0, out
    env.must("chmod", "755", wdir)
    with pytest.raises(EngineCommandFailed) as caught:
        driver.archive_put_then_rename(
            cid,
            f"{wdir}/ro",
            _one_file(".t", b"x"),
            src=f"{wdir}/ro/.t",
            dst=f"{wdir}/ro/f",
            user=USER,
        )
    # The engine (root) could put the temp file; the user's rename could not take it.
    assert engine_puts == [f"{wdir}/ro"]
    assert "Permission denied" in caught.value.message


def test_more_than_the_file_fails_the_write_and_leaves_nothing(
    env: Any, wdir: str, engine_puts
) -> None:
    driver, cid = _driver(), env.workspace.container_id
    env.must("sh", "-c", f"echo kept > {wdir}/f")
    entries: list[Any] = [(new_info(".t", size=3), b"new"), (new_info("other", size=1), b"x")]
    with pytest.raises(EngineRefused):
        driver.archive_put_then_rename(
            cid, wdir, SizedTar(entries), src=f"{wdir}/.t", dst=f"{wdir}/f", user=USER
        )
    assert env.must("ls", "-A", wdir).split() == [b"f"]
    assert env.must("cat", f"{wdir}/f") == b"kept\n"
    assert engine_puts == []


@pytest.fixture
def small_volume() -> Iterator[str]:
    """A running container whose volume at /data holds 1 MiB (a tmpfs the user owns)."""
    client = docker.from_env()
    name = f"devbench-test-small-{uuid.uuid4().hex[:8]}"
    volume = client.volumes.create(
        name,
        driver="local",
        driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m,uid=1000,gid=1000"},
        labels={LABEL_INSTANCE: settings.DEVBENCH_INSTANCE},
    )
    container = client.containers.run(
        "devbench/busybox:latest",
        ["trap 'exit 0' TERM; while :; do sleep 1; done"],
        entrypoint=["/bin/sh", "-c"],
        detach=True,
        network_mode="none",
        volumes={name: {"bind": "/data", "mode": "rw"}},
        labels={LABEL_INSTANCE: settings.DEVBENCH_INSTANCE},
    )
    yield container.id
    container.remove(force=True)
    volume.remove()


def test_a_full_volume_fails_the_write_in_words_and_leaves_nothing(
    small_volume: str, engine_puts
) -> None:
    driver = _driver()
    with pytest.raises(EngineRefused) as caught:
        driver.archive_put_then_rename(
            small_volume,
            "/data",
            _one_file(".t", os.urandom(2 * MiB)),
            src="/data/.t",
            dst="/data/f",
            user=USER,
        )
    assert caught.value.message == "Writing /data/.t failed: No space left on device"
    assert engine_puts == []
    listing = docker.from_env().containers.get(small_volume).exec_run(["ls", "-A", "/data"])
    assert listing.exit_code == 0 and listing.output == b""


class _BrokeOff(Exception):
    pass


def test_a_body_that_breaks_off_leaves_no_file(env: Any, wdir: str) -> None:
    driver, cid = _driver(), env.workspace.container_id
    whole = b"".join(_one_file(".t", os.urandom(4 * MiB)))

    def broken() -> Iterator[bytes]:
        yield whole[: 2 * MiB]
        raise _BrokeOff

    with pytest.raises(_BrokeOff):
        driver.archive_put_then_rename(
            cid, wdir, broken(), src=f"{wdir}/.t", dst=f"{wdir}/f", user=USER
        )
    assert env.must("ls", "-A", wdir).split() == []


# --- through a node agent ---------------------------------------------------------------


@pytest.fixture
def written_into(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte counts the agent moved from its caller's socket into files."""
    counts: list[int] = []
    real = agent._LengthBody.write_into

    def spy(body: agent._LengthBody, fd: int, count: int) -> None:
        counts.append(count)
        real(body, fd, count)

    monkeypatch.setattr(agent._LengthBody, "write_into", spy)
    return counts


def test_through_the_agent_the_body_goes_into_the_file_in_the_kernel(
    env: Any, wdir: str, agent_remote: RemoteDriver, engine_puts, written_into
) -> None:
    cid = env.workspace.container_id
    data = os.urandom(16 * MiB + 3)
    agent_remote.archive_put_then_rename(
        cid, wdir, _one_file(".t", data), src=f"{wdir}/.t", dst=f"{wdir}/f", user=USER
    )
    assert _holds(env, f"{wdir}/f", data)
    assert engine_puts == []
    # All but what the agent had read with the head went through the kernel.
    assert len(written_into) == 1 and 14 * MiB < written_into[0] <= len(data)
    # One the engine must put still goes there whole (what was read put back in front).
    entries: list[Any] = [(info, None) for info in dir_infos("", ["d"])]
    entries.append((new_info("d/.t", size=len(data)), data))
    agent_remote.archive_put_then_rename(
        cid, wdir, SizedTar(entries), src=f"{wdir}/d/.t", dst=f"{wdir}/d/f", user=USER
    )
    assert engine_puts == [wdir]
    assert _holds(env, f"{wdir}/d/f", data)


def test_a_caller_that_leaves_mid_write_leaves_no_file(
    env: Any, wdir: str, agent_remote: RemoteDriver
) -> None:
    cid = env.workspace.container_id
    whole = b"".join(_one_file(".t", os.urandom(8 * MiB)))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(agent_remote.socket_path)
        rename = json.dumps({"src": f"{wdir}/.t", "dst": f"{wdir}/f", "user": USER})
        sock.sendall(
            (
                f"POST {wire.API_PREFIX}archive_put HTTP/1.1\r\nHost: agent\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(whole)}\r\n"
                f"X-Container-Id: {cid}\r\nX-Path: {json.dumps(wdir)}\r\n"
                f"{wire.RENAME_HEADER}: {rename}\r\n\r\n"
            ).encode()
        )
        sock.sendall(whole[: 3 * MiB])  # then gone
    agent_remote.ping()  # the agent serves the next caller, and the temp file is gone
    assert env.must("ls", "-A", wdir).split() == []


def test_a_tar_it_cannot_read_is_the_engines_to_refuse(env: Any, wdir: str, engine_puts) -> None:
    driver, cid = _driver(), env.workspace.container_id
    with pytest.raises(DevBenchError):
        driver.archive_put_then_rename(
            cid, wdir, [b"not a tar" * 100], src=f"{wdir}/.t", dst=f"{wdir}/f", user=USER
        )
    assert engine_puts == [wdir]
