"""The helper shells that run renames and removals in a container (runtime/docker/helpers.py),
straight against the engine."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from tests.processes import wait_for
from workspaces.runtime import get_driver
from workspaces.runtime.base import EngineCommandFailed
from workspaces.runtime.docker import helpers
from workspaces.runtime.docker.rootfs import AskEngine, ContainerRoots

pytestmark = [pytest.mark.docker, pytest.mark.integration]

USER = "1000:1000"


def _helper_pids(env: Any) -> list[str]:
    """The helper shells running in the workspace (their command line names the loop)."""
    lines = env.must("ps", "-o", "pid,args").decode().splitlines()
    return [line.split()[0] for line in lines if "IFS= read -r n" in line]


@pytest.fixture(autouse=True)
def renames_in_the_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Renames go through the container's root when this process can reach it
    (test_root_renames.py): here they take the helper shells this module is about."""

    def ask_engine(*args: Any, **kwargs: Any) -> bool:
        raise AskEngine

    monkeypatch.setattr(ContainerRoots, "rename", ask_engine)


@pytest.fixture
def fresh_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[helpers.HelperPool]:
    pool = helpers.HelperPool()
    monkeypatch.setattr(helpers, "pool", pool)
    yield pool
    pool.close_all()


def test_renames_reuse_one_shell_and_take_words_as_data(env, wdir, fresh_pool):
    driver, cid = get_driver(), env.workspace.container_id
    env.must("touch", f"{wdir}/a")
    driver.path_rename(cid, f"{wdir}/a", f"{wdir}/b", user=USER)
    [pid] = _helper_pids(env)
    # Words a shell would expand, split or run arrive as they are.
    odd = f"{wdir}/$(echo x) * \\n 'q\" ;x `id` -f"
    driver.path_rename(cid, f"{wdir}/b", odd, user=USER)
    assert env.must("ls", wdir).decode().splitlines() == [odd.rsplit("/", 1)[1]]
    assert _helper_pids(env) == [pid]  # the same shell answered both
    assert fresh_pool.idle_count(cid) == 1


def test_failures_keep_their_exit_code_and_message(env, wdir, fresh_pool):
    driver, cid = get_driver(), env.workspace.container_id
    with pytest.raises(EngineCommandFailed) as exc:
        driver.path_rename(cid, f"{wdir}/missing", f"{wdir}/y", user=USER)
    assert exc.value.code == "fs_command_failed"
    assert "missing" in exc.value.message and exc.value.extra["exit_code"] == 1
    with pytest.raises(EngineCommandFailed) as exc:
        driver._run_fixed(cid, ["no-such-tool", "/workspace"], user=USER)  # type: ignore[attr-defined]
    assert exc.value.code == "workspace_tool_missing"
    # Output that is not ASCII (a shell may count its characters, not its bytes) and a
    # command that prints nothing end where the answer says, and the next one still fits.
    with pytest.raises(EngineCommandFailed) as exc:
        driver.path_rename(cid, f"{wdir}/é-ü-missing", f"{wdir}/y", user=USER)
    assert "é-ü-missing" in exc.value.message
    # The shell survived all three and still answers.
    env.must("touch", f"{wdir}/c")
    driver.path_remove(cid, f"{wdir}/c", kind="file", recursive=False, user=USER)
    assert env.sh("test", "-e", f"{wdir}/c")[0] == 1
    assert len(_helper_pids(env)) == 1


def test_a_helper_killed_in_the_workspace_is_replaced(env, wdir, fresh_pool):
    driver, cid = get_driver(), env.workspace.container_id
    env.must("touch", f"{wdir}/a")
    driver.path_rename(cid, f"{wdir}/a", f"{wdir}/b", user=USER)
    [old] = _helper_pids(env)
    env.must("kill", "-9", old)
    wait_for(lambda: not _helper_pids(env), what="the helper to end")
    driver.path_rename(cid, f"{wdir}/b", f"{wdir}/c", user=USER)
    assert env.sh("test", "-e", f"{wdir}/c")[0] == 0
    new = _helper_pids(env)
    assert len(new) == 1 and new != [old]


def test_a_large_files_rename_in_the_helper_is_the_plain_mv(env, wdir, fresh_pool, monkeypatch):
    # Where the container's root cannot be reached, a large file's write is renamed by
    # the container's mv, over the old file: only the new file is left.
    commands: list[list[str]] = []
    run = fresh_pool.run

    def recorded(api: Any, url: str, cid: str, argv: list[str], user: str) -> Any:
        commands.append(argv)
        return run(api, url, cid, argv, user)

    monkeypatch.setattr(fresh_pool, "run", recorded)
    driver, cid = get_driver(), env.workspace.container_id
    env.must("sh", "-c", f"echo old > {wdir}/dst; echo new > {wdir}/src")
    driver.path_rename(cid, f"{wdir}/src", f"{wdir}/dst", user=USER, large_file=True)
    assert commands == [["mv", "-f", "-T", "--", f"{wdir}/src", f"{wdir}/dst"]]
    assert env.must("cat", f"{wdir}/dst") == b"new\n"
    assert env.must("ls", "-A", wdir).split() == [b"dst"]


