"""Stats through the container's root (``rootfs.py``) answer exactly as the engine does,
stay inside the container, and give way to the engine wherever they cannot."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

import pytest

from workspaces.runtime import get_driver
from workspaces.runtime.base import PathStat
from workspaces.runtime.docker import DockerDriver
from workspaces.runtime.docker.rootfs import (
    AskEngine,
    ContainerRoots,
    FirstProcess,
    engine_time,
    first_process_of,
)

pytestmark = [pytest.mark.docker, pytest.mark.integration]


def _driver() -> DockerDriver:
    driver = get_driver()
    assert isinstance(driver, DockerDriver)
    return driver


def _answer(stat: Any, container_id: str, path: str) -> PathStat | tuple[str, str] | None:
    """A stat's answer, or the class and code of the error it raised."""
    try:
        answer: PathStat | None = stat(container_id, path)
    except Exception as exc:  # compared, not hidden: both sides must raise alike
        return type(exc).__name__, str(getattr(exc, "code", ""))
    return answer


@pytest.fixture
def tree(env: Any, wdir: str) -> str:
    env.must(
        "sh",
        "-c",
        f"cd {wdir} && mkdir -p d/e && echo hi > d/f && ln -s d ld && ln -s {wdir}/d/f abs"
        " && ln -s ../../../../../etc escape && ln -s l2 l1 && ln -s l1 l2"
        " && ln -s missing/../d via && ln -s ld/f chain && ln -s nowhere dangling"
        " && mkfifo fifo && touch d/half d/whole",
    )
    # Times with and without a fraction of a second (set from here: busybox has no way).
    pid = first_process_of(_driver().inspect(env.workspace.container_id).raw).pid
    for name, ns in (("half", 1_700_000_000_500_000_000), ("whole", 1_700_000_000 * 10**9)):
        os.utime(f"/proc/{pid}/root{wdir}/d/{name}", ns=(ns, ns), follow_symlinks=False)
    return wdir


def test_every_answer_inside_the_volume_is_the_engines(env: Any, tree: str) -> None:
    driver, cid = _driver(), env.workspace.container_id
    paths = [
        "/workspace",
        tree,
        *(
            f"{tree}/{name}"
            for name in (
                "d",
                "d/e",
                "d/f",
                "d/half",
                "d/whole",
                "ld",
                "ld/f",
                "ld/../d",
                "abs",
                "escape",
                "l1",
                "via",
                "via/f",
                "chain",
                "dangling",
                "fifo",
                "nope",
                "nope/deeper",
                "d/f/under-a-file",
                "l1/x",
            )
        ),
        f"//{tree}//d",
    ]
    for path in paths:
        assert _answer(driver.path_stat, cid, path) == _answer(
            driver.engine_path_stat, cid, path
        ), path
    # The answers above came from the root wherever the engine had no error to give.
    for name in ("d", "d/f", "d/half", "ld", "ld/f", "abs", "via", "chain", "nope"):
        assert driver.roots.path_stat(cid, f"{tree}/{name}") == driver.engine_path_stat(
            cid, f"{tree}/{name}"
        )
    assert driver.roots.path_stat(cid, f"{tree}/chain").link_target == f"{tree}/d/f"  # type: ignore[union-attr]
    assert driver.roots.path_stat(cid, f"{tree}/d/half").mtime.endswith(".5Z")  # type: ignore[union-attr]
    chain = [tree, f"{tree}/d", f"{tree}/d/f", f"{tree}/d/f/x"]
    assert driver.path_stat_chain(cid, chain) == [
        driver.engine_path_stat(cid, p) for p in chain[:3]
    ]


