"""The Docker driver's archive operations, straight against the engine."""

from __future__ import annotations

import pytest

from core.errors import ContainerGone, EngineError
from tests.filesystem.conftest import one_file_tar
from workspaces.filesystem.services import fs_read, fs_write
from workspaces.runtime import get_driver
from workspaces.runtime.base import EngineCommandFailed, EnginePathNotFound

pytestmark = [pytest.mark.docker, pytest.mark.integration]


def test_put_archive_reaches_the_volume_while_the_rootfs_is_read_only(env, wdir):
    driver, cid = get_driver(), env.workspace.container_id
    assert driver.inspect(cid).raw["HostConfig"]["ReadonlyRootfs"] is True
    driver.archive_put(cid, wdir, [one_file_tar("vol.txt", b"on the volume")])
    assert env.must("cat", f"{wdir}/vol.txt") == b"on the volume"
    with pytest.raises(EngineError) as exc:
        driver.archive_put(cid, "/tmp", [one_file_tar("x", b"x")])
    assert "read-only" in exc.value.message
    with pytest.raises(EngineError):
        driver.archive_put(cid, "/etc", [one_file_tar("x", b"x")])


def test_stat_get_and_missing_paths(env, wdir):
    driver, cid = get_driver(), env.workspace.container_id
    env.must("ln", "-s", "target", f"{wdir}/link")
    assert driver.path_stat(cid, f"{wdir}/nope") is None
    link = driver.path_stat(cid, f"{wdir}/link")
    assert link is not None and link.kind == "symlink"
    assert link.link_target == f"{wdir}/target"  # the engine resolves it
    directory = driver.path_stat(cid, wdir)
    assert directory is not None and (directory.kind, directory.mode) == ("dir", 0o755)
    with pytest.raises(EnginePathNotFound):
        driver.archive_get(cid, f"{wdir}/nope")


def test_a_removed_container_is_container_gone():
    driver = get_driver()
    with pytest.raises(ContainerGone):
        driver.path_stat("0" * 64, "/workspace")
    with pytest.raises(ContainerGone):
        driver.archive_get("0" * 64, "/workspace")


def test_fixed_commands_refuse_unsafe_arguments_and_report_missing_tools(env, wdir):
    driver, cid = get_driver(), env.workspace.container_id
    with pytest.raises(ValueError):
        driver.path_rename(cid, "relative", f"{wdir}/x", user="1000:1000")
    with pytest.raises(ValueError):
        driver.path_remove(cid, "/", kind="dir", recursive=True, user="1000:1000")
    with pytest.raises(EngineCommandFailed) as exc:
        driver._run_fixed(cid, ["no-such-tool", "/workspace"], user="1000:1000")  # type: ignore[attr-defined]
    assert exc.value.code == "workspace_tool_missing"
    with pytest.raises(EngineCommandFailed) as exc:
        driver.path_rename(cid, f"{wdir}/missing", f"{wdir}/y", user="1000:1000")
    assert exc.value.code == "fs_command_failed"


def test_files_work_while_the_workspace_is_busy(env, wdir):
    container = __import__("docker").from_env().containers.get(env.workspace.container_id)
    container.exec_run(["sh", "-c", "while :; do :; done"], user="1000:1000", detach=True)
    try:
        fs_write(actor=env.actor, workspace=env.workspace, path=f"{wdir}/busy", content=b"ok")
        assert (
            fs_read(actor=env.actor, workspace=env.workspace, path=f"{wdir}/busy").content == b"ok"
        )
    finally:
        env.sh("pkill", "-f", "while :; do :; done")
