"""A running container's files stat'ed through its process's root, without the engine.

The engine answers ``HEAD /containers/{id}/archive`` by mounting the container's
filesystem and volumes for that one call and unmounting them after: most of a file
stat's cost, and CPU taken from every other request on the machine. A process that
may trace the container's first process (root on the engine's host) reaches the same
files, already mounted, at ``/proc/<pid>/root``. This module answers a stat there,
with the engine's own semantics (``daemon/archive.go`` of the engine we run:
``ResolvePath`` then ``StatPath``, symlinks followed lexically in the container's
scope), and says "ask the engine" whenever it cannot:

- the container is not runc's (gVisor keeps its files in its sandbox), not running,
  or not on this host (its first process is not in its cgroup as this host sees it);
- this process may not look there (not root, a seccomp filter without ``openat2``);
- anything the engine would answer with an error other than "no such path".

Every lookup is confined to the container's root by the kernel (``openat2`` with
``RESOLVE_IN_ROOT``: absolute links and ``..`` stop at that root, and magic links are
refused), so a link a workspace makes, or swaps in mid-walk, cannot lead outside it.
The first process is checked to still be the container's on every call, through the
``/proc/<pid>`` directory opened once: a recycled pid fails the check, never reads
another process's files.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import platform
import posixpath
import stat as stat_bits
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from workspaces.runtime.base import PathKind, PathStat
from workspaces.runtime.docker.as_user import Unavailable, libc_syscall, thread_as

log = logging.getLogger(__name__)

_SYS_OPENAT2: Final = 437  # the same number on every architecture Linux has added it to
_RESOLVE_NO_MAGICLINKS: Final = 0x02
_RESOLVE_IN_ROOT: Final = 0x10
_MAX_STEPS: Final = 255  # the engine's limit on components walked while following links
_MAX_REMEMBERED: Final = 4096  # containers whose first process is remembered
_RUNC: Final = ("runc", "io.containerd.runc.v2")  # a runtime whose processes hold the files
# renameat2 predates the shared numbering of new system calls.
_SYS_RENAMEAT2: Final = {"x86_64": 316, "aarch64": 276}.get(platform.machine())
_RENAME_EXCHANGE: Final = 2


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class AskEngine(Exception):
    """This stat is the engine's to answer (see the module's docstring)."""


_syscall = libc_syscall()


def _open_in_root(root_fd: int, path: str) -> int:
    """An ``O_PATH`` descriptor of the directory ``path``, resolved inside ``root_fd``."""
    if _syscall is None:
        raise AskEngine
    how = _OpenHow(
        flags=os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC,
        resolve=_RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS,
    )
    fd = _syscall(_SYS_OPENAT2, root_fd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)
    return fd


@dataclass(frozen=True)
class FirstProcess:
    """What the engine says of a container that a stat through its root needs."""

    pid: int  # on this host; 0 when it is not running
    runtime: str
    volumes: tuple[str, ...]  # where its volumes and bind mounts are, in the container
    tmpfs: tuple[str, ...] = ()  # where its tmpfs mounts are (the engine's stat sees below)

    @property
    def reachable(self) -> bool:
        return self.pid > 0 and self.runtime in _RUNC and bool(self.volumes)


class _Root:
    """The container's root directory, for the lookups of one stat.

    Only paths inside the container's volumes are looked up here. Elsewhere the
    process sees mounts the engine's stat does not (``/proc``, ``/dev``, the tmpfs at
    ``/tmp``): the engine answers those, so that both give the same answer.
    """

    def __init__(self, fd: int, process: FirstProcess) -> None:
        self.fd = fd
        self._process = process

    @property
    def pid(self) -> int:
        return self._process.pid

    def _inside_volumes(self, path: str) -> None:
        if not any(_within(path, v) for v in self._process.volumes) or any(
            _within(path, t) for t in self._process.tmpfs
        ):
            raise AskEngine

    def lstat(self, path: str) -> os.stat_result | None:
        """``lstat`` of the absolute container path ``path`` (None: it does not exist)."""
        self._inside_volumes(path)
        parent, name = posixpath.split(path)
        try:
            dir_fd = _open_in_root(self.fd, parent)
        except FileNotFoundError:
            return None
        try:
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(dir_fd)

    def readlink(self, path: str) -> str:
        self._inside_volumes(path)
        parent, name = posixpath.split(path)
        dir_fd = _open_in_root(self.fd, parent)
        try:
            return os.readlink(name, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)

    def in_scope(self, path: str) -> str:
        """Where ``path`` leads with every symlink on it followed, lexically, without
        leaving the root; components that do not exist are kept as they are (the
        engine's ``FollowSymlinkInScope`` with the container's root as the scope)."""
        done = "/"  # resolved so far: real directories, or names that do not exist
        rest = _clean(path).lstrip("/")
        steps = 0
        while rest:
            steps += 1
            if steps > _MAX_STEPS:
                raise AskEngine  # the engine's "too many links" error, in its words
            part, _, rest = rest.partition("/")
            if not part:
                continue
            candidate = _clean(f"{done}/{part}")
            if candidate == "/":
                done = "/"
                continue
            found = self.lstat(candidate)
            if found is None or not stat_bits.S_ISLNK(found.st_mode):
                done = candidate
                continue
            target = self.readlink(candidate)
            if target.startswith("/"):
                done = "/"
            rest = f"{target}/{rest}"
        return done


def _clean(path: str) -> str:
    """``path`` made absolute and lexically clean (Go's ``filepath.Clean``: unlike
    ``normpath``, a leading ``//`` is one separator)."""
    return posixpath.normpath("/" + path.lstrip("/"))


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _kind(mode: int) -> PathKind:
    if stat_bits.S_ISDIR(mode):
        return "dir"
    if stat_bits.S_ISLNK(mode):
        return "symlink"
    if stat_bits.S_ISREG(mode):
        return "file"
    return "other"


def engine_time(seconds: int, nanoseconds: int) -> str:
    """A file time as the engine writes it (Go's RFC 3339 with nanoseconds, trailing
    zeros dropped, in the host's zone: the ETag cache keys on this text)."""
    local = time.localtime(seconds)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", local)
    if nanoseconds:
        text += f".{nanoseconds:09d}".rstrip("0")
    offset = local.tm_gmtoff or 0
    if offset == 0:
        return text + "Z"
    sign = "+" if offset > 0 else "-"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def _as_engine_finds(root: _Root, path: str) -> tuple[str, str, str]:
    """``path`` clean, its last name, and where the engine looks for it: its parents
    resolved in scope, the last name not."""
    if not path.startswith("/") or (path.endswith(("/", "/.")) and path != "/"):
        raise AskEngine  # (a trailing separator changes what the engine looks at)
    if "\x00" in path:
        raise AskEngine  # the kernel would read the path only up to it
    absolute = _clean(path)
    parent, name = posixpath.split(absolute)
    return absolute, name, posixpath.join(root.in_scope(parent), name) if name else "/"


def _path_stat(root: _Root, path: str) -> PathStat | None:
    """The engine's stat of ``path``."""
    absolute, name, resolved = _as_engine_finds(root, path)
    found = root.lstat(resolved)
    if found is None:
        return None
    seconds, nanoseconds = divmod(found.st_mtime_ns, 1_000_000_000)
    link_target = ""
    if stat_bits.S_ISLNK(found.st_mode):
        link_target = root.in_scope(absolute)
    return PathStat(
        name=name or "/",
        kind=_kind(found.st_mode),
        size=found.st_size,
        mode=stat_bits.S_IMODE(found.st_mode),
        mtime=engine_time(seconds, nanoseconds),
        link_target=link_target,
    )


def _open_regular(root: _Root, path: str) -> tuple[int, PathStat]:
    _, name, resolved = _as_engine_finds(root, path)
    if not name:
        raise AskEngine
    root._inside_volumes(resolved)
    dir_fd = _open_in_root(root.fd, posixpath.dirname(resolved))
    try:
        # O_PATH first: nothing of the file is opened (a device, a FIFO) until it is
        # known to be a regular file; then that very file is opened through /proc.
        path_fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    try:
        found = os.fstat(path_fd)
        if not stat_bits.S_ISREG(found.st_mode):
            raise AskEngine
        fd = os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(path_fd)
    seconds, nanoseconds = divmod(found.st_mtime_ns, 1_000_000_000)
    return fd, PathStat(
        name=name,
        kind="file",
        size=found.st_size,
        mode=stat_bits.S_IMODE(found.st_mode),
        mtime=engine_time(seconds, nanoseconds),
        link_target="",
    )


class ContainerRoots:
    """Stats through containers' roots, for the containers of one engine.

    ``first_process(container_id)`` asks the engine (an inspect); it is asked once per
    container, again only when the process it named is gone.
    """

    def __init__(self, first_process: Callable[[str], FirstProcess]) -> None:
        self._first_process = first_process
        self._known: dict[str, FirstProcess] = {}
        self._lock = threading.Lock()
        self.usable = _syscall is not None

    def path_stat(self, container_id: str, path: str) -> PathStat | None:
        """The stat of ``path``, or None when it does not exist; ``AskEngine`` when the
        engine must answer."""
        return self.path_stat_chain(container_id, [path])[0]

    def path_stat_chain(self, container_id: str, paths: list[str]) -> list[PathStat | None]:
        """As ``RuntimeArchive.path_stat_chain``, through one opening of the root."""
        stats: list[PathStat | None] = []
        with self._root(container_id) as root:
            for path in paths:
                try:
                    found = _path_stat(root, path)
                except OSError as exc:
                    if exc.errno in (errno.ENOSYS, errno.EPERM):
                        self._unusable(exc)
                    raise AskEngine from exc
                stats.append(found)
                if found is None or found.kind != "dir":
                    break
        return stats

    def rename(self, container_id: str, src: str, dst: str, *, user: str, swap: bool) -> bool:
        """Rename ``src`` to ``dst`` (clean absolute paths in the container's volumes) as
        ``user`` (``uid:gid``, not root), the kernel checking the user's permissions
        (as_user.py).
        ``swap``: when ``dst`` is a regular file, exchange the two names atomically and
        remove the old file (at ``src`` then) instead (see ``archive.py``). True when it
        swapped. ``AskEngine`` when the container's own ``mv`` must do it, also when the
        rename fails: that answers with the error a workspace user would see."""
        with self._as_user(container_id, user, (src, dst)) as root_fd:
            (src_dir, src_name), (dst_dir, dst_name) = map(posixpath.split, (src, dst))
            try:
                return _rename_in(root_fd, src_dir, src_name, dst_dir, dst_name, swap)
            except _NotRenamed as exc:
                raise AskEngine from exc

    def open_file(self, container_id: str, path: str) -> tuple[int, PathStat]:
        """A read-only descriptor of the regular file ``path`` and its stat, as the
        engine's archive read finds it (parents resolved in scope, the last name not
        followed), read with root's rights as the engine reads. ``AskEngine`` for
        anything else (a directory, a link, a device, a missing path...): the engine
        answers those in its own words."""
        with self._root(container_id) as root:
            try:
                return _open_regular(root, path)
            except OSError as exc:
                if exc.errno in (errno.ENOSYS, errno.EPERM):
                    self._unusable(exc)
                raise AskEngine from exc

    def may_create(self, container_id: str, path: str) -> bool:
        """Whether :meth:`create_file` may be able to create ``path``, from what is known
        of the container already (an inspect the first time): a cheap look first, before
        a caller reads anything it would have to give back."""
        if not self.usable:
            return False
        try:
            process = self._process(container_id, fresh=False)
        except AskEngine:
            return False
        return (
            process.reachable
            and path == _clean(path)
            and any(_within(path, v) for v in process.volumes)
            and not any(_within(path, t) for t in process.tmpfs)
        )

    def create_file(
        self,
        container_id: str,
        path: str,
        *,
        user: str,
        mode: int,
        mtime_ns: int,
        fill: Callable[[int], None],
    ) -> None:
        """Create the new file ``path`` (a clean absolute path in the container's volumes,
        whose directory exists) as ``user`` (``uid:gid``, not root), the kernel checking
        the user's permissions, and have ``fill(fd)`` write its content; then its mode
        (exactly, whatever the umask) and times are set, and its group is the user's, as
        the engine's archive put leaves a file. ``AskEngine`` when the file cannot be
        created here (``fill`` was not called); when ``fill`` or what follows fails, the
        file is removed and the error raised."""
        with self._as_user(container_id, user, (path,)) as root_fd:
            directory, name = posixpath.split(path)
            gid = _ids(user)[1]
            _create_in(root_fd, directory, name, fill, mode=mode, mtime_ns=mtime_ns, gid=gid)

    @contextmanager
    def _as_user(self, container_id: str, user: str, paths: tuple[str, ...]) -> Iterator[int]:
        """The container's root (a descriptor) in a block where this thread acts as
        ``user``; ``AskEngine`` unless every path is clean and inside its volumes, and
        the user's ids are the host's."""
        uid, gid = _ids(user)
        if uid == 0 or any("\x00" in path for path in paths):
            # Root here keeps the host's capabilities, which a workspace's root lacks.
            raise AskEngine
        with self._root(container_id) as root:
            for path in paths:
                if path != _clean(path) or path == "/":
                    raise AskEngine
                root._inside_volumes(path)
            if not _ids_are_the_hosts(root.pid):
                raise AskEngine  # (a user namespace: its ids are not the host's)
            try:
                with thread_as(uid, gid):
                    yield root.fd
            except Unavailable as exc:
                raise AskEngine from exc

    @contextmanager
    def _root(self, container_id: str) -> Iterator[_Root]:
        if not self.usable:
            raise AskEngine
        for attempt in range(2):
            process = self._process(container_id, fresh=attempt > 0)
            if not process.reachable:
                raise AskEngine
            root_fd = self._open_root(container_id, process.pid)
            if root_fd is not None:
                break
        else:
            raise AskEngine
        try:
            yield _Root(root_fd, process)
        finally:
            os.close(root_fd)

    def first_pid(self, container_id: str) -> int:
        """The pid, on this host, of a running runc container's first process, checked to
        still be the container's; ``AskEngine`` when there is none here."""
        for attempt in range(2):
            process = self._process(container_id, fresh=attempt > 0)
            if process.pid <= 0 or process.runtime not in _RUNC:
                raise AskEngine
            try:
                proc_fd = os.open(f"/proc/{process.pid}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                if _in_cgroup_of(proc_fd, container_id):
                    return process.pid
            except OSError:
                pass  # it ended meanwhile
            finally:
                os.close(proc_fd)
        raise AskEngine

    def _process(self, container_id: str, *, fresh: bool) -> FirstProcess:
        known = None if fresh else self._known.get(container_id)
        if known is not None:
            return known
        try:
            process = self._first_process(container_id)
        except Exception as exc:  # the engine's own answer to the stat tells the caller why
            raise AskEngine from exc
        if process.pid > 0:  # (a stopped container's next process is not known yet)
            with self._lock:
                if len(self._known) >= _MAX_REMEMBERED:
                    self._known.clear()
                self._known[container_id] = process
        return process

    def _open_root(self, container_id: str, pid: int) -> int | None:
        """The root of ``pid`` if it is still the first process of ``container_id``."""
        try:
            proc_fd = os.open(f"/proc/{pid}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            if not _in_cgroup_of(proc_fd, container_id):
                return None
            return os.open("root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=proc_fd)
        except (FileNotFoundError, ProcessLookupError):
            return None  # it ended meanwhile
        except PermissionError as exc:
            self._unusable(exc)
            raise AskEngine from exc
        finally:
            os.close(proc_fd)

    def _unusable(self, exc: OSError) -> None:
        if self.usable:
            log.info("container roots are not reachable from here (%s); the engine stats", exc)
        self.usable = False


def _ids(user: str) -> tuple[int, int]:
    """``uid:gid`` as numbers; ``AskEngine`` for any other form (a name, say)."""
    uid, _, gid = user.partition(":")
    if not (uid.isdigit() and gid.isdigit()):
        raise AskEngine
    return int(uid), int(gid)


def _create_in(
    root_fd: int,
    directory: str,
    name: str,
    fill: Callable[[int], None],
    *,
    mode: int,
    mtime_ns: int,
    gid: int,
) -> None:
    """Create ``name`` in ``directory`` (resolved inside the root), fill it and set its
    mode, times and group, in this thread's credentials. ``AskEngine`` when it cannot be
    created (an existing name is never opened); after that, a failure removes it."""
    try:
        dir_fd = _open_in_root(root_fd, directory)
    except OSError as exc:
        raise AskEngine from exc
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
        except OSError as exc:
            raise AskEngine from exc
        try:
            fill(fd)
            if os.fstat(fd).st_gid != gid:  # (a set-group-id directory's group)
                os.fchown(fd, -1, gid)
            os.fchmod(fd, mode)
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        except BaseException:
            _discard(dir_fd, name)
            raise
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)


def _discard(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError as exc:
        log.warning("could not remove the unfinished file %s: %s", name, exc)


class _NotRenamed(Exception):
    """The rename failed, and nothing changed."""


def _rename_in(
    root_fd: int, src_dir: str, src_name: str, dst_dir: str, dst_name: str, swap: bool
) -> bool:
    """The rename itself, in this thread's credentials; both directories resolved inside
    the root as that user would resolve them."""
    try:
        src_fd = _open_in_root(root_fd, src_dir)
    except OSError as exc:
        raise _NotRenamed from exc
    dst_fd = src_fd
    try:
        if dst_dir != src_dir:
            dst_fd = _open_in_root(root_fd, dst_dir)
        if not (swap and _is_regular(dst_fd, dst_name)):
            os.rename(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            return False
        _renameat2(src_fd, src_name, dst_fd, dst_name, _RENAME_EXCHANGE)
    except OSError as exc:
        raise _NotRenamed from exc
    else:
        # Swapped: the old file is at src now. Were its removal to fail, the new file
        # is in place all the same (only the temp name is left to see).
        try:
            os.unlink(src_name, dir_fd=src_fd)
        except OSError as exc:
            log.warning("could not remove the replaced file %s: %s", src_name, exc)
        return True
    finally:
        if dst_fd != src_fd:
            os.close(dst_fd)
        os.close(src_fd)


def _is_regular(dir_fd: int, name: str) -> bool:
    try:
        return stat_bits.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _renameat2(src_fd: int, src: str, dst_fd: int, dst: str, flags: int) -> None:
    if _syscall is None or _SYS_RENAMEAT2 is None:
        raise OSError(errno.ENOSYS, "renameat2")
    done = _syscall(_SYS_RENAMEAT2, src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), flags)
    if done != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), dst)


def _ids_are_the_hosts(pid: int) -> bool:
    """Whether the process's user and group ids are the host's (no user namespace)."""
    try:
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}") as ids:
                if ids.read().split() != ["0", "0", "4294967295"]:
                    return False
    except OSError:
        return False
    return True


def _in_cgroup_of(proc_fd: int, container_id: str) -> bool:
    """Whether the process of ``proc_fd`` is in the container's cgroup (the engine names
    a container's cgroup after its id, with either cgroup driver)."""
    fd = os.open("cgroup", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc_fd)
    try:
        text = os.read(fd, 65536).decode(errors="replace")
    finally:
        os.close(fd)
    return any(
        line.endswith((f"/{container_id}", f"/docker-{container_id}.scope"))
        for line in text.splitlines()
    )


def first_process_of(raw: dict[str, Any]) -> FirstProcess:
    """``ContainerRoots``' view of an engine's container inspect answer."""
    state = raw.get("State") or {}
    host_config = raw.get("HostConfig") or {}
    return FirstProcess(
        pid=int(state.get("Pid") or 0) if state.get("Running") else 0,
        runtime=str(host_config.get("Runtime") or ""),
        volumes=tuple(
            _clean(m["Destination"])
            for m in raw.get("Mounts") or []
            if m.get("Type") in ("volume", "bind") and m.get("Destination")
        ),
        tmpfs=tuple(
            [_clean(t) for t in host_config.get("Tmpfs") or {}]
            + [
                _clean(m["Destination"])
                for m in raw.get("Mounts") or []
                if m.get("Type") == "tmpfs" and m.get("Destination")
            ]
        ),
    )