def test_outside_the_volumes_the_engine_answers(env: Any, tree: str) -> None:
    """The process sees mounts the engine's stat does not (/proc, /dev, the tmpfs at
    /tmp): there the engine answers, so both ways agree."""
    driver, cid = _driver(), env.workspace.container_id
    env.must("sh", "-c", "echo x > /tmp/in-tmpfs")
    for path in ("/", "/etc/passwd", "/tmp", "/tmp/in-tmpfs", "/proc/1", "/dev/null"):
        with pytest.raises(AskEngine):
            driver.roots.path_stat(cid, path)
        assert _answer(driver.path_stat, cid, path) == _answer(driver.engine_path_stat, cid, path)
    assert driver.path_stat(cid, "/tmp/in-tmpfs") is None  # the engine does not see the tmpfs
    for path in (f"{tree}/d/f/", f"{tree}/d/.", f"{tree}/d\x00/f", "workspace"):
        with pytest.raises(AskEngine):  # what the engine reads differently, or refuses
            driver.roots.path_stat(cid, path)
    for path in (f"{tree}/escape", f"{tree}/escape/passwd"):  # leaving the volume on the way
        with pytest.raises(AskEngine):
            driver.roots.path_stat(cid, path)


def test_no_link_leads_out_of_the_container(env: Any, wdir: str, tmp_path: Any) -> None:
    """Even a lookup handed a path through links (as a swap mid-walk would) stays in
    the container's root: the kernel resolves it there."""
    outside = tmp_path / "only-on-the-host"
    outside.write_text("secret")
    env.must("ln", "-s", "../../../../../../..", f"{wdir}/up")
    env.must("ln", "-s", "/", f"{wdir}/top")
    roots = _driver().roots
    with roots._root(env.workspace.container_id) as root:
        for via in ("up", "top"):
            assert root.lstat(f"{wdir}/{via}{outside}") is None
            assert root.lstat(f"{wdir}/{via}/proc/self/root{outside}") is None


def test_a_process_that_is_not_the_containers_is_never_used(env: Any) -> None:
    cid = env.workspace.container_id
    real = first_process_of(_driver().inspect(cid).raw)
    assert real.reachable and real.volumes == ("/workspace",) and real.tmpfs == ("/tmp",)

    ours = ContainerRoots(lambda _: FirstProcess(os.getpid(), "runc", ("/workspace",)))
    with pytest.raises(AskEngine):  # this test's own process: not in the container's cgroup
        ours.path_stat(cid, "/workspace")

    ended = subprocess.Popen(["true"])
    ended.wait()  # its pid is free now, as a restarted container's old one is
    asked: list[str] = []

    def first_process(container_id: str) -> FirstProcess:
        asked.append(container_id)
        pid = ended.pid if len(asked) == 1 else real.pid
        return FirstProcess(pid, "runc", real.volumes, real.tmpfs)

    restarted = ContainerRoots(first_process)
    assert restarted.path_stat(cid, "/workspace") == _driver().engine_path_stat(cid, "/workspace")
    assert asked == [cid, cid]  # asked again once the pid it had was gone
    restarted.path_stat(cid, "/workspace")
    assert len(asked) == 2  # and remembered


def test_other_runtimes_and_stopped_containers_are_the_engines(env: Any) -> None:
    cid = env.workspace.container_id
    real = first_process_of(_driver().inspect(cid).raw)
    for process in (
        FirstProcess(real.pid, "runsc", real.volumes),
        FirstProcess(0, "runc", real.volumes),
        FirstProcess(real.pid, "runc", ()),
    ):
        with pytest.raises(AskEngine):
            ContainerRoots(lambda _, p=process: p).path_stat(cid, "/workspace")  # type: ignore[misc]


def test_file_times_are_written_as_the_engine_writes_them(monkeypatch: Any) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert engine_time(1700000000, 0) == "2023-11-14T22:13:20Z"
        assert engine_time(1700000000, 500_000_000) == "2023-11-14T22:13:20.5Z"
        assert engine_time(1700000000, 123_456_789) == "2023-11-14T22:13:20.123456789Z"
        monkeypatch.setenv("TZ", "Asia/Kolkata")
        time.tzset()
        assert engine_time(1700000000, 10) == "2023-11-15T03:43:20.00000001+05:30"
        monkeypatch.setenv("TZ", "America/New_York")
        time.tzset()
        assert engine_time(1700000000, 0) == "2023-11-14T17:13:20-05:00"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
