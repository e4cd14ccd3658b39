"""A file's read through the container's root, sent as the engine's archive of it.

The engine answers an archive read by starting a process of its own that packs the
path inside the container's filesystem, and copies what it packs through itself: for
64 MiB, 200-260 ms of the engine's CPU on this kind of host (bench/README.md). A node
agent that reaches the container's root (``rootfs.ContainerRoots.open_file``: root
beside a runc container, the path a regular file in its volumes) answers the read of
a regular file itself: a tar of that one file, as the engine's would be, its content
sent from the file to the caller in the kernel (``sendfile``). The engine reads as
root, and so does this: the caller confines paths to the workspace
(``paths.resolve``). Everything else (a directory, a link, another runtime) is the
engine's to answer.
"""

from __future__ import annotations

import logging
import os
import socket
import tarfile

from workspaces.runtime.base import PathStat, SpliceableArchive
from workspaces.runtime.splice import sendfile_into

logger = logging.getLogger(__name__)

_END_OF_ARCHIVE = b"\0" * (2 * tarfile.BLOCKSIZE)


class RootFileArchive(SpliceableArchive):
    """The archive of one regular file, open at ``fd`` (closed with this), described by
    ``stat`` (its size is what is sent: a file that grows meanwhile is cut there, one
    that shrinks ends the answer early, which its length shows the caller)."""

    def __init__(self, fd: int, stat: PathStat) -> None:
        self._fd = fd
        self.stat = stat
        found = os.fstat(fd)
        info = tarfile.TarInfo(stat.name)
        info.size, info.mode, info.uid, info.gid = stat.size, stat.mode, found.st_uid, found.st_gid
        info.mtime = found.st_mtime
        self._head = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        self._padding = b"\0" * (-stat.size % tarfile.BLOCKSIZE) + _END_OF_ARCHIVE
        self.length: int | None = len(self._head) + stat.size + len(self._padding)
        self.framing = b"Content-Length: %d" % self.length

    def send_into(self, sock: socket.socket) -> bool:
        sock.sendall(self._head)
        sent = sendfile_into(sock, self._fd, self.stat.size)
        if sent < self.stat.size:
            logger.warning("%s ended %d bytes early", self.stat.name, self.stat.size - sent)
            return False
        sock.sendall(self._padding)
        return True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
