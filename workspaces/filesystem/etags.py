"""File ETags remembered by what the engine reports of the file, so a stat need not read it.

An ETag is the sha256 of a file's content: exact, but computing it means reading
the whole file through the engine's archive API, which the engine serialises per
container. Here a hash is remembered under (tenant, workspace, container, path,
size, mtime) — the mtime exactly as the engine reports it (RFC 3339 with
nanoseconds) — in Django's cache (Redis, shared by every web process, in
production; local memory in the embedded mode) for ``DEVBENCH_ETAG_CACHE_S``, and in
the process's own memory in front of it (a bounded LRU: a repeated stat then makes no
Redis round trip). An entry taken from Redis carries the time it ends there and ends
then in the process too, so the bounds below hold for both alike.

A content change moves the mtime, so the key changes with it. Two things can
defeat that, and both are bounded:

* Same size and mtime, different content: ``touch -d``, ``cp -p``, a tar
  extracted with old times. A stat may then report the previous content's ETag
  until the file changes again or the entry expires. The ETag a write or delete
  is conditional on is never taken from here (``access.check_etag`` hashes the
  file under the path lock), so a stale ETag can at worst make a conditional
  write fail with 412, never overwrite a change.
* Two writes in one tick of the kernel's file clock (milliseconds) leave the
  same mtime, so content read right after the first may not be what the file
  holds after the second. (The platform's own writes carry their own
  sub-second mtime, ``tario.new_info``, taken before the content lands: two of
  them never share one.) A hash is therefore only remembered when the file's
  mtime was at least ``SETTLED_S`` in the past when the read started (such
  "racy" files are hashed again on each stat until they settle). This compares
  the engine host's clock with ours: a node whose clock runs behind by more
  than that falls back to the first bound.

The cache is an optimisation only: when it fails (Redis down), the file is read.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.locmem import LocMemCache

from workspaces.filesystem.results import parse_engine_time
from workspaces.runtime.base import PathStat

if TYPE_CHECKING:
    from workspaces.filesystem.access import Target

log = logging.getLogger(__name__)

# Far longer than a tick of the kernel's file clock (a jiffy: 10 ms at most).
SETTLED_S = 1.0
_PREFIX = "fs-etag:2:"  # values: "<etag> <expiry, epoch seconds>"
# Entries are ~200 bytes: a few MiB per process at most.
_process = LocMemCache("devbench-fs-etags", {"OPTIONS": {"MAX_ENTRIES": 20_000}})


def _key(target: Target, path: str, stat: PathStat) -> str:
    workspace = target.workspace
    parts = (
        str(workspace.tenant_id),
        str(workspace.pk),
        target.container_id,
        path,
        str(stat.size),
        stat.mtime,
    )
    # Paths can be 4 KiB of any text: a digest keeps keys short and valid everywhere.
    raw = "\x00".join(parts).encode("utf-8", "surrogateescape")
    return _PREFIX + hashlib.sha256(raw).hexdigest()


def etag_cached(target: Target, path: str, stat: PathStat, *, shared: bool = False) -> str | None:
    """The remembered ETag of the file ``stat`` describes, or None (also if the cache fails).
    ``shared``: as the shared cache has it now, past this process's copy (an entry one
    process forgot is then forgotten for every process)."""
    if not stat.mtime or settings.DEVBENCH_ETAG_CACHE_S <= 0:
        return None
    key = _key(target, path, stat)
    value = None if shared else _process.get(key)
    if isinstance(value, str):
        return value
    try:
        shared = cache.get(key)
    except Exception:  # any backend failure: the caller reads the file instead
        log.warning("ETag cache unavailable; reading the file", exc_info=True)
        return None
    if not isinstance(shared, str):
        return None
    # Remembered by another process, with the time its entry ends: kept here as long.
    etag, _, expires = shared.partition(" ")
    try:
        left = float(expires) - time.time()
    except ValueError:
        return None
    if left <= 0:
        return None
    _process.set(key, etag, timeout=left)
    return etag


def etag_forget(target: Target, path: str, stat: PathStat) -> None:
    """Forget the ETag remembered for the file ``stat`` describes (its content was found
    to hash otherwise)."""
    key = _key(target, path, stat)
    _process.delete(key)
    try:
        cache.delete(key)
    except Exception:  # it expires on its own
        log.warning("ETag cache unavailable; not forgotten", exc_info=True)


def etag_remember(
    target: Target, path: str, stat: PathStat, etag: str, *, read_started: datetime
) -> None:
    """Remember ``etag``, the hash of a read begun at ``read_started`` of the file ``stat``
    describes (the engine's stat of that read), if its mtime had settled by then."""
    if settings.DEVBENCH_ETAG_CACHE_S <= 0:
        return
    mtime = parse_engine_time(stat.mtime)
    if mtime is None or mtime > read_started - timedelta(seconds=SETTLED_S):
        return
    key, lifetime = _key(target, path, stat), settings.DEVBENCH_ETAG_CACHE_S
    _process.set(key, etag, timeout=lifetime)
    try:
        cache.set(key, f"{etag} {time.time() + lifetime:.3f}", timeout=lifetime)
    except Exception:  # remembering is optional; the hash was returned anyway
        log.warning("ETag cache unavailable; not remembered", exc_info=True)
