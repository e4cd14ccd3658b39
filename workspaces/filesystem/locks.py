"""Per-path write locks across processes: PostgreSQL advisory locks.

A conditional write (``if_match_etag``) is check-then-act: without a lock two
writers holding the same ETag would both pass the check. The lock is keyed by
(workspace, resolved path) and held in a transaction for the whole change, so
it is released whatever happens to the process. The embedded (SQLite, single
process) mode uses in-process locks instead.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager

from django.db import OperationalError, connection, transaction

from workspaces.filesystem.errors import PathLocked

LOCK_TIMEOUT_S = 60

# Embedded mode: a fixed set of stripes (two paths may share one: harmless, bounded).
_STRIPES = [threading.Lock() for _ in range(256)]


def lock_key(workspace_pk: int, path: str) -> int:
    """A signed 64-bit key (PostgreSQL's bigint) for one path of one workspace."""
    digest = hashlib.blake2b(f"devbench.fs:{workspace_pk}:{path}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


@contextmanager
def path_lock(
    *, workspace_pk: int, paths: Iterable[str], timeout_s: float = LOCK_TIMEOUT_S
) -> Iterator[None]:
    """Hold the write locks of ``paths`` (always taken in the same order: no deadlock)."""
    paths = list(paths)
    keys = sorted({lock_key(workspace_pk, p) for p in paths})
    if connection.vendor != "postgresql":
        with _local(sorted({k % len(_STRIPES) for k in keys}), timeout_s):
            yield
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{int(timeout_s * 1000)}"])
        try:
            for key in keys:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])
        except OperationalError as exc:
            raise PathLocked(paths=list(paths)) from exc
        yield


@contextmanager
def _local(stripes: list[int], timeout_s: float) -> Iterator[None]:
    with ExitStack() as stack:
        for stripe in stripes:
            lock = _STRIPES[stripe]
            if not lock.acquire(timeout=timeout_s):
                raise PathLocked()
            stack.callback(lock.release)
        yield
