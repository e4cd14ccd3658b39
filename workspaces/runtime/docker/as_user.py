"""Filesystem calls made by this thread with a container user's permissions.

Linux checks a file operation against the calling thread's filesystem uid and gid and
its supplementary groups, and while the filesystem uid is not 0 it also drops the
capabilities that would bypass those checks (``CAP_DAC_OVERRIDE``, ``CAP_FOWNER``, ...:
capabilities(7)). So a root process can do one operation exactly as the workspace user
would, with the kernel deciding, without a process in the container.

All three are per thread in the kernel. The C library's ``setgroups`` changes every
thread of the process (as POSIX wants), so the system calls are made directly: the
process's other threads keep root's credentials throughout. Only where this process
is root and the system call numbers are known (x86-64, arm64); elsewhere
:class:`Unavailable`, and the caller takes the slower way.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

# setgroups, setfsuid, setfsgid
_NUMBERS: Final = {"x86_64": (116, 122, 123), "aarch64": (159, 151, 152)}


class Unavailable(Exception):
    """This process cannot act as another user in one thread."""


def libc_syscall() -> Callable[..., int] | None:
    """The C library's ``syscall``, for the calls Python has no function for."""
    try:
        call = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    call.restype = ctypes.c_long
    return call


_call = libc_syscall()
_numbers = _NUMBERS.get(platform.machine())


def _set_groups(groups: list[int]) -> None:
    assert _call is not None and _numbers is not None
    array = (ctypes.c_uint * max(len(groups), 1))(*groups)
    if _call(_numbers[0], ctypes.c_size_t(len(groups)), array) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), "setgroups")


def _set_fs_id(number: int, value: int) -> int:
    """Sets the thread's filesystem id; returns the one it had. The call cannot fail
    visibly: an invalid or refused id leaves it unchanged, so the caller checks."""
    assert _call is not None
    return int(_call(number, ctypes.c_uint(value)))


def _fs_id(number: int) -> int:
    return _set_fs_id(number, 0xFFFFFFFF)  # (uid_t)-1 is never valid: only reads it


@contextmanager
def thread_as(uid: int, gid: int) -> Iterator[None]:
    """This thread's filesystem calls as ``uid``:``gid`` (host ids), with no other group,
    until the block ends."""
    if _call is None or _numbers is None or os.geteuid() != 0:
        raise Unavailable
    _, set_uid, set_gid = _numbers
    groups = os.getgroups()
    try:
        _set_groups([gid])
    except OSError as exc:  # e.g. root of a user namespace that may not set groups
        raise Unavailable from exc
    previous_gid = _set_fs_id(set_gid, gid)
    previous_uid = _set_fs_id(set_uid, uid)
    try:
        if _fs_id(set_uid) != uid or _fs_id(set_gid) != gid:
            raise Unavailable
        yield
    finally:
        _set_fs_id(set_uid, previous_uid)
        _set_fs_id(set_gid, previous_gid)
        _set_groups(groups)
