"""Exec operations of the Docker driver against the real engine."""

import threading
import time
import uuid

import pytest
from django.conf import settings

from workspaces.runtime.base import LABEL_INSTANCE, ContainerSpec, ExecSpec
from workspaces.runtime.docker import DockerDriver

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def container():
    driver = DockerDriver(base_url=settings.DEVBENCH_DOCKER_HOST, timeout_s=30)
    name = f"drv-exec-{uuid.uuid4().hex[:8]}"
    info = driver.create(
        ContainerSpec(
            image="devbench/busybox:latest",
            name=name,
            labels={LABEL_INSTANCE: settings.DEVBENCH_INSTANCE},
            entrypoint=["/bin/sh"],
            command=["-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
        )
    )
    driver.start(info.id)
    yield info.id
    driver.remove(info.id)


def test_stream_is_demultiplexed_and_exit_code_recorded(container):
    # A short client timeout: a quiet stream must outlive it.
    driver = DockerDriver(base_url=settings.DEVBENCH_DOCKER_HOST, timeout_s=1)
    exec_id = driver.exec_create(
        container,
        ExecSpec(
            cmd=["sh", "-c", 'echo "out $X"; sleep 2; echo err >&2; exit 5'],
            env={"X": "y"},
            workdir="/tmp",
            user="1000:1000",
        ),
    )
    frames = list(driver.exec_stream(exec_id))
    assert frames == [(1, b"out y\n"), (2, b"err\n")]
    state = driver.exec_wait(exec_id)
    assert (state.running, state.exit_code) == (False, 5) and state.pid > 0


def test_a_program_that_cannot_start_has_no_pid(container):
    driver = DockerDriver(base_url=settings.DEVBENCH_DOCKER_HOST, timeout_s=30)
    code, out, err = driver.exec_collect(container, ExecSpec(cmd=["no-such-program"]))
    # The engine says why on stdout; runc, starting it beside the engine, on stderr.
    assert code in (126, 127) and b"no-such-program" in out + err


def test_close_unblocks_a_waiting_reader(container):
    driver = DockerDriver(base_url=settings.DEVBENCH_DOCKER_HOST, timeout_s=30)
    output = driver.exec_stream(driver.exec_create(container, ExecSpec(cmd=["sleep", "8001"])))
    frames: list[tuple[int, bytes]] = []
    reader = threading.Thread(target=lambda: frames.extend(output))
    reader.start()
    time.sleep(0.2)
    output.close()
    reader.join(timeout=10)
    assert not reader.is_alive() and frames == []  # (the sleep goes with the container)


def test_tty_exec_takes_input_and_resizes(container):
    driver = DockerDriver(base_url=settings.DEVBENCH_DOCKER_HOST, timeout_s=30)
    tty = driver.exec_open_tty(container, ExecSpec(cmd=["/bin/sh"], env={"PS1": "$ "}))
    tty.resize(rows=33, cols=77)
    tty.write(b"stty size; echo d''one\n")
    seen = b""
    while b"done" not in seen:
        seen += tty.read()
    assert b"33 77" in seen
    tty.write(b"exit 4\n")
    while tty.read():
        pass
    assert driver.exec_wait(tty.id).exit_code == 4
    tty.close()
