"""Path rules: normalise a client's path, then resolve it inside the workspace.

Two steps, both needed:

1. :func:`normalise` is pure: it turns any string into an absolute, clean path
   under ``/workspace`` (relative paths are taken from ``/workspace``) or
   refuses it (NUL bytes, over-long names, ``..`` escapes, absolute paths
   elsewhere).
2. :func:`resolve` walks the normalised path one component at a time through
   the engine's ``stat`` and follows symlinks itself, refusing any link that
   leads outside ``/workspace``. The engine would follow a symlink in a parent
   component to anywhere in the container (``/workspace/link -> /etc``), so
   the path handed to the engine afterwards has no symlink left in its parents.
   (The Docker engine reports a link's target already resolved, absolute;
   relative targets are handled too, for drivers that report the link text.)
"""

from __future__ import annotations

import posixpath
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from workspaces.filesystem.errors import (
    InvalidPath,
    NotADirectory,
    PathNotFound,
    PathOutsideWorkspace,
)
from workspaces.runtime.base import PathStat
from workspaces.spec import WORKSPACE_ROOT

ROOT = WORKSPACE_ROOT
NAME_MAX = 255  # bytes, as Linux
PATH_MAX = 4096  # bytes, including the root
SYMLINK_MAX = 40  # links followed in one resolution, as Linux

StatFn = Callable[[str], PathStat | None]


def _invalid(path: str, reason: str, message: str) -> InvalidPath:
    return InvalidPath(message, path=path[:300], reason=reason)


def normalise(path: str) -> str:
    """The canonical absolute form of ``path`` under the workspace root, or an error."""
    if not isinstance(path, str):
        raise _invalid(repr(path), "type", "A path must be a string.")
    if path == "":
        raise _invalid(path, "empty", "The path is empty; use '/workspace' for the root.")
    if "\x00" in path:
        raise _invalid(path, "nul_byte", "A path cannot contain a NUL byte.")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise _invalid(path, "encoding", "A path must be valid Unicode text.") from exc
    if size > PATH_MAX:
        raise _invalid(path, "path_too_long", f"The path is longer than {PATH_MAX} bytes.")
    if not path.startswith("/"):
        path = f"{ROOT}/{path}"
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise PathOutsideWorkspace(path=path[:300])
            parts.pop()
            continue
        if len(part.encode("utf-8")) > NAME_MAX:
            raise _invalid(
                path, "name_too_long", f"A path component is longer than {NAME_MAX} bytes."
            )
        parts.append(part)
    clean = "/" + "/".join(parts)
    if not is_within_root(clean):
        raise PathOutsideWorkspace(
            f"'{clean[:200]}' is outside the workspace; paths live under {ROOT}.", path=clean[:300]
        )
    if len(clean.encode("utf-8")) > PATH_MAX:
        raise _invalid(path, "path_too_long", f"The path is longer than {PATH_MAX} bytes.")
    return clean


def is_within_root(clean: str) -> bool:
    return clean == ROOT or clean.startswith(ROOT + "/")


def parts_below_root(clean: str) -> list[str]:
    return [p for p in clean[len(ROOT) :].split("/") if p]


def join_root(parts: list[str] | tuple[str, ...]) -> str:
    return posixpath.join(ROOT, *parts) if parts else ROOT


@dataclass(frozen=True)
class Resolved:
    """Where a normalised path really is, with every symlink in its parents followed."""

    path: str  # absolute; parents are real directories inside the root
    stat: PathStat | None  # of ``path`` itself (not followed); None when it does not exist
    existing: str  # deepest existing directory on the way (``path`` when it is one)
    missing: tuple[str, ...] = ()  # components below ``existing`` that do not exist yet

    @property
    def exists(self) -> bool:
        return self.stat is not None

    @property
    def kind(self) -> str | None:
        return self.stat.kind if self.stat else None


def _escape(link: str, target: str) -> PathOutsideWorkspace:
    return PathOutsideWorkspace(
        f"The symlink {link} points outside the workspace ({target[:200]}); it is not followed.",
        symlink=link,
        target=target[:300],
    )


def resolve(path: str, stat: StatFn, *, follow_final: bool) -> Resolved:
    """Resolve a :func:`normalise` d path component by component, confined to the root.

    Symlinks in parent components are always followed (within the root only);
    the final component is followed only with ``follow_final``. A missing
    component ends the walk: the rest cannot hold symlinks yet.
    """
    pending: deque[str] = deque(parts_below_root(path))
    done: list[str] = []
    followed = 0
    final: PathStat | None = None
    if not pending:
        return Resolved(path=ROOT, stat=stat(ROOT), existing=ROOT)
    while pending:
        name = pending.popleft()
        if name in ("", "."):
            continue
        if name == "..":  # only from a link target: lexical, as the target is joined
            if not done:
                raise PathOutsideWorkspace(path=path[:300])
            done.pop()
            continue
        current = join_root([*done, name])
        last = not pending
        found = stat(current)
        if found is None:
            if ".." in pending:  # as the kernel: nothing can be below a missing directory
                raise PathNotFound(f"{current} does not exist.", path=current[:300])
            rest = normalise(posixpath.join(current, *pending))
            return Resolved(
                path=rest,
                stat=None,
                existing=join_root(done),
                missing=tuple(parts_below_root(rest)[len(done) :]),
            )
        if found.kind == "symlink" and (follow_final or not last):
            followed += 1
            if followed > SYMLINK_MAX:
                raise _invalid(path, "symlink_loop", "Too many levels of symbolic links.")
            target = found.link_target
            if target.startswith("/"):
                clean = posixpath.normpath("/" + target.lstrip("/"))
                if not is_within_root(clean):
                    raise _escape(current, target)
                done = []
                pending.extendleft(reversed(parts_below_root(clean)))
            else:
                pending.extendleft(reversed(target.split("/")))
            continue
        if not last and found.kind != "dir":
            raise NotADirectory(f"{current} is not a directory.", path=current[:300])
        done.append(name)
        final = found if last else None
    resolved = join_root(done)
    if final is None:  # the walk ended on a link to a directory on the way (or the root)
        final = stat(resolved)
    existing = resolved if final is not None and final.kind == "dir" else join_root(done[:-1])
    return Resolved(path=resolved, stat=final, existing=existing)
