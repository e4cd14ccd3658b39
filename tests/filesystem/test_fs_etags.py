"""A stat's ETag comes from the cache when the file's size and mtime are unchanged.

Against the real engine and the real cache (Redis, as in production). Files are
given an old mtime with ``touch -d`` so they count as settled (etags.SETTLED_S).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone

from tests.factories import TenantFactory, WorkspaceFactory
from workspaces.filesystem import access, etags
from workspaces.filesystem.errors import EtagMismatch
from workspaces.filesystem.etags import etag_cached, etag_remember
from workspaces.filesystem.services import fs_read, fs_stat, fs_write
from workspaces.nodes import workspace_driver

pytestmark = [pytest.mark.docker, pytest.mark.integration]

OLD = "1700000000"  # 2023-11-14: long settled


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def archive_reads(env: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Paths read through the real driver's ``archive_get`` (a spy around the real call)."""
    driver_class = type(workspace_driver(env.workspace))
    real = driver_class.archive_get
    calls: list[str] = []

    def spy(self: Any, container_id: str, path: str) -> Any:
        calls.append(path)
        return real(self, container_id, path)

    monkeypatch.setattr(driver_class, "archive_get", spy)
    yield calls


def settled(env: Any, path: str, content: str) -> None:
    env.must("sh", "-c", f"printf '{content}' > {path} && touch -d @{OLD} {path}")


def stat_etag(env: Any, path: str) -> str | None:
    return fs_stat(actor=env.actor, workspace=env.workspace, path=path).etag


def test_second_stat_of_an_unchanged_file_reads_nothing(env, wdir, archive_reads):
    path = f"{wdir}/a.txt"
    settled(env, path, "hello")
    assert stat_etag(env, path) == sha(b"hello")
    assert archive_reads == [path]  # the miss read it once
    archive_reads.clear()
    assert stat_etag(env, path) == sha(b"hello")
    assert archive_reads == []


def test_a_file_just_written_is_hashed_again_until_it_settles(env, wdir, archive_reads):
    # Two writes within one tick of the file clock keep the mtime: nothing is remembered
    # for a file modified that recently.
    path = f"{wdir}/fresh.txt"
    env.must("sh", "-c", f"printf fresh > {path}")
    assert stat_etag(env, path) == sha(b"fresh")
    assert stat_etag(env, path) == sha(b"fresh")
    assert archive_reads == [path, path]


def test_a_read_remembers_the_hash_for_the_next_stat(env, wdir, archive_reads):
    path = f"{wdir}/r.txt"
    settled(env, path, "read me")
    fs_read(actor=env.actor, workspace=env.workspace, path=path, offset=2, length=2)
    assert archive_reads == [path]
    assert stat_etag(env, path) == sha(b"read me")
    assert archive_reads == [path]


def test_rewritten_content_gets_its_new_hash(env, wdir):
    path = f"{wdir}/w.txt"
    settled(env, path, "one")
    assert stat_etag(env, path) == sha(b"one")
    fs_write(actor=env.actor, workspace=env.workspace, path=path, content=b"two")
    assert stat_etag(env, path) == sha(b"two")
    env.must("sh", "-c", f"echo three > {path}")
    assert stat_etag(env, path) == sha(b"three\n")


def test_same_size_and_mtime_can_only_make_a_conditional_write_fail(env, wdir):
    """The documented bound: a stale ETag is refused by the write, the file is kept."""
    path = f"{wdir}/s.txt"
    settled(env, path, "AAAA")
    stale = stat_etag(env, path)
    assert stale == sha(b"AAAA")
    settled(env, path, "BBBB")  # same size, same mtime
    assert stat_etag(env, path) == stale  # the stat cannot tell
    with pytest.raises(EtagMismatch) as refused:
        fs_write(
            actor=env.actor,
            workspace=env.workspace,
            path=path,
            content=b"CCCC",
            if_match_etag=stale,
        )
    assert refused.value.http_status == 412
    assert refused.value.extra["current_etag"] == sha(b"BBBB")
    assert env.must("cat", path) == b"BBBB"
    # Hashing the real content (the check above, or a read) corrects the cache.
    assert stat_etag(env, path) == sha(b"BBBB")


def test_workspaces_and_tenants_never_share_an_entry(env, wdir):
    path = f"{wdir}/shared-name.txt"
    settled(env, path, "mine")
    own = access.open_target(actor=env.actor, workspace=env.workspace, scope="read")
    stat = own.stat(path)
    assert stat is not None
    marker = "f" * 64
    etag_remember(own, path, stat, marker, read_started=timezone.now())
    assert etag_cached(own, path, stat) == marker
    # Same container, path, size and mtime; only the workspace (and tenant) differs.
    others = [
        WorkspaceFactory(tenant=env.tenant),
        WorkspaceFactory(tenant=TenantFactory()),
    ]
    for workspace in others:
        other = access.Target(workspace=workspace, driver=own.driver, container_id=own.container_id)
        assert etag_cached(other, path, stat) is None
        assert access.file_etag(other, path, stat) == sha(b"mine")


def test_an_unreachable_cache_falls_back_to_reading_the_file(env, wdir, archive_reads):
    path = f"{wdir}/down.txt"
    settled(env, path, "still right")
    unreachable = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    with override_settings(CACHES=unreachable):
        assert stat_etag(env, path) == sha(b"still right")
        etags._process.clear()  # as in another process
        assert stat_etag(env, path) == sha(b"still right")
    assert archive_reads == [path, path]


def test_a_hash_one_process_remembered_serves_the_others_until_its_entry_ends(env, wdir):
    path = f"{wdir}/shared.txt"
    settled(env, path, "shared")
    own = access.open_target(actor=env.actor, workspace=env.workspace, scope="read")
    stat = own.stat(path)
    assert stat is not None
    etag_remember(own, path, stat, "remembered", read_started=timezone.now())
    etags._process.clear()  # another process: only Redis has it
    assert etag_cached(own, path, stat) == "remembered"
    key = etags._key(own, path, stat)
    # The entry's end came with it from Redis; once that passes, the process forgets it.
    cache.set(key, f"ended {time.time() - 1:.3f}")
    etags._process.clear()
    assert etag_cached(own, path, stat) is None
    cache.set(key, f"soon {time.time() + 0.5:.3f}")
    assert etag_cached(own, path, stat) == "soon"
    cache.delete(key)
    assert etag_cached(own, path, stat) == "soon"  # served from the process's memory
    time.sleep(0.6)
    assert etag_cached(own, path, stat) is None


@override_settings(DEVBENCH_ETAG_CACHE_S=0)
def test_a_zero_lifetime_turns_the_cache_off(env, wdir, archive_reads):
    path = f"{wdir}/off.txt"
    settled(env, path, "off")
    assert stat_etag(env, path) == sha(b"off")
    assert stat_etag(env, path) == sha(b"off")
    assert archive_reads == [path, path]


def test_two_writes_in_one_second_never_share_an_mtime(env, wdir):
    # Same size, within one second: with whole-second mtimes both would have one cache
    # key, and a hash remembered for the first could be taken for the second.
    path = f"{wdir}/twice.txt"
    first = fs_write(actor=env.actor, workspace=env.workspace, path=path, content=b"AAAA")
    one = fs_stat(actor=env.actor, workspace=env.workspace, path=path)
    fs_write(actor=env.actor, workspace=env.workspace, path=path, content=b"BBBB")
    two = fs_stat(actor=env.actor, workspace=env.workspace, path=path)
    assert first.size == one.size == two.size == 4
    assert one.mtime != two.mtime and two.etag == sha(b"BBBB")
