"""The pieces every filesystem service shares: checks, path resolution, file reads.

Kept apart from ``services.py`` so that file holds only the actions.
"""

from __future__ import annotations

import hashlib
import mimetypes
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from django.utils import timezone

from tenants.principal import Principal
from workspaces.filesystem.errors import (
    EtagMismatch,
    IsADirectory,
    NotADirectory,
    PathNotFound,
)
from workspaces.filesystem.etags import etag_cached, etag_remember
from workspaces.filesystem.paths import (
    ROOT,
    Resolved,
    join_root,
    normalise,
    parts_below_root,
    resolve,
)
from workspaces.filesystem.tario import Spool, hashed, member_body
from workspaces.models import Workspace
from workspaces.nodes import workspace_driver
from workspaces.runtime.base import (
    ArchiveReader,
    EnginePathNotFound,
    PathKind,
    PathStat,
    RuntimeDriver,
    TreeEntries,
)
from workspaces.selectors import workspace_require_own
from workspaces.suspend import workspace_ready


@dataclass
class Target:
    """A running workspace's container, with a per-operation stat cache."""

    workspace: Workspace
    driver: RuntimeDriver
    container_id: str
    _stats: dict[str, PathStat | None] = field(default_factory=dict)

    def stat(self, path: str) -> PathStat | None:
        if path not in self._stats:
            self._stats[path] = self.driver.path_stat(self.container_id, path)
        return self._stats[path]

    def fresh_stat(self, path: str) -> PathStat | None:
        """Bypass the cache: under a lock, the state right now is what counts."""
        self._stats.pop(path, None)
        return self.stat(path)

    def remember(self, path: str, stat: PathStat | None) -> None:
        """What the engine just said of ``path`` by other means (an archive's lstat)."""
        self._stats[path] = stat

    def resolve(self, path: str, *, follow_final: bool) -> Resolved:
        clean = normalise(path)
        self._stat_chain(clean)
        return resolve(clean, self.stat, follow_final=follow_final)

    def _stat_chain(self, clean: str) -> None:
        """Learn in one driver call what the walk will ask first: the stats down the path
        as far as it goes through real directories (on a node, one round trip instead
        of one per component)."""
        parts = parts_below_root(clean)
        chain = [join_root(parts[: i + 1]) for i in range(len(parts))]
        while chain and chain[0] in self._stats:  # known: the walk passes them without asking
            known = self._stats[chain.pop(0)]
            if known is None or known.kind != "dir":
                return
        if len(chain) > 1:
            # The answer stops where the walk leaves the chain: it may be shorter.
            stats = self.driver.path_stat_chain(self.container_id, chain)
            self._stats.update(zip(chain, stats, strict=False))


def open_target(*, actor: Principal, workspace: Workspace, scope: str) -> Target:
    """Scope, tenant and state checks shared by every operation."""
    actor.require_scope(scope)
    workspace_require_own(actor=actor, workspace=workspace)
    workspace_ready(workspace=workspace)
    return Target(
        workspace=workspace, driver=workspace_driver(workspace), container_id=workspace.container_id
    )


def not_found(path: str) -> PathNotFound:
    return PathNotFound(f"{path} does not exist.", path=path)


def existing(target: Target, path: str, *, follow_final: bool) -> Resolved:
    resolved = target.resolve(path, follow_final=follow_final)
    if resolved.stat is None:
        raise not_found(resolved.path)
    return resolved


def require_file(resolved: Resolved) -> PathStat:
    stat = resolved.stat
    if stat is None:
        raise not_found(resolved.path)
    if stat.kind == "dir":
        raise IsADirectory(f"{resolved.path} is a directory.", path=resolved.path)
    if stat.kind != "file":
        raise PathNotFound(f"{resolved.path} is not a regular file.", path=resolved.path)
    return stat


def open_file(target: Target, path: str) -> tuple[Resolved, ArchiveReader]:
    """The regular file at ``path`` (a final symlink followed): resolved, its archive open.

    The engine's archive answer carries the lstat of the path it reads, so the final
    component is not stat'ed on its own first (``_opened_in_place``). Anything but a
    regular file there (a symlink to follow, a directory, nothing) takes the whole
    resolution walk, told what the engine said.
    """
    clean = normalise(path)
    if clean != ROOT:  # (the root is a directory)
        opened = _opened_in_place(
            target, clean, lambda at: target.driver.archive_get(target.container_id, at), "file"
        )
        if opened is not None:
            return opened
    resolved = existing(target, clean, follow_final=True)
    require_file(resolved)
    try:
        return resolved, target.driver.archive_get(target.container_id, resolved.path)
    except EnginePathNotFound as exc:
        raise not_found(resolved.path) from exc


