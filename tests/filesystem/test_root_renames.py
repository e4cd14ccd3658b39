"""Renames through the container's root (``rootfs.py``, ``as_user.py``): done as the
workspace user with the kernel checking, inside the container, without a process in it,
and handed to the container's own ``mv`` wherever they cannot be done so."""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.processes import wait_for
from workspaces.runtime import get_driver
from workspaces.runtime.base import EngineCommandFailed
from workspaces.runtime.docker import DockerDriver, as_user, helpers
from workspaces.runtime.docker.as_user import thread_as
from workspaces.runtime.docker.rootfs import AskEngine, _ids_are_the_hosts

pytestmark = [pytest.mark.docker, pytest.mark.integration]

USER = "1000:1000"


def _driver() -> DockerDriver:
    driver = get_driver()
    assert isinstance(driver, DockerDriver)
    return driver


@pytest.fixture
def helper_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The commands the helper shells (or one-off execs) are given from now on."""
    calls: list[list[str]] = []
    run = helpers.pool.run

    def recorded(api: Any, engine_url: str, cid: str, argv: list[str], user: str) -> Any:
        calls.append(argv)
        return run(api, engine_url, cid, argv, user)

    monkeypatch.setattr(helpers.pool, "run", recorded)
    return calls


def test_a_rename_needs_no_process_in_the_container(env: Any, wdir: str, helper_calls) -> None:
    driver, cid = _driver(), env.workspace.container_id
    env.must("sh", "-c", f"echo one > {wdir}/a && mkdir {wdir}/sub")
    driver.path_rename(cid, f"{wdir}/a", f"{wdir}/b", user=USER)
    driver.path_rename(cid, f"{wdir}/b", f"{wdir}/sub/c", user=USER)  # across directories
    assert env.must("cat", f"{wdir}/sub/c") == b"one\n"
    assert env.must("ls", "-A", wdir).split() == [b"sub"]
    assert helper_calls == []


def test_a_large_files_rename_swaps_and_leaves_only_the_new_file(
    env: Any, wdir: str, helper_calls
) -> None:
    driver, cid = _driver(), env.workspace.container_id
    env.must("sh", "-c", f"echo old > {wdir}/dst && echo new > {wdir}/src")
    env.must("ln", f"{wdir}/dst", f"{wdir}/kept")  # another name of the old file
    assert driver.roots.rename(cid, f"{wdir}/src", f"{wdir}/dst", user=USER, swap=True)
    assert env.must("cat", f"{wdir}/dst") == b"new\n"
    assert env.must("cat", f"{wdir}/kept") == b"old\n"
    assert sorted(env.must("ls", "-A", wdir).split()) == [b"dst", b"kept"]
    # Onto a symlink the plain rename runs: the link is replaced, its target stays.
    env.must("sh", "-c", f"echo two > {wdir}/src && ln -s kept {wdir}/link")
    assert not driver.roots.rename(cid, f"{wdir}/src", f"{wdir}/link", user=USER, swap=True)
    assert env.must("cat", f"{wdir}/link") == b"two\n"
    assert env.must("cat", f"{wdir}/kept") == b"old\n"
    assert helper_calls == []


def test_the_kernel_checks_the_users_permissions(env: Any, wdir: str, helper_calls) -> None:
    driver, cid = _driver(), env.workspace.container_id
    # A directory of root's that the user may read but not change. (Root in a workspace
    # may not write in the user's directories: it does while the directory is open.)
    env.must("sh", "-c", f"mkdir {wdir}/src && echo x > {wdir}/src/f && chmod 777 {wdir}")
    code, out = env.sh("mkdir", "-m", "755", f"{wdir}/locked", user="0")
    assert code == 0, out
    env.must("chmod", "755", wdir)
    with pytest.raises(AskEngine):
        driver.roots.rename(cid, f"{wdir}/src/f", f"{wdir}/locked/f", user=USER, swap=False)
    # The driver then asks the container's mv, which refuses it in the user's words.
    with pytest.raises(EngineCommandFailed) as exc:
        driver.path_rename(cid, f"{wdir}/src/f", f"{wdir}/locked/f", user=USER)
    assert "Permission denied" in exc.value.message
    assert helper_calls and helper_calls[-1][0] == "mv"
    assert env.must("ls", f"{wdir}/src").split() == [b"f"]
    assert env.must("ls", "-A", f"{wdir}/locked") == b""
    # Root is always the container's own: here it would keep the host's capabilities.
    with pytest.raises(AskEngine):
        driver.roots.rename(cid, f"{wdir}/src/f", f"{wdir}/locked/f", user="0:0", swap=False)


def test_a_process_that_may_not_take_the_users_ids_leaves_it_to_mv(
    env: Any, wdir: str, helper_calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(groups: list[int]) -> None:
        raise PermissionError(1, "Operation not permitted")  # as in a user namespace

    monkeypatch.setattr(as_user, "_set_groups", refused)
    driver, cid = _driver(), env.workspace.container_id
    env.must("sh", "-c", f"echo one > {wdir}/a")
    driver.path_rename(cid, f"{wdir}/a", f"{wdir}/b", user=USER)
    assert env.must("cat", f"{wdir}/b") == b"one\n"
    assert [argv[0] for argv in helper_calls] == ["mv"]


def test_no_link_leads_out_of_the_container(env: Any, wdir: str, helper_calls) -> None:
    driver, cid = _driver(), env.workspace.container_id
    name = f"devbench-{uuid.uuid4().hex[:10]}"
    host_file = f"/tmp/{name}"
    with open(host_file, "w") as out:
        out.write("host\n")
    try:
        # Links to / and through .. above it: the container's root, never the host's.
        env.must("sh", "-c", f"ln -s / {wdir}/top && ln -s ../../../.. {wdir}/up")
        env.must("sh", "-c", f"echo box > /tmp/{name}")
        driver.path_rename(cid, f"{wdir}/top/tmp/{name}", f"{wdir}/up/tmp/{name}.b", user=USER)
        assert env.must("cat", f"/tmp/{name}.b") == b"box\n"
        assert env.sh("test", "-e", f"/tmp/{name}")[0] == 1
        assert Path(host_file).read_text() == "host\n" and not os.path.exists(host_file + ".b")
        assert helper_calls == []
    finally:
        os.unlink(host_file)


def test_a_user_namespaces_ids_are_not_taken_for_the_hosts() -> None:
    assert _ids_are_the_hosts(os.getpid())
    inside = subprocess.Popen(["unshare", "--user", "--map-root-user", "sleep", "30"])
    try:
        uid_map = Path(f"/proc/{inside.pid}/uid_map")
        # (unshare maps root to root alone once it is in its namespace.)
        wait_for(lambda: uid_map.read_text().split() == ["0", "0", "1"], what="the namespace")
        assert not _ids_are_the_hosts(inside.pid)
    finally:
        inside.kill()
        inside.wait()


def test_only_the_thread_acting_as_the_user_loses_roots_rights(tmp_path: Any) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    inside, after = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def as_user() -> None:
        with thread_as(1000, 1000):
            try:
                (private / "user").write_text("x")
            except PermissionError:
                outcome["refused"] = True
            inside.set()
            after.wait(10)
        (private / "back").write_text("x")  # root's rights again
        outcome["restored"] = True

    thread = threading.Thread(target=as_user)
    thread.start()
    assert inside.wait(10)
    (private / "root").write_text("x")  # this thread is still root meanwhile
    after.set()
    thread.join(10)
    assert outcome == {"refused": True, "restored": True}
    assert sorted(p.name for p in private.iterdir()) == ["back", "root"]
