"""Read-only file operations: read, stat, list, download. Scope ``read``; not audited."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from datetime import datetime

from core.errors import InvalidCursor
from core.metrics import counted_file_operation
from core.pagination import cursor_decode, cursor_encode, limit_check
from tenants.principal import Principal
from tenants.selectors import tenant_policy_get
from workspaces.filesystem import access
from workspaces.filesystem.access import existing, open_target
from workspaces.filesystem.errors import (
    FileTooLarge,
    InvalidRange,
)
from workspaces.filesystem.etags import etag_cached, etag_forget
from workspaces.filesystem.paths import ROOT
from workspaces.filesystem.results import (
    ArchiveDownload,
    DirEntry,
    DirListing,
    FileContent,
    FileStat,
    FileStream,
    from_epoch,
    parse_engine_time,
)
from workspaces.filesystem.tario import member_body, new_spool, open_stream
from workspaces.filesystem.verified import VerifiedBody
from workspaces.models import Workspace
from workspaces.runtime.base import ArchiveReader, TreeEntry

DEFAULT_LIST_ENTRIES = 1000
MAX_LIST_ENTRIES = 10_000


def _range(size: int, offset: int, length: int | None) -> int:
    if offset < 0 or (length is not None and length < 0):
        raise InvalidRange("offset and length must not be negative.")
    return max(0, min(size - offset, size if length is None else length))


@counted_file_operation("read")
def fs_read(
    *, actor: Principal, workspace: Workspace, path: str, offset: int = 0, length: int | None = None
) -> FileContent:
    """A file (or a byte range) in memory; ranges above the policy's file limit are refused."""
    stream = _spooled(
        actor=actor, workspace=workspace, path=path, offset=offset, length=length, bounded=True
    )
    try:
        content = stream.body.read()
    finally:
        stream.body.close()
    return FileContent(
        path=stream.path,
        size=stream.size,
        etag=stream.etag,
        offset=offset,
        content=content,
        mime_type=stream.mime_type,
    )


@counted_file_operation("read")
def fs_read_stream(
    *, actor: Principal, workspace: Workspace, path: str, offset: int = 0, length: int | None = None
) -> FileStream:
    """A file (or a byte range) of any size for streaming out: read as it goes out when
    its ETag is remembered for the engine's stat of this read (``verified``), else
    spooled (memory, then disk) first."""
    return _spooled(
        actor=actor,
        workspace=workspace,
        path=path,
        offset=offset,
        length=length,
        bounded=False,
        stream_known=True,
    )


def _spooled(
    *,
    actor: Principal,
    workspace: Workspace,
    path: str,
    offset: int,
    length: int | None,
    bounded: bool,
    stream_known: bool = False,
) -> FileStream:
    target = open_target(actor=actor, workspace=workspace, scope="read")
    resolved, reader = access.open_file(target, path)
    try:
        stat = access.require_file(resolved)
        wanted = _range(stat.size, offset, length)
        if bounded:
            limit = tenant_policy_get(tenant=actor.tenant).max_file_size_bytes
            if wanted > limit:
                raise FileTooLarge(
                    size_bytes=wanted,
                    limit_bytes=limit,
                    hint="read a range (offset/length) or stream the file",
                )
        # Asked of the shared cache: a download cut short forgets its entry for every process.
        etag = (
            etag_cached(target, resolved.path, reader.stat, shared=True) if stream_known else None
        )
        streamed = None if etag is None else _verified(target, resolved.path, reader, etag)
    except BaseException:
        reader.close()
        raise
    if streamed is not None:
        size, chunks = streamed
        return FileStream(
            path=resolved.path,
            size=size,
            etag=etag or "",
            offset=offset,
            length=wanted,
            mime_type=access.mime_type(resolved.path),
            body=VerifiedBody(
                chunks,
                offset=offset,
                end=offset + wanted,
                etag=etag or "",
                on_mismatch=lambda: etag_forget(target, resolved.path, reader.stat),
                close=reader.close,
            ),
        )
    if etag is not None:
        # The archive is not the file the engine's stat described (it changed between
        # the two): read it again, whole.
        return _spooled(
            actor=actor, workspace=workspace, path=path, offset=offset, length=length, bounded=False
        )
    body = new_spool()
    try:
        size, etag = access.read_file(
            target, resolved.path, offset=offset, length=length, sink=body, reader=reader
        )
        count = body.tell()
        body.seek(0)
    except BaseException:
        body.close()
        raise
    return FileStream(
        path=resolved.path,
        size=size,
        etag=etag,
        offset=offset,
        length=count,
        mime_type=access.mime_type(resolved.path),
        body=body,
    )


def _verified(
    target: access.Target, path: str, reader: ArchiveReader, etag: str
) -> tuple[int, Iterator[bytes]] | None:
    """The file's size and body off ``reader``, once its tar header is read, if it is the
    regular file of ``reader.stat`` (then its ETag is ``etag``); else None, the reader
    closed."""
    member, chunks = member_body(reader)
    if member is None or not member.isreg() or member.size != reader.stat.size:
        reader.close()
        return None
    return member.size, chunks