def open_tree(target: Target, path: str, *, nested: bool) -> tuple[Resolved, TreeEntries]:
    """The entries below the directory at ``path`` (a final symlink followed): resolved,
    its entries open. As ``open_file``: the directory is not stat'ed on its own first."""
    clean = normalise(path)

    def entries_at(at: str) -> TreeEntries:
        return target.driver.tree_entries(target.container_id, at, nested=nested)

    opened = _opened_in_place(target, clean, entries_at, "dir")
    if opened is not None:
        return opened
    resolved = existing(target, clean, follow_final=True)
    if resolved.kind != "dir":
        raise NotADirectory(f"{resolved.path} is not a directory.", path=resolved.path)
    try:
        return resolved, entries_at(resolved.path)
    except EnginePathNotFound as exc:
        raise not_found(resolved.path) from exc


_Opened = TypeVar("_Opened", ArchiveReader, TreeEntries)


def _opened_in_place(
    target: Target, clean: str, open_at: Callable[[str], _Opened], kind: PathKind
) -> tuple[Resolved, _Opened] | None:
    """``open_at`` the final component of ``clean`` where its parents really are, when
    it is a ``kind`` there; else None, with what the engine said of it remembered.

    The parents are resolved as always (every symlink among them followed within the
    root); the final component is not stat'ed first, because the engine's answer
    carries its lstat. That saves an engine call per read or listing, and an agent
    call when the workspace is on another node.
    """
    if clean == ROOT:
        directory = candidate = ROOT
    else:
        parent, name = posixpath.split(clean)
        found = ROOT if parent == ROOT else _directory(target, parent)
        if found is None:
            return None
        directory, candidate = found, posixpath.join(found, name)
    try:
        opened = open_at(candidate)
    except EnginePathNotFound:
        target.remember(candidate, None)
        return None
    if opened.stat.kind == kind:
        existing_dir = candidate if kind == "dir" else directory
        return Resolved(path=candidate, stat=opened.stat, existing=existing_dir), opened
    target.remember(candidate, opened.stat)
    opened.close()
    return None


def _directory(target: Target, path: str) -> str | None:
    """Where the directory ``path`` really is (symlinks followed within the root); None
    when it is not a directory (the walk then gives the precise error)."""
    resolved = target.resolve(path, follow_final=True)
    return resolved.path if resolved.kind == "dir" else None


def mime_type(path: str) -> str | None:
    return mimetypes.guess_type(path, strict=False)[0]


def clean_etag(value: str) -> str:
    """Accept an ETag as sent in JSON or an HTTP header: ``abc``, ``"abc"``, ``W/"abc"``."""
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def read_file(
    target: Target,
    path: str,
    *,
    offset: int = 0,
    length: int | None = None,
    sink: Spool | None,
    reader: ArchiveReader | None = None,
) -> tuple[int, str]:
    """Stream a file off the engine: hash all of it, copy ``[offset, offset+length)`` to ``sink``.

    Returns (size, etag). ``reader``: its archive, already open (closed here). The
    engine lstat's the final component: if it was swapped for a link or a directory
    since it was resolved, nothing is read. The hash is remembered for later stats
    (``etags``).
    """
    started = timezone.now()
    if reader is None:
        try:
            reader = target.driver.archive_get(target.container_id, path)
        except EnginePathNotFound as exc:
            raise not_found(path) from exc
    with reader:
        member, chunks = member_body(reader)
        if member is None or not member.isreg():
            raise PathNotFound(f"{path} is not a regular file.", path=path)
        digest = hashlib.sha256()
        end = member.size if length is None else min(member.size, offset + length)
        position = 0
        for chunk in hashed(chunks, digest):
            if sink is not None and position < end and position + len(chunk) > offset:
                if offset <= position and position + len(chunk) <= end:
                    sink.write(chunk)
                else:
                    sink.write(memoryview(chunk)[max(offset - position, 0) : end - position])
            position += len(chunk)
    etag = digest.hexdigest()
    etag_remember(target, path, reader.stat, etag, read_started=started)
    return member.size, etag


def file_etag(target: Target, path: str, stat: PathStat) -> str:
    """The ETag of the file ``stat`` describes: remembered, or read (and remembered)."""
    return etag_cached(target, path, stat) or read_file(target, path, sink=None)[1]


def check_etag(target: Target, path: str, stat: PathStat | None, if_match_etag: str) -> None:
    """412 unless the file at ``path`` has exactly this content hash (``*``: any file)."""
    wanted = clean_etag(if_match_etag)
    if stat is None:
        raise EtagMismatch(
            f"{path} does not exist, so it cannot match if_match_etag.",
            path=path,
            current_etag=None,
        )
    if stat.kind != "file":
        raise EtagMismatch(
            f"{path} is not a file; if_match_etag applies to files.", path=path, current_etag=None
        )
    if wanted == "*":
        return
    _, current = read_file(target, path, sink=None)
    if current != wanted:
        raise EtagMismatch(path=path, current_etag=current)