def test_a_word_with_a_newline_takes_a_one_off_exec(env, wdir, fresh_pool):
    driver, cid = get_driver(), env.workspace.container_id
    env.must("touch", f"{wdir}/a\nb")
    driver.path_rename(cid, f"{wdir}/a\nb", f"{wdir}/c\nd", user=USER)
    assert driver.path_stat(cid, f"{wdir}/c\nd") is not None
    assert driver.path_stat(cid, f"{wdir}/a\nb") is None
    assert not _helper_pids(env) and fresh_pool.idle_count(cid) == 0


def test_concurrent_commands_each_get_a_shell_and_few_stay(env, wdir, fresh_pool):
    driver, cid = get_driver(), env.workspace.container_id
    env.must("sh", "-c", f"for i in 0 1 2 3 4 5 6 7; do touch {wdir}/f$i; done")
    errors: list[BaseException] = []

    def rename(i: int) -> None:
        try:
            for round_ in range(5):
                src = f"{wdir}/f{i}" if round_ == 0 else f"{wdir}/g{i}-{round_ - 1}"
                driver.path_rename(cid, src, f"{wdir}/g{i}-{round_}", user=USER)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=rename, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(env.must("ls", wdir).decode().split()) == sorted(f"g{i}-4" for i in range(8))
    assert fresh_pool.idle_count(cid) <= helpers.MAX_IDLE_PER_CONTAINER
    wait_for(
        lambda: len(_helper_pids(env)) <= helpers.MAX_IDLE_PER_CONTAINER,
        what="the extra helpers to end",
    )


def test_idle_helpers_end(env, wdir, fresh_pool, monkeypatch):
    monkeypatch.setattr(helpers, "IDLE_S", 0.6)
    driver, cid = get_driver(), env.workspace.container_id
    env.must("touch", f"{wdir}/a")
    driver.path_rename(cid, f"{wdir}/a", f"{wdir}/b", user=USER)
    assert len(_helper_pids(env)) == 1
    wait_for(lambda: fresh_pool.idle_count(cid) == 0, timeout_s=10, what="the idle reap")
    wait_for(lambda: not _helper_pids(env), timeout_s=10, what="the shell to exit")


def test_an_image_without_a_usable_shell_falls_back_to_one_off_execs(fresh_pool):
    engine = docker.from_env()
    # No PATH: the helper's "sh" cannot be found; an absolute command still runs.
    container = engine.containers.run(
        "devbench/busybox:latest",
        ["/bin/sleep", "300"],
        environment={"PATH": "/nowhere"},
        network_mode="none",
        detach=True,
        labels={"devbench.test": "file-helpers"},
    )
    try:
        driver = get_driver()
        container.exec_run(["/bin/touch", "/tmp/a"])
        driver._run_fixed(container.id, ["/bin/mv", "-f", "-T", "--", "/tmp/a", "/tmp/b"], user="0")  # type: ignore[attr-defined]
        assert container.exec_run(["/bin/ls", "/tmp"]).output == b"b\n"
        assert fresh_pool.idle_count(container.id) == 0
        assert (driver.base_url, container.id) in fresh_pool._unusable  # type: ignore[attr-defined]
        # Remembered: the next command goes straight to a one-off exec.
        driver._run_fixed(container.id, ["/bin/mv", "-f", "-T", "--", "/tmp/b", "/tmp/c"], user="0")  # type: ignore[attr-defined]
        assert container.exec_run(["/bin/ls", "/tmp"]).output == b"c\n"
    finally:
        container.remove(force=True)


def test_past_the_process_bound_the_helper_idle_longest_ends(env, wdir, fresh_pool, monkeypatch):
    monkeypatch.setattr(helpers, "MAX_IDLE", 1)
    driver, cid = get_driver(), env.workspace.container_id
    env.must("touch", f"{wdir}/a")
    driver.path_rename(cid, f"{wdir}/a", f"{wdir}/b", user=USER)
    [first] = _helper_pids(env)
    driver.path_rename(cid, f"{wdir}/b", f"{wdir}/c", user="1000")  # another key: a second helper
    assert fresh_pool.idle_count(cid) == 1
    wait_for(lambda: first not in _helper_pids(env), what="the older helper to end")
    assert len(_helper_pids(env)) == 1
