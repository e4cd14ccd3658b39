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
from dataclasses import dataclass, field

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


def _check_text(path: str) -> None:
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


def _collapse(path: str) -> list[str]:
    """The components of an absolute path with '.', '..' and empty ones applied."""
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
    return parts


def normalise(path: str) -> str:
    """The canonical absolute form of ``path`` under the workspace root, or an error."""
    _check_text(path)
    if not path.startswith("/"):
        path = f"{ROOT}/{path}"
    clean = "/" + "/".join(_collapse(path))
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
    if not parts_below_root(path):
        return Resolved(path=ROOT, stat=stat(ROOT), existing=ROOT)
    walk = _Walk(path=path, pending=deque(parts_below_root(path)))
    final: PathStat | None = None
    while walk.pending:
        name = walk.pending.popleft()
        if walk.dots(name):
            continue
        current = join_root([*walk.done, name])
        last = not walk.pending
        found = stat(current)
        if found is None:
            return walk.missing(current)
        if found.kind == "symlink" and (follow_final or not last):
            walk.follow(current, found.link_target)
            continue
        if not last and found.kind != "dir":
            raise NotADirectory(f"{current} is not a directory.", path=current[:300])
        walk.done.append(name)
        final = found if last else None
    resolved = join_root(walk.done)
    if final is None:  # the walk ended on a link to a directory on the way (or the root)
        final = stat(resolved)
    is_dir = final is not None and final.kind == "dir"
    return Resolved(
        path=resolved, stat=final, existing=resolved if is_dir else join_root(walk.done[:-1])
    )


@dataclass
class _Walk:
    """Components still to visit and those resolved so far (real directories in the root)."""

    path: str
    pending: deque[str]
    done: list[str] = field(default_factory=list)
    followed: int = 0

    def dots(self, name: str) -> bool:
        """Apply an empty, '.' or '..' component (only link targets still hold them)."""
        if name in ("", "."):
            return True
        if name != "..":
            return False
        # Lexical, as the target is joined.
        if not self.done:
            raise PathOutsideWorkspace(path=self.path[:300])
        self.done.pop()
        return True

    def missing(self, current: str) -> Resolved:
        """The walk reached a component that does not exist: the rest is missing too."""
        if ".." in self.pending:  # as the kernel: nothing can be below a missing directory
            raise PathNotFound(f"{current} does not exist.", path=current[:300])
        rest = normalise(posixpath.join(current, *self.pending))
        return Resolved(
            path=rest,
            stat=None,
            existing=join_root(self.done),
            missing=tuple(parts_below_root(rest)[len(self.done) :]),
        )

    def follow(self, link: str, target: str) -> None:
        """Continue the walk at the link's target, which must stay inside the root."""
        self.followed += 1
        if self.followed > SYMLINK_MAX:
            raise _invalid(self.path, "symlink_loop", "Too many levels of symbolic links.")
        if target.startswith("/"):
            clean = posixpath.normpath("/" + target.lstrip("/"))
            if not is_within_root(clean):
                raise _escape(link, target)
            self.done = []
            self.pending.extendleft(reversed(parts_below_root(clean)))
        else:
            self.pending.extendleft(reversed(target.split("/")))
