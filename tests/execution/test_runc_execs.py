"""Execs started with runc beside the engine (``workspaces/runtime/docker/runc_exec.py``):
the process the engine would start — the same user and groups, capabilities, seccomp
filter, no-new-privileges, cgroup, namespaces, limits, environment and directory — its
output and exit status as the engine reports them, a start that fails as the engine's
fails, and the engine still running what runc cannot.

The real engine, runc and workspace; the engine's exec of the same spec is the reference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from core.errors import EngineRefused
from execution.models import Exec
from execution.services import exec_run
from tests.module_workspace import module_workspace
from tests.processes import TEST_INSTANCE
from workspaces.models import Workspace
from workspaces.runtime import get_driver
from workspaces.runtime.base import ExecSpec
from workspaces.runtime.docker import DockerDriver
from workspaces.runtime.docker.runc_exec import RuncContainer, RuncExecs
from workspaces.runtime.docker.runc_starts import (
    CPU_SHARES,
    GROUP_NAME,
    RuncStarts,
    _v1_cpu_cgroup,
    low_weight_group,
)

pytestmark = [pytest.mark.docker, pytest.mark.integration]

# What the kernel says of a process's rights and place, as the process itself sees it.
PROBE = r"""
for k in Uid Gid Groups CapInh CapPrm CapEff CapBnd CapAmb NoNewPrivs Seccomp Seccomp_filters; do
  grep "^$k:" /proc/self/status
