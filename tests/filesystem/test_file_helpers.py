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

pytestmark = [pytest.mark.docker, pytest.mark.integration]

USER = "1000:1000"


def _helper_pids(env: Any) -> list[str]:
    """The helper shells running in the workspace (their command line names the loop)."""
    lines = env.must("ps", "-o", "pid,args").decode().splitlines()
    return [line.split()[0] for line in lines if "IFS= read -r n" in line]


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


def _names(env: Any, wdir: str) -> list[str]:
    return sorted(env.must("ls", "-A", wdir).decode().splitlines())


def test_a_rename_freeing_later_replaces_and_leaves_no_second_name(env, wdir, fresh_pool):
    driver, cid = get_driver(), env.workspace.container_id
    env.must("sh", "-c", f"echo old > {wdir}/dst; echo new > {wdir}/src")
    # Another name of the replaced file (a user's hard link) keeps its content.
    env.must("ln", f"{wdir}/dst", f"{wdir}/kept")
    driver.path_rename(cid, f"{wdir}/src", f"{wdir}/dst", user=USER, free_replaced_later=True)
    assert env.must("cat", f"{wdir}/dst") == b"new\n"
    assert env.must("cat", f"{wdir}/kept") == b"old\n"
    # The replaced file's second name goes in the background, shortly after.
    wait_for(lambda: _names(env, wdir) == ["dst", "kept"], timeout_s=10, what="the old name")
    assert env.must("stat", "-c", "%h", f"{wdir}/kept") == b"1\n"


def test_a_rename_freeing_later_replaces_what_it_cannot_link_and_refuses_a_directory(
    env, wdir, fresh_pool
):
    driver, cid = get_driver(), env.workspace.container_id
    # Owned by root, unreadable to the user: the kernel refuses the user a hard link to
    # it (protected_hardlinks), yet the directory is the user's, so it may be replaced.
    # (Root in a workspace may not write in the user's directories: it writes while the
    # directory is open to everyone.)
    env.must("sh", "-c", f"echo new > {wdir}/src && chmod 777 {wdir}")
    code, out = env.sh("sh", "-c", f"echo root > {wdir}/dst && chmod 600 {wdir}/dst", user="0")
    assert code == 0, out
    env.must("chmod", "755", wdir)
    assert env.sh("ln", f"{wdir}/dst", f"{wdir}/link")[0] != 0
    driver.path_rename(cid, f"{wdir}/src", f"{wdir}/dst", user=USER, free_replaced_later=True)
    assert env.must("cat", f"{wdir}/dst") == b"new\n"
    # Onto a name that does not exist yet.
    env.must("sh", "-c", f"echo more > {wdir}/src")
    driver.path_rename(cid, f"{wdir}/src", f"{wdir}/fresh", user=USER, free_replaced_later=True)
    assert env.must("cat", f"{wdir}/fresh") == b"more\n"
    # A file never replaces a directory, and the failure is mv's own.
    env.must("mkdir", f"{wdir}/d")
    with pytest.raises(EngineCommandFailed) as exc:
        driver.path_rename(cid, f"{wdir}/fresh", f"{wdir}/d", user=USER, free_replaced_later=True)
    assert exc.value.extra["exit_code"] == 1 and exc.value.extra["command"] == "mv"
    assert _names(env, wdir) == ["d", "dst", "fresh"]
    assert len(_helper_pids(env)) == 1  # all of it in the one helper shell


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
