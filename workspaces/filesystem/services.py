"""File operations in a running workspace. REST, MCP and the web UI call these.

Data moves only through the engine's archive API (binary-exact, streamed, no
process in the workspace). The engine cannot rename or unlink, so the commit
of a write (temp file -> final name, one atomic rename(2)), delete and move run
``mv``/``rm``/``rmdir`` as fixed argv commands as the workspace user: readers
never see half a file, and those commands can do nothing the workspace user
could not. Changes to one path are serialised by a lock (see ``locks.py``).
"""

from __future__ import annotations

import contextlib
import itertools
import posixpath
import secrets
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, BinaryIO

from core.errors import DevBenchError
from core.metrics import counted_file_operation
from core.streamed_body import RequestBodyIncomplete
from tenants.audit import AuditScope, audited
from tenants.principal import Principal
from tenants.selectors import tenant_policy_get
from workspaces.filesystem import access
from workspaces.filesystem.access import Target, existing, not_found, open_target
from workspaces.filesystem.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InvalidMode,
    InvalidPath,
    IsADirectory,
    NotADirectory,
)
from workspaces.filesystem.locks import path_lock
from workspaces.filesystem.paths import ROOT, normalise
from workspaces.filesystem.reads import (
    fs_download_archive,
    fs_list,
    fs_read,
    fs_read_stream,
    fs_stat,
)
from workspaces.filesystem.results import (
    ArchiveUploadResult,
    FileDeleteResult,
    FileWriteResult,
    MkdirResult,
    MoveResult,
)
from workspaces.filesystem.tario import (
    Entry,
    Received,
    SizedTar,
    SpooledBody,
    dir_infos,
    new_info,
    spool,
    tar_stream,
)
from workspaces.filesystem.upload import plan_upload
from workspaces.models import Workspace
from workspaces.runtime.base import (
    LARGE_FILE_BYTES,
    WORKSPACE_USER,
    EngineCommandFailed,
    PathStat,
)

# An uploaded archive may hold several files, each within the per-file limit; the
# archive itself and its extracted content are bounded by this many times the limit.
ARCHIVE_LIMIT_FACTOR = 4
BROKEN_PUT_SETTLE_S = 0.5


def _audit_path(path: str) -> dict[str, str]:
    return {"path": path[:500] if isinstance(path, str) else repr(path)}


@contextmanager
def _changing(
    *, actor: Principal, workspace: Workspace, action: str, path: str, **details: Any
) -> Iterator[tuple[Target, AuditScope]]:
    """Every file change: audited (with its path), needs "write", on the actor's running
    workspace."""
    with audited(
        actor=actor,
        action=action,
        target_type="workspace",
        target_id=workspace.public_id,
        details={**_audit_path(path), **details},
    ) as audit:
        yield open_target(actor=actor, workspace=workspace, scope="write"), audit


@counted_file_operation("write")
def fs_write(
    *,
    actor: Principal,
    workspace: Workspace,
    path: str,
    content: bytes | BinaryIO | Iterable[bytes] | Received,
    if_match_etag: str | None = None,
    mode: int | None = None,
    create_parents: bool = True,
) -> FileWriteResult:
    """Replace (or create) a file atomically; ``if_match_etag`` makes it conditional.

    The body is checked against the size limit before anything reaches the
    workspace (a stream is spooled first; bytes are sent as they are). ``mode``
    defaults to the replaced file's permissions (0644 for a new file). A final
    symlink is followed, within the workspace.
    """
    with _changing(actor=actor, workspace=workspace, action="fs.write", path=path) as (
        target,
        audit,
    ):
        if mode is not None and not 0 <= mode <= 0o777:
            raise InvalidMode("mode must be permission bits (0 to 0o777).")
        limit = tenant_policy_get(tenant=actor.tenant).max_file_size_bytes
        requested = normalise(path)
        if requested == ROOT:
            raise IsADirectory(f"{ROOT} is a directory.", path=ROOT)
        body = spool(content, limit=limit)
        lock = path_lock(workspace_pk=workspace.pk, paths=[requested])
        with body.file, lock, ExitStack() as held:
            # Resolved under the lock of the path asked for: unless a symlink leads
            # elsewhere, what the walk saw is the state now, and no stat is taken twice.
            resolved = target.resolve(requested, follow_final=True)
            audit.details["path"] = resolved.path
            if resolved.path == ROOT:
                raise IsADirectory(f"{ROOT} is a directory.", path=ROOT)
            missing_dirs = resolved.missing[:-1]
            if missing_dirs and not create_parents:
                raise not_found(posixpath.dirname(resolved.path))
            current = resolved.stat
            if resolved.path != requested:  # the real file has a lock of its own
                held.enter_context(path_lock(workspace_pk=workspace.pk, paths=[resolved.path]))
                current = target.fresh_stat(resolved.path)
            if current is not None and current.kind == "dir":
                raise IsADirectory(f"{resolved.path} is a directory.", path=resolved.path)
            if if_match_etag is not None:
                access.check_etag(target, resolved.path, current, if_match_etag)
            file_mode = mode if mode is not None else (current.mode & 0o777 if current else 0o644)
            large = current is not None and max(current.size, body.size) >= LARGE_FILE_BYTES
            _commit(
                target,
                resolved.existing,
                missing_dirs,
                resolved.path,
                body,
                file_mode,
                large_file=large,
            )
        audit.details.update(size=body.size, etag=body.sha256, created=current is None)
    return FileWriteResult(
        path=resolved.path,
        etag=body.sha256,
        size=body.size,
        mode=file_mode,
        created=current is None,
    )


