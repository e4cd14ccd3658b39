"""Bytes moved from one socket to another inside the kernel: ``splice(2)`` through a pipe.

A node agent forwards an upload from its caller to the engine, and a download from
the engine to its caller. Read into Python and written out again, 64 MiB took ~35 ms
of the agent's CPU; spliced, ~6 ms (bench/README.md), and on a node that CPU is taken
from the engine packing or unpacking the same archive. Plain sockets only: a TLS
connection's bytes must pass through OpenSSL.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import socket
import ssl
from collections.abc import Callable

# The pipe between the two sockets: one splice in and one out per this many bytes (the
# kernel's default of 64 KiB would take 16 times as many calls; above the system's
# pipe-max-size an unprivileged process keeps the default).
PIPE_SIZE = 1024 * 1024


class SourceFailed(Exception):
    """The source socket ended, broke or went quiet before the whole length came."""


def can_splice(sock: socket.socket) -> bool:
    return (
        hasattr(os, "splice")
        and not isinstance(sock, ssl.SSLSocket)
        and sock.family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6)
        and sock.type == socket.SOCK_STREAM
    )


def splice_between(
    src: socket.socket,
    dst: socket.socket | int,
    length: int | None,
    on_taken: Callable[[int], None] = lambda count: None,
) -> None:
    """Move ``length`` bytes (None: all until ``src`` ends) from ``src`` to ``dst`` (a
    socket, or the descriptor of a regular file, which never makes a writer wait),
    waiting on each socket as long as its own timeout allows. ``on_taken(n)`` hears of
    every ``n`` bytes taken from ``src``, so a caller knows what is left there when
    ``dst`` fails (``OSError``, ``TimeoutError``); ``src`` failing raises
    ``SourceFailed``."""
    dst_socket, dst_fd = (None, dst) if isinstance(dst, int) else (dst, dst.fileno())
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        capacity = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
        left = length
        while left is None or left:
            count = capacity if left is None else min(capacity, left)
            try:
                taken = _splice(src, src.fileno(), write_end, count, select.POLLIN)
            except OSError as exc:  # (TimeoutError too)
                raise SourceFailed(str(exc) or type(exc).__name__) from exc
            if not taken:
                if left is None:
                    return
                raise SourceFailed(f"the source ended {left} bytes early")
            if left is not None:
                left -= taken
            on_taken(taken)
            while taken:  # the pipe is emptied before it is filled again: never blocks
                taken -= _splice(dst_socket, read_end, dst_fd, taken, select.POLLOUT)
    finally:
        os.close(read_end)
        os.close(write_end)


def sendfile_into(sock: socket.socket, fd: int, count: int) -> int:
    """Up to ``count`` bytes of the file ``fd`` from its start into ``sock`` in the
    kernel; how many were sent (fewer: the file ended first). ``OSError`` if ``sock``
    fails."""
    sent = 0
    while sent < count:
        try:
            moved = os.sendfile(sock.fileno(), fd, sent, count - sent)
        except BlockingIOError:
            _wait(sock, select.POLLOUT)
            continue
        if not moved:
            break
        sent += moved
    return sent


def write_all(fd: int, data: bytes | memoryview) -> None:
    """All of ``data`` written to the file ``fd`` (a write may take only part)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _splice(sock: socket.socket | None, fd_in: int, fd_out: int, count: int, event: int) -> int:
    """One splice, waiting for ``sock`` (the socket end) while it would block: a socket
    with a timeout is non-blocking underneath. Without a socket (a file), it never would."""
    while True:
        try:
            return os.splice(fd_in, fd_out, count, flags=os.SPLICE_F_MOVE)
        except BlockingIOError:
            if sock is None:
                raise
            _wait(sock, event)


def _wait(sock: socket.socket, event: int) -> None:
    timeout_s = sock.gettimeout()
    poller = select.poll()
    poller.register(sock, event)
    if not poller.poll(None if timeout_s is None else timeout_s * 1000):
        raise TimeoutError(f"the socket was not ready within {timeout_s} s")