@counted_file_operation("download_archive")
def fs_download_archive(*, actor: Principal, workspace: Workspace, path: str) -> ArchiveDownload:
    """A tar stream of a file or directory, straight from the engine."""
    target = open_target(actor=actor, workspace=workspace, scope="read")
    resolved = existing(target, path, follow_final=True)
    reader = target.driver.archive_get(target.container_id, resolved.path)
    name = posixpath.basename(resolved.path) or "workspace"
    return ArchiveDownload(path=resolved.path, filename=f"{name}.tar", reader=reader)


@counted_file_operation("stat")
def fs_stat(*, actor: Principal, workspace: Workspace, path: str) -> FileStat:
    """What is at ``path``; a final symlink is described, not followed. Files carry an ETag."""
    target = open_target(actor=actor, workspace=workspace, scope="read")
    resolved = existing(target, path, follow_final=False)
    stat = resolved.stat
    assert stat is not None
    etag = None
    link_target = None
    if stat.kind == "file":
        etag = access.file_etag(target, resolved.path, stat)
    elif stat.kind == "symlink":
        link_target = _link_text(target, resolved.path)
    return FileStat(
        path=resolved.path,
        name=posixpath.basename(resolved.path) or posixpath.basename(ROOT),
        kind=stat.kind,
        size=stat.size,
        mode=stat.mode,
        mtime=parse_engine_time(stat.mtime),
        link_target=link_target,
        etag=etag,
        mime_type=access.mime_type(resolved.path) if stat.kind == "file" else None,
    )


def _link_text(target: access.Target, path: str) -> str | None:
    """A symlink's own text (the engine's stat gives it resolved): its tar header has it."""
    with target.driver.archive_get(target.container_id, path) as reader:
        member = open_stream(reader).next()
    return _text(member.linkname) if member is not None and member.issym() else None


def _text(name: str) -> str:
    # Names that are not UTF-8 cannot travel in JSON: they are shown with U+FFFD.
    if name.isascii():  # most names; a surrogate-escaped byte is never ASCII
        return name
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@counted_file_operation("list")
def fs_list(
    *,
    actor: Principal,
    workspace: Workspace,
    path: str = ROOT,
    recursive: bool = False,
    limit: int = DEFAULT_LIST_ENTRIES,
    cursor: str | None = None,
) -> DirListing:
    """A page of the entries of a directory (its whole tree with ``recursive``), in
    path order: at most ``limit``, after ``cursor`` (a previous page's ``next_cursor``).

    The engine streams the directory as a tar (read on the workspace's node: only
    names and stats come here), so each page costs as much as reading the tree's
    names. The stream is in walk order (a directory's names
    sorted, each directory before its contents), which is the order of the
    relative paths' components: a page resumes strictly after the last entry of
    the previous one even when entries were added or removed in between.
    """
    limit_check(limit, max_limit=MAX_LIST_ENTRIES)
    target = open_target(actor=actor, workspace=workspace, scope="read")
    resolved, tree = access.open_tree(target, path, nested=recursive)
    entries: list[DirEntry] = []
    last = ""  # the relative name as the engine spells it (it may not be UTF-8)
    more = False
    times: dict[float, datetime] = {}  # one datetime per distinct time (see _entry)
    with tree:
        scope = f"fs_list:{actor.tenant.pk}:{workspace.pk}:{resolved.path}:{int(recursive)}"
        after = _resume_key(cursor, scope=scope)
        for entry in tree:
            if after is not None and _walk_key(entry.relative) <= after:
                continue
            if len(entries) == limit:
                more = True
                break
            entries.append(_entry(resolved.path, entry, times))
            last = entry.relative
    next_cursor = cursor_encode([last], scope=scope) if more else None
    return DirListing(path=resolved.path, items=tuple(entries), next_cursor=next_cursor)


def _walk_key(relative: str) -> tuple[str, ...]:
    return tuple(relative.split("/"))


def _resume_key(cursor: str | None, *, scope: str) -> tuple[str, ...] | None:
    if cursor is None:
        return None
    position = cursor_decode(cursor, scope=scope)
    if len(position) != 1 or not isinstance(position[0], str):
        raise InvalidCursor()
    return _walk_key(position[0])


def _entry(base: str, entry: TreeEntry, times: dict[float, datetime]) -> DirEntry:
    # The files of a tree often share their times (a checkout, an unpacked archive):
    # each distinct time is converted once per listing.
    mtime = times.get(entry.mtime)
    if mtime is None:
        mtime = times[entry.mtime] = from_epoch(entry.mtime)
    relative = _text(entry.relative)
    return DirEntry(
        name=relative.rpartition("/")[2],
        path=f"{base}/{relative}",
        kind=entry.kind,
        size=entry.size,
        mode=entry.mode,
        mtime=mtime,
        link_target=_text(entry.link) if entry.link else None,
    )