def _commit(
    target: Target,
    put_into: str,
    missing_dirs: tuple[str, ...],
    final: str,
    body: SpooledBody,
    mode: int,
    *,
    large_file: bool,
) -> None:
    """Put the body under a temp name in the final directory, then rename it into place."""
    temp_name = f".devbench-{secrets.token_hex(8)}.tmp"
    relative = "/".join((*missing_dirs, temp_name))
    entries: list[Entry] = [(info, None) for info in dir_infos("", missing_dirs)]
    entries.append((new_info(relative, size=body.size, mode=mode), body.content))
    temp_path = posixpath.join(posixpath.dirname(final), temp_name)
    try:
        # A put that breaks off may leave part of the temp file: it goes too.
        target.driver.archive_put_then_rename(
            target.container_id,
            put_into,
            SizedTar(entries),
            src=temp_path,
            dst=final,
            user=WORKSPACE_USER,
            large_file=large_file,
        )
    except BaseException as exc:
        _remove_temp(target, temp_path)
        if isinstance(exc, RequestBodyIncomplete):
            # The put was cut off mid-body: the engine may still be extracting what it
            # had when the first removal ran. The client is gone or stalled; it waits.
            time.sleep(BROKEN_PUT_SETTLE_S)
            _remove_temp(target, temp_path)
        raise


def _remove_temp(target: Target, temp_path: str) -> None:
    with contextlib.suppress(DevBenchError):
        target.driver.path_remove(
            target.container_id, temp_path, kind="file", recursive=False, user=WORKSPACE_USER
        )


@counted_file_operation("delete")
def fs_delete(
    *,
    actor: Principal,
    workspace: Workspace,
    path: str,
    recursive: bool = False,
    if_match_etag: str | None = None,
) -> FileDeleteResult:
    """Delete a file, symlink (never its target) or directory (non-empty: ``recursive``)."""
    with _changing(
        actor=actor, workspace=workspace, action="fs.delete", path=path, recursive=recursive
    ) as (target, audit):
        resolved = target.resolve(path, follow_final=False)
        audit.details["path"] = resolved.path
        if resolved.path == ROOT:
            raise InvalidPath("The workspace root cannot be deleted.", reason="root")
        with path_lock(workspace_pk=workspace.pk, paths=[resolved.path]):
            current = target.fresh_stat(resolved.path)
            if current is None:
                raise not_found(resolved.path)
            if if_match_etag is not None:
                access.check_etag(target, resolved.path, current, if_match_etag)
            try:
                target.driver.path_remove(
                    target.container_id,
                    resolved.path,
                    kind=current.kind,
                    recursive=recursive,
                    user=WORKSPACE_USER,
                )
            except EngineCommandFailed as exc:
                if "not empty" in str(exc.extra.get("output", "")).lower():
                    raise DirectoryNotEmpty(
                        f"{resolved.path} is not empty; delete it with recursive=true.",
                        path=resolved.path,
                    ) from exc
                raise
    return FileDeleteResult(path=resolved.path, kind=current.kind)


@counted_file_operation("mkdir")
def fs_mkdir(
    *, actor: Principal, workspace: Workspace, path: str, parents: bool = False
) -> MkdirResult:
    """Create a directory (and, with ``parents``, missing parents; an existing one is fine)."""
    with _changing(actor=actor, workspace=workspace, action="fs.mkdir", path=path) as (
        target,
        audit,
    ):
        resolved = target.resolve(path, follow_final=True)
        audit.details["path"] = resolved.path
        if resolved.stat is not None:
            if resolved.stat.kind == "dir" and parents:
                return MkdirResult(path=resolved.path, created=False)
            raise AlreadyExists(
                f"{resolved.path} already exists.", path=resolved.path, kind=resolved.stat.kind
            )
        if len(resolved.missing) > 1 and not parents:
            raise not_found(posixpath.dirname(resolved.path))
        with path_lock(workspace_pk=workspace.pk, paths=[resolved.path]):
            infos = dir_infos("", resolved.missing)
            target.driver.archive_put(
                target.container_id, resolved.existing, tar_stream((i, None) for i in infos)
            )
    return MkdirResult(path=resolved.path, created=True)


