"""Per-path write locks (PostgreSQL advisory locks): held across connections, refused
with path_locked after the timeout, released with their transaction."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from workspaces.filesystem.errors import PathLocked
from workspaces.filesystem.locks import path_lock

pytestmark = [pytest.mark.django_db(transaction=True)]


def _hold(paths: list[str], held: threading.Event, release: threading.Event) -> None:
    try:
        with path_lock(workspace_pk=7, paths=paths):
            held.set()
            release.wait(30)
    finally:
        connection.close()


def test_a_held_path_is_refused_after_the_timeout_then_free_again():
    assert connection.vendor == "postgresql"
    held, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold, args=(["/workspace/b", "/workspace/a"], held, release))
    holder.start()
    try:
        assert held.wait(30)
        with (
            pytest.raises(PathLocked) as exc,
            path_lock(workspace_pk=7, paths=["/workspace/a"], timeout_s=0.3),
        ):
            pass
        assert exc.value.code == "path_locked"
        # Another path, or the same path of another workspace, is not held.
        with path_lock(workspace_pk=7, paths=["/workspace/c"], timeout_s=0.3):
            pass
        with path_lock(workspace_pk=8, paths=["/workspace/a"], timeout_s=0.3):
            pass
    finally:
        release.set()
        holder.join(30)
    with path_lock(workspace_pk=7, paths=["/workspace/a", "/workspace/b"], timeout_s=5):
        pass