done
cat /proc/self/cgroup /proc/self/limits /proc/self/oom_score_adj
echo "nice $(cut -d' ' -f19 /proc/$$/stat)"
for n in cgroup ipc mnt net pid uts user; do echo "$n $(readlink /proc/self/ns/$n)"; done
pwd
env | sort
"""


@pytest.fixture(scope="module")
def workspace(
    django_db_setup: Any, django_db_blocker: Any, celery_worker_process: Any
) -> Iterator[Workspace]:
    with module_workspace(django_db_blocker) as (_, _, spawned):
        yield spawned


@pytest.fixture
def driver() -> DockerDriver:
    found = get_driver()
    assert isinstance(found, DockerDriver)
    return found


def _run(
    driver: DockerDriver, cid: str, spec: ExecSpec
) -> tuple[str, int | None, int, bytes, bytes]:
    """(exec id, exit code, pid, stdout, stderr) of ``spec`` run to its end."""
    exec_id = driver.exec_create(cid, spec)
    out, err = bytearray(), bytearray()
    for stream, data in driver.exec_stream(exec_id):
        (err if stream == 2 else out).extend(data)
    state = driver.exec_wait(exec_id)
    assert not state.running
    return exec_id, state.exit_code, state.pid, bytes(out), bytes(err)


@pytest.mark.parametrize(
    "spec",
    [
        ExecSpec(cmd=["sh", "-c", PROBE]),
        ExecSpec(
            cmd=["sh", "-c", PROBE], user="0:0", workdir="/tmp", env={"A": "1", "HOSTNAME": "h"}
        ),
        ExecSpec(cmd=["/sbin/docker-init", "-s", "--", "sh", "-c", PROBE], env={"HOME": "/h"}),
    ],
    ids=["user", "root-env-cwd", "subreaper"],
)
def test_runc_starts_the_process_the_engine_would(
    workspace: Workspace, driver: DockerDriver, settings: Any, spec: ExecSpec
) -> None:
    cid = workspace.container_id
    runc_id, code, pid, out, err = _run(driver, cid, spec)
    assert runc_id.startswith("runc-") and code == 0 and pid > 0, err
    settings.DEVBENCH_RUNC_EXECS = False
    engine_id, engine_code, _, engine_out, engine_err = _run(driver, cid, spec)
    assert not engine_id.startswith("runc-") and engine_code == 0, engine_err
    assert out.decode().splitlines() == engine_out.decode().splitlines()
    assert (err, engine_err) == (b"", b"")
    # The probe saw a confined process: no capabilities for the user, the filter on.
    status = dict(line.split(":\t", 1) for line in out.decode().splitlines() if ":\t" in line)
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"
    if spec.user != "0:0":
        assert status["Uid"].split()[0] == "1000" and status["CapEff"] == "0000000000000000"


def test_output_and_exit_status_as_the_engine_reports_them(
    workspace: Workspace, driver: DockerDriver
) -> None:
    cid = workspace.container_id
    script = "seq 1 200000; echo to-err >&2; exit 3"
    _, code, _, out, err = _run(driver, cid, ExecSpec(cmd=["sh", "-c", script]))
    assert code == 3
    assert out == "".join(f"{i}\n" for i in range(1, 200001)).encode()
    assert err == b"to-err\n"
    # A signal: 128 + its number.
    assert _run(driver, cid, ExecSpec(cmd=["sh", "-c", "kill -9 $$"]))[1] == 137
    # Binary output, byte-exact, larger than a pipe holds.
    made = "head -c 3000000 /dev/urandom > /tmp/r && cat /tmp/r"
    _, code, _, out, _ = _run(driver, cid, ExecSpec(cmd=["sh", "-c", made]))
    assert code == 0 and len(out) == 3_000_000
    _, _, _, listed, _ = _run(driver, cid, ExecSpec(cmd=["md5sum", "/tmp/r"]))
    assert listed.split()[0].decode() == hashlib.md5(out).hexdigest()  # noqa: S324


@pytest.mark.parametrize(
    ("spec", "code", "reason"),
    [
        (ExecSpec(cmd=["pwd"], workdir="/no/such/dir"), 126, 'chdir to cwd ("/no/such/dir")'),
        (ExecSpec(cmd=["/no-such-program"]), 126, "/no-such-program"),
    ],
    ids=["cwd", "program"],
)
def test_a_start_that_fails_fails_as_the_engines(
    workspace: Workspace,
    driver: DockerDriver,
    settings: Any,
    spec: ExecSpec,
    code: int,
    reason: str,
) -> None:
    cid = workspace.container_id
    exec_id, got, pid, out, err = _run(driver, cid, spec)
    assert exec_id.startswith("runc-")
    assert (got, pid, out) == (code, 0, b"")
    assert reason in err.decode() and "no such file or directory" in err.decode()
    settings.DEVBENCH_RUNC_EXECS = False
    _, engine_code, engine_pid, engine_out, engine_err = _run(driver, cid, spec)
    assert (engine_code, engine_pid) == (code, 0)
    assert reason in (engine_out + engine_err).decode()


def test_a_background_process_does_not_hold_the_output_open(
    workspace: Workspace, driver: DockerDriver
) -> None:
    cid = workspace.container_id
    began = time.monotonic()
    script = "sleep 4711 & echo started"
    _, code, _, out, _ = _run(driver, cid, ExecSpec(cmd=["sh", "-c", script]))
    assert (code, out) == (0, b"started\n")
    assert time.monotonic() - began < 60  # not the sleep's 4711 s
    _run(driver, cid, ExecSpec(cmd=["sh", "-c", "kill $(pidof sleep)"], user="0:0"))


def test_close_stops_a_reader_from_another_thread(
    workspace: Workspace, driver: DockerDriver
) -> None:
    cid = workspace.container_id
    exec_id = driver.exec_create(cid, ExecSpec(cmd=["sh", "-c", "echo up; exec sleep 4712"]))
    output = driver.exec_stream(exec_id)
    got: list[tuple[int, bytes]] = []
    reader = threading.Thread(target=lambda: got.extend(output))
    reader.start()
    deadline = time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    assert got == [(1, b"up\n")]
    output.close()
    reader.join(timeout=30)
    assert not reader.is_alive()
    state = driver.exec_inspect(exec_id)
    assert state.running and state.pid > 0
    os.kill(state.pid, signal.SIGTERM)
    assert driver.exec_wait(exec_id, timeout_s=30).exit_code == 128 + signal.SIGTERM


def test_an_exec_nobody_waits_for_does_not_keep_its_container_from_stopping(
    driver: DockerDriver,
) -> None:
    # An ended exec's process stays a zombie until its status is taken, and its
    # container's first process cannot finish exiting until then.
    container = docker.from_env().containers.run(
        "devbench/busybox:latest",
        ["sleep", "3600"],
        init=True,
        detach=True,
        network_mode="none",
        labels={"devbench.instance": TEST_INSTANCE},
    )
    try:
        exec_id = driver.exec_create(container.id, ExecSpec(cmd=["sleep", "4713"]))
        driver.exec_stream(exec_id).close()  # started, never read, never waited for
        container.kill()
        assert container.wait(timeout=60)["StatusCode"] == 137
        assert driver.exec_wait(exec_id).exit_code == 137
    finally:
        container.remove(force=True)


def test_the_engine_runs_what_runc_does_not(
    workspace: Workspace, driver: DockerDriver, settings: Any
) -> None:
    cid = workspace.container_id
    for user in ("nobody", "1000"):  # looked up in the image by the engine
        assert not driver.exec_create(cid, ExecSpec(cmd=["true"], user=user)).startswith("runc-")
    tty = driver.exec_open_tty(cid, ExecSpec(cmd=["sh"]))
    try:
        assert not tty.id.startswith("runc-")
    finally:
        tty.close()
    settings.DEVBENCH_RUNC_EXECS = False
    assert not driver.exec_create(cid, ExecSpec(cmd=["true"])).startswith("runc-")
    with pytest.raises(Exception, match="No such exec instance"):
        driver.exec_inspect("runc-" + "0" * 32)


def test_an_exec_run_through_the_platform_is_started_by_runc(
    running_workspace: Workspace, actor: Any
) -> None:
    result = exec_run(actor=actor, workspace=running_workspace, cmd=["sh", "-c", "echo hi; exit 4"])
    assert (result.status, result.exit_code, result.stdout) == ("completed", 4, "hi\n")
    assert Exec.objects.get(public_id=result.exec_id).engine_exec_id.startswith("runc-")
    failed = exec_run(actor=actor, workspace=running_workspace, cmd=["pwd"], cwd="/no/such/dir")
    assert (failed.status, failed.error_code) == ("failed", "exec_start_failed")
    assert "chdir" in failed.error


def test_a_runc_that_cannot_run_is_an_engine_error_for_the_caller() -> None:
    missing = RuncContainer(
        container_id="0" * 64,
        pid=1,
        binary="/nonexistent/runc",
        root="/nonexistent",
        systemd_cgroup=False,
        process={"args": ["true"], "env": [], "cwd": "/", "user": {"uid": 0, "gid": 0}},
    )
    execs = RuncExecs()
    exec_id = execs.create(missing, ExecSpec(cmd=["true"]))
    assert exec_id is not None
    with pytest.raises(EngineRefused, match="The exec could not be started: No such file"):
        execs.stream(exec_id)
    with pytest.raises(EngineRefused, match="No such exec instance"):
        execs.state(exec_id)


# A runc that notes where it runs and whether another start overlaps it, then runs runc.
RUNC_WRAPPER = """#!/bin/sh
notes={notes}
grep -E '^[0-9]+:([a-z,]*,)?cpu(,[a-z,]*)?:' /proc/self/cgroup >> "$notes/cgroups"
mkdir "$notes/starting" 2>/dev/null || echo overlap >> "$notes/overlaps"
sleep 0.2
{runc} "$@"
code=$?
rmdir "$notes/starting" 2>/dev/null
exit $code
"""


def _noting_runc(container: RuncContainer, notes: Any) -> RuncContainer:
    wrapper = notes / "runc"
    wrapper.write_text(RUNC_WRAPPER.format(notes=notes, runc=container.binary))
    wrapper.chmod(0o755)
    return dataclasses.replace(container, binary=str(wrapper))


def _start_at_once(execs: RuncExecs, container: RuncContainer, count: int) -> list[bytes]:
    """Start ``count`` execs of ``echo n`` from as many threads at once; their outputs."""
    outputs: list[bytes] = [b""] * count

    def run(n: int) -> None:
        exec_id = execs.create(container, ExecSpec(cmd=["echo", str(n)]))
        assert exec_id is not None
        outputs[n] = b"".join(data for _, data in execs.stream(exec_id))
        assert execs.state(exec_id, wait_s=30).exit_code == 0

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outputs


def test_runc_starts_one_at_a_time_at_a_low_cpu_weight(
    workspace: Workspace, driver: DockerDriver, tmp_path: Any
) -> None:
    container = driver._runc_container(workspace.container_id)
    assert container is not None
    noting = _noting_runc(container, tmp_path)
    outputs = _start_at_once(RuncExecs(RuncStarts(1)), noting, 3)
    assert outputs == [b"0\n", b"1\n", b"2\n"]
    assert not (tmp_path / "overlaps").exists()
    cgroups = (tmp_path / "cgroups").read_text().splitlines()
    assert len(cgroups) == 3
    group = low_weight_group()
    # This machine has the cgroup v1 cpu controller: each runc ran in the low-weight group.
    assert group is not None and group.endswith("/" + GROUP_NAME)
    assert Path(group, "cpu.shares").read_text().strip() == str(CPU_SHARES)
    assert all(line.endswith("/" + GROUP_NAME) for line in cgroups), cgroups
    # Only the start threads moved: the rest of this process stays where it was.
    assert GROUP_NAME not in Path("/proc/self/cgroup").read_text()


def test_more_start_threads_start_execs_side_by_side(
    workspace: Workspace, driver: DockerDriver, tmp_path: Any
) -> None:
    container = driver._runc_container(workspace.container_id)
    assert container is not None
    outputs = _start_at_once(RuncExecs(RuncStarts(3)), _noting_runc(container, tmp_path), 3)
    assert outputs == [b"0\n", b"1\n", b"2\n"]
    assert (tmp_path / "overlaps").exists()


def test_runc_starts_need_a_thread() -> None:
    with pytest.raises(ValueError, match="at least one thread, got 0"):
        RuncStarts(0)


@pytest.mark.parametrize(
    ("proc_cgroup", "mountinfo", "expected"),
    [
        # cpu and cpuacct mounted together; cpuset is not cpu
        (
            "5:cpuset:/x\n4:cpu,cpuacct:/system.slice/w.service\n0::/\n",
            "30 25 0:27 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n"
            "31 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
            "/sys/fs/cgroup/cpu,cpuacct/system.slice/w.service",
        ),
        # the root cgroup
        (
            "3:cpu:/\n",
            "31 25 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n",
            "/sys/fs/cgroup/cpu",
        ),
        # a hierarchy mounted from below its root (a container's view)
        (
            "3:cpu:/docker/abc/inner\n",
            "31 25 0:28 /docker/abc /sys/fs/cgroup/cpu ro - cgroup cgroup rw,cpu\n",
            "/sys/fs/cgroup/cpu/inner",
        ),
        # cgroup v2 only: no v1 cpu hierarchy
        (
            "0::/system.slice/w.service\n",
            "29 24 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            None,
        ),
        # a cpu cgroup but its hierarchy not mounted here
        ("3:cpu:/a\n", "29 24 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", None),
    ],
)
def test_the_cpu_cgroup_of_this_process_is_found_from_proc(
    proc_cgroup: str, mountinfo: str, expected: str | None
) -> None:
    assert _v1_cpu_cgroup(proc_cgroup, mountinfo) == expected
