"""Checking an uploaded tar archive before any of it reaches the workspace.

Every member goes through :func:`tarfile.data_filter` (absolute names, ``..``
escapes, links leading outside, device files and pipes are refused; unsafe
mode bits are dropped), plus rules the filter cannot know: a name must pass
the workspace path rules, a hard link may only point at a file earlier in the
same archive, and no member may sit below a symlink of the archive (the engine
would follow it while extracting). Members are then re-emitted with fresh
headers owned by the workspace user: no foreign owners, no extended
attributes, no setuid bits.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from core.errors import DevBenchError
from workspaces.filesystem.errors import FileTooLarge, InvalidArchive
from workspaces.filesystem.paths import ROOT, normalise
from workspaces.filesystem.tario import Spool, new_info
from workspaces.filesystem.tarlib import tarfile

# Only the filter's path arithmetic uses this; nothing is extracted on this host.
_FILTER_ROOT = "/nonexistent/devbench-upload"
_ALLOWED = {tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.DIRTYPE}
_ALLOWED |= {tarfile.SYMTYPE, tarfile.LNKTYPE}


def _refuse(member: str, reason: str, message: str) -> InvalidArchive:
    return InvalidArchive(
        f"Archive member '{member[:200]}': {message}", member=member[:300], reason=reason
    )


@dataclass
class UploadPlan:
    archive: tarfile.TarFile
    # (fresh header, original member) in archive order
    entries: list[tuple[tarfile.TarInfo, tarfile.TarInfo]] = field(default_factory=list)
    ancestors: set[str] = field(default_factory=set)  # relative parent directories
    files: int = 0
    directories: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    total_bytes: int = 0

    def entries_under(self, prefix: str = "") -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
        """The checked members (for :func:`tar_stream`), their names placed under ``prefix``."""
        for info, member in self.entries:
            if prefix:
                info = info.replace(name=f"{prefix}/{info.name}", deep=False)
                if info.type == tarfile.LNKTYPE:
                    info.linkname = f"{prefix}/{info.linkname}"
            yield info, self.archive.extractfile(member) if info.isreg() else None


def _relative(member: tarfile.TarInfo) -> str:
    if member.name.startswith("/"):
        raise _refuse(member.name, "absolute_path", "absolute names are not allowed.")
    try:
        filtered = tarfile.data_filter(member, _FILTER_ROOT)
    except tarfile.FilterError as exc:
        raise _refuse(member.name, type(exc).__name__, str(exc)) from exc
    rel = posixpath.normpath(filtered.name)
    if rel == ".":
        return ""
    try:
        normalise(f"{ROOT}/{rel}")
    except DevBenchError as exc:
        raise _refuse(member.name, "invalid_path", exc.message) from exc
    return rel


def plan_upload(body: Spool, *, member_limit: int, total_limit: int) -> UploadPlan:
    """Read and check every member header of a (possibly compressed) tar archive."""
    try:
        # Kept open for the second pass (re-emitting members); the caller closes the spool.
        archive = tarfile.open(fileobj=body, mode="r:*")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidArchive(
            "The upload is not a tar archive (plain, gzip, bzip2 or xz).", reason="not_a_tar"
        ) from exc
    plan = UploadPlan(archive=archive)
    symlinks: set[str] = set()
    regular: set[str] = set()
    try:
        for member in archive:
            _add(plan, member, symlinks=symlinks, regular=regular, member_limit=member_limit)
            if plan.total_bytes > total_limit:  # a compressed archive can expand a lot
                raise FileTooLarge(
                    size_bytes=plan.total_bytes, limit_bytes=total_limit, reason="archive_total"
                )
    except (tarfile.TarError, EOFError) as exc:
        raise InvalidArchive(f"The archive is damaged: {exc}", reason="damaged") from exc
    return plan


def _ancestors(
    member: tarfile.TarInfo, rel: str, *, symlinks: set[str], regular: set[str]
) -> list[str]:
    """The directories above a member, none of which may be a link or a file of the archive."""
    parents = rel.split("/")[:-1]
    ancestors = ["/".join(parents[:depth]) for depth in range(1, len(parents) + 1)]
    for ancestor in ancestors:
        if ancestor in symlinks:
            raise _refuse(member.name, "below_symlink", f"it lies below the symlink '{ancestor}'.")
        if ancestor in regular:
            raise _refuse(member.name, "below_file", f"it lies below the file '{ancestor}'.")
    return ancestors


def _add(
    plan: UploadPlan,
    member: tarfile.TarInfo,
    *,
    symlinks: set[str],
    regular: set[str],
    member_limit: int,
) -> None:
    if member.type not in _ALLOWED:
        raise _refuse(member.name, "member_type", "only files, directories and links are allowed.")
    rel = _relative(member)
    if not rel:
        return  # the archive's own root directory: the destination already is it
    plan.ancestors.update(_ancestors(member, rel, symlinks=symlinks, regular=regular))
    mtime = member.mtime
    if member.isdir():
        info = new_info(rel, type=tarfile.DIRTYPE, mode=0o755, mtime=mtime)
        plan.directories += 1
    elif member.issym():
        info = new_info(
            rel, type=tarfile.SYMTYPE, mode=0o777, mtime=mtime, linkname=member.linkname
        )
        symlinks.add(rel)
        plan.symlinks += 1
    elif member.islnk():
        target = posixpath.normpath(member.linkname.lstrip("/"))
        if target not in regular:
            raise _refuse(
                member.name, "hardlink_target", "a hard link must point to an earlier file."
            )
        info = new_info(rel, type=tarfile.LNKTYPE, mode=0o644, mtime=mtime, linkname=target)
        plan.hardlinks += 1
    else:
        if member.size > member_limit:
            raise FileTooLarge(
                size_bytes=member.size, limit_bytes=member_limit, member=member.name[:300]
            )
        # Group/other write and setuid/setgid/sticky never survive an upload.
        info = new_info(rel, size=member.size, mode=(member.mode & 0o755) | 0o600, mtime=mtime)
        regular.add(rel)
        plan.files += 1
        plan.total_bytes += member.size
    plan.entries.append((info, member))