@counted_file_operation("move")
def fs_move(
    *,
    actor: Principal,
    workspace: Workspace,
    path: str,
    destination: str,
    overwrite: bool = False,
) -> MoveResult:
    """Rename ``path`` to ``destination`` atomically (a symlink moves itself, not its target).

    With ``overwrite`` an existing file at the destination is replaced; a
    directory never is.
    """
    with _changing(
        actor=actor,
        workspace=workspace,
        action="fs.move",
        path=path,
        destination=_audit_path(destination)["path"],
    ) as (target, audit):
        source = existing(target, path, follow_final=False)
        dest = target.resolve(destination, follow_final=False)
        audit.details.update(path=source.path, destination=dest.path)
        if ROOT in (source.path, dest.path):
            raise InvalidPath("The workspace root cannot be moved or replaced.", reason="root")
        if dest.path.startswith(source.path + "/"):
            raise InvalidPath("A directory cannot be moved into itself.", reason="into_itself")
        if len(dest.missing) > 1:
            raise not_found(posixpath.dirname(dest.path))
        with path_lock(workspace_pk=workspace.pk, paths=[source.path, dest.path]):
            moving = target.fresh_stat(source.path)
            if moving is None:
                raise not_found(source.path)
            if dest.path != source.path:
                _check_replace(target.fresh_stat(dest.path), moving.kind, dest.path, overwrite)
                target.driver.path_rename(
                    target.container_id, source.path, dest.path, user=WORKSPACE_USER
                )
    return MoveResult(path=dest.path, source=source.path, kind=moving.kind)


def _check_replace(current: PathStat | None, kind: str, path: str, overwrite: bool) -> None:
    if current is None:
        return
    if not overwrite:
        raise AlreadyExists(
            f"{path} already exists; pass overwrite=true to replace a file.",
            path=path,
            kind=current.kind,
        )
    if current.kind == "dir":
        raise IsADirectory(f"{path} is a directory and is never replaced.", path=path)
    if kind == "dir":
        raise NotADirectory(f"{path} is not a directory; a directory cannot replace it.", path=path)


@counted_file_operation("upload_archive")
def fs_upload_archive(
    *,
    actor: Principal,
    workspace: Workspace,
    path: str,
    archive: bytes | BinaryIO | Iterable[bytes],
) -> ArchiveUploadResult:
    """Extract a tar archive (plain or compressed) into the directory ``path`` (made if missing).

    The whole archive is spooled and checked before anything is extracted:
    a refused member leaves the workspace untouched.
    """
    with _changing(actor=actor, workspace=workspace, action="fs.upload_archive", path=path) as (
        target,
        audit,
    ):
        dest = target.resolve(path, follow_final=True)
        audit.details["path"] = dest.path
        if dest.stat is not None and dest.stat.kind != "dir":
            raise NotADirectory(f"{dest.path} is not a directory.", path=dest.path)
        limit = tenant_policy_get(tenant=actor.tenant).max_file_size_bytes
        body = spool(archive, limit=limit * ARCHIVE_LIMIT_FACTOR)
        with body.file:
            plan = plan_upload(
                body.file, member_limit=limit, total_limit=limit * ARCHIVE_LIMIT_FACTOR
            )
            if dest.stat is not None:
                # The engine follows existing symlinks below the destination while it
                # extracts: every parent directory of a member must resolve inside.
                for ancestor in sorted(plan.ancestors):
                    target.resolve(f"{dest.path}/{ancestor}", follow_final=True)
            with path_lock(workspace_pk=workspace.pk, paths=[dest.path]):
                made = [(info, None) for info in dir_infos("", dest.missing)]
                entries = itertools.chain(made, plan.entries_under("/".join(dest.missing)))
                target.driver.archive_put(target.container_id, dest.existing, tar_stream(entries))
        result = ArchiveUploadResult(
            path=dest.path,
            files=plan.files,
            directories=plan.directories,
            symlinks=plan.symlinks,
            hardlinks=plan.hardlinks,
            bytes=plan.total_bytes,
        )
        audit.details.update(files=result.files, bytes=result.bytes)
    return result


__all__ = [
    "fs_delete",
    "fs_download_archive",
    "fs_list",
    "fs_mkdir",
    "fs_move",
    "fs_read",
    "fs_read_stream",
    "fs_stat",
    "fs_upload_archive",
    "fs_write",
]
