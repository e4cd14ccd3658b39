"""File operations on the Docker Engine: the archive API, streamed both ways.

Reads and writes go through ``GET/HEAD/PUT /containers/{id}/archive``: no
process runs in the container, the image needs no tools, and it works while
the workspace is busy. (Where this process reaches the container's root, stats,
renames, a file write's new file and a file's read skip the engine: rootfs.py,
file_put.py, file_get.py.) The
engine cannot rename or unlink, so those two run as tiny fixed commands
(``mv``/``rm``/``rmdir`` with an argv, never parsed by a shell) as the workspace
user, which can do nothing the workspace user could not do anyway; a long-lived
helper shell per container runs them without an exec each (helpers.py).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import posixpath
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

import docker
import docker.errors
import requests

from core.errors import ContainerGone, EngineRefused
from workspaces.runtime.base import (
    ArchiveReader,
    EngineCommandFailed,
    EnginePathNotFound,
    EngineSymlinkLoop,
    PathKind,
    PathStat,
    RuntimeArchive,
    SocketBody,
    SpliceableArchive,
    TreeEntries,
    WorkspaceToolMissing,
    body_length,
)
from workspaces.runtime.docker import helpers
from workspaces.runtime.docker.errors import translated
from workspaces.runtime.docker.file_get import RootFileArchive
from workspaces.runtime.docker.file_put import put_file_through_root
from workspaces.runtime.docker.quick import QuickEngine, StreamedAnswer, raise_engine_error
from workspaces.runtime.docker.rootfs import AskEngine, ContainerRoots, first_process_of
from workspaces.runtime.splice import SourceFailed, splice_between
from workspaces.runtime.tree import TarEntries

logger = logging.getLogger(__name__)

STAT_HEADER = "X-Docker-Container-Path-Stat"

# Go's os.FileMode type bits, as the engine encodes them in the stat header.
_GO_MODE_DIR = 1 << 31
_GO_MODE_SYMLINK = 1 << 27
_GO_MODE_TYPE = (
    _GO_MODE_DIR | _GO_MODE_SYMLINK | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19)
)
# Go keeps setuid/setgid/sticky outside the low bits.
_GO_SETUID, _GO_SETGID, _GO_STICKY = 1 << 23, 1 << 22, 1 << 20

# Exit codes of the engine when the command itself cannot be started.
_CANNOT_RUN = (126, 127)

# Renamed over another file, a new file's data is written out inside rename(2) on ext4
# (``auto_da_alloc``, its default), so its blocks are allocated at once, and freeing the
# allocated blocks of the file it replaces is tens of milliseconds more for 64 MiB
# (bench/README.md). A large file's write (``large_file``) therefore swaps the new file
# and the old one (rootfs.py: renameat2 with RENAME_EXCHANGE), which does neither and is
# just as atomic: a reader sees the old file or the new one, never neither. Like the
# engine's own archive put, this leaves the new data to the kernel's write-back: the
# platform never promised a write that survives a power cut (nothing is fsync'ed either
# way). The swap is made through the container's root, as the workspace user; where
# this process cannot reach it (not root on the engine's host, not runc) the container's
# mv renames the plain way.


def parse_stat(header: str) -> PathStat:
    raw = json.loads(base64.b64decode(header))
    go_mode = int(raw.get("mode", 0))
    kind: PathKind
    if go_mode & _GO_MODE_DIR:
        kind = "dir"
    elif go_mode & _GO_MODE_SYMLINK:
        kind = "symlink"
    elif go_mode & _GO_MODE_TYPE:
        kind = "other"
    else:
        kind = "file"
    mode = go_mode & 0o777
    mode |= 0o4000 if go_mode & _GO_SETUID else 0
    mode |= 0o2000 if go_mode & _GO_SETGID else 0
    mode |= 0o1000 if go_mode & _GO_STICKY else 0
    return PathStat(
        name=raw.get("name", ""),
        kind=kind,
        size=int(raw.get("size", 0)),
        mode=mode,
        mtime=raw.get("mtime", ""),
        link_target=raw.get("linkTarget", "") or "",
    )


class DockerArchiveReader(ArchiveReader):
    def __init__(self, response: requests.Response, stat: PathStat, *, engine_url: str) -> None:
        self._response = response
        self._engine_url = engine_url
        self.stat = stat

    def read(self, size: int = -1) -> bytes:
        with translated(engine_url=self._engine_url):
            data: bytes = self._response.raw.read(None if size < 0 else size, decode_content=True)
        return data

    def close(self) -> None:
        self._response.close()


class _SplicedArchive(SpliceableArchive):
    def __init__(self, answer: StreamedAnswer) -> None:
        assert answer.conn is not None and answer.conn.sock is not None
        self._sock: socket.socket = answer.conn.sock
        self._conn = answer.conn
        self._received = answer.received
        self.stat = parse_stat(answer.headers[STAT_HEADER.lower()])
        self.length: int | None = None
        if "content-length" in answer.headers:
            self.length = int(answer.headers["content-length"])
            self.framing = b"Content-Length: %d" % self.length
        elif answer.headers.get("transfer-encoding", "").lower() == "chunked":
            self.framing = b"Transfer-Encoding: chunked"
        else:  # (Go's server frames every HTTP/1.1 answer one way or the other)
            raise EngineRefused(
                "The engine's archive answer has neither a length nor chunks.",
                engine_status=answer.status,
                container_id=None,
            )

    def send_into(self, sock: socket.socket) -> bool:
        sock.sendall(self._received)
        left = None if self.length is None else self.length - len(self._received)
        try:
            splice_between(self._sock, sock, left)
        except SourceFailed as exc:
            # The reader sees the framing cut short: the stream broke, not ended.
            logger.warning("engine archive stream broke: %s", exc)
            return False
        return True

    def close(self) -> None:
        self._conn.close()


_roots_lock = threading.Lock()
_roots: dict[str, ContainerRoots] = {}


def container_roots(base_url: str, api: Callable[[], docker.APIClient]) -> ContainerRoots:
    """The engine's containers' roots, for stats without the engine (one per engine URL
    per process: it remembers each container's first process)."""
    with _roots_lock:
        roots = _roots.get(base_url)
        if roots is None:
            roots = _roots[base_url] = ContainerRoots(
                lambda container_id: first_process_of(api().inspect_container(container_id))
            )
        return roots


def _json_message(content: bytes) -> str:
    try:
        return str(json.loads(content).get("message", ""))
    except (ValueError, AttributeError):
        return content.decode(errors="replace")


class DockerArchive(RuntimeArchive):
    base_url: str

    @property
    def api(self) -> docker.APIClient:  # provided by DockerLifecycle
        raise NotImplementedError

    @property
    def quick(self) -> QuickEngine | None:  # provided by DockerLifecycle
        raise NotImplementedError

    def _archive_url(self, container_id: str) -> str:
        url: str = self.api._url("/containers/{0}/archive", container_id)
        return url

    def _missing(self, container_id: str, path: str, message: str = "") -> EnginePathNotFound:
        """A 404 is a missing path only if the container is still there."""
        if "no such container" in message.lower():
            raise ContainerGone(container_id=container_id)
        if not message:  # HEAD answers carry no body: ask the engine directly
            with translated(engine_url=self.base_url, container_id=container_id):
                self.api.inspect_container(container_id)
        return EnginePathNotFound(f"{path} does not exist.", path=path)

    def _check(self, container_id: str, path: str, response: requests.Response) -> None:
        if response.status_code < 400:
            return
        message = _json_message(response.content)
        response.close()
        self._refused(
            container_id,
            path,
            response.status_code,
            message,
            lambda: self.api._raise_for_status(response),
        )

    def _refused(
        self,
        container_id: str,
        path: str,
        status: int,
        message: str,
        raise_it: Callable[[], object],
    ) -> None:
        """Raise what an engine answer of ``status`` (400 or more) means for ``path``;
        ``raise_it()`` raises the engine's own error."""
        if status == 404:
            raise self._missing(container_id, path, message or "missing")
        if "too many links" in message:
            raise EngineSymlinkLoop(path=path)
        with translated(engine_url=self.base_url, container_id=container_id):
            raise_it()

    @property
    def roots(self) -> ContainerRoots:
        return container_roots(self.base_url, lambda: self.api)

    def path_stat(self, container_id: str, path: str) -> PathStat | None:
        try:
            return self.roots.path_stat(container_id, path)
        except AskEngine:
            return self.engine_path_stat(container_id, path)

    def path_stat_chain(self, container_id: str, paths: list[str]) -> list[PathStat | None]:
        try:
            return self.roots.path_stat_chain(container_id, paths)
        except AskEngine:
            return super().path_stat_chain(container_id, paths)

    def engine_path_stat(self, container_id: str, path: str) -> PathStat | None:
        """The engine's own answer (``HEAD`` of the archive): what ``path_stat`` gives
        when the container's root cannot be reached from this process."""
        quick = self.quick
        with translated(engine_url=self.base_url, container_id=container_id):
            if quick is not None:
                status, headers = quick.head(f"/containers/{container_id}/archive", {"path": path})
            else:
                response = self.api.head(self._archive_url(container_id), params={"path": path})
                status, headers = response.status_code, response.headers
        if status == 404:
            self._missing(container_id, path)
            return None
        if status >= 400:
            # A HEAD answer has no body: ask again to learn why (a symlink loop?).
            self.archive_get(container_id, path).close()
            with translated(engine_url=self.base_url, container_id=container_id):
                raise_engine_error(status, b"")
        return parse_stat(headers[STAT_HEADER.lower()])  # (either kind of headers: any case)

    def archive_get(self, container_id: str, path: str) -> ArchiveReader:
        with translated(engine_url=self.base_url, container_id=container_id):
            # identity: the engine would otherwise gzip the tar, at a CPU cost on both ends.
            response = self.api._get(
                self._archive_url(container_id),
                params={"path": path},
                stream=True,
                headers={"Accept-Encoding": "identity"},
            )
        self._check(container_id, path, response)
        try:
            stat = parse_stat(response.headers[STAT_HEADER])
        except BaseException:
            response.close()
            raise
        return DockerArchiveReader(response, stat, engine_url=self.base_url)

    def archive_get_spliceable(self, container_id: str, path: str) -> SpliceableArchive | None:
        try:
            # A regular file, read through the container's root (file_get.py).
            fd, stat = self.roots.open_file(container_id, path)
        except AskEngine:
            pass
        else:
            try:
                return RootFileArchive(fd, stat)
            except BaseException:
                os.close(fd)
                raise
        quick = self.quick
        if quick is None:
            return None
        with translated(engine_url=self.base_url, container_id=container_id):
            answer = quick.get_streamed(f"/containers/{container_id}/archive", {"path": path})
        if answer.conn is None:
            status, content = answer.status, answer.received
            self._refused(
                container_id,
                path,
                status,
                _json_message(content),
                lambda: raise_engine_error(status, content),
            )
            raise AssertionError("unreachable")  # (_refused raised)
        try:
            return _SplicedArchive(answer)
        except BaseException:
            answer.conn.close()
            raise

    def tree_entries(self, container_id: str, path: str, *, nested: bool) -> TreeEntries:
        return TarEntries(self.archive_get(container_id, path), nested=nested)

    def archive_put(self, container_id: str, path: str, data: Iterable[bytes]) -> None:
        # noOverwriteDirNonDir: as `docker cp`, a file in the tar never wipes an existing
        # directory.
        params = {"path": path, "noOverwriteDirNonDir": "true"}
        quick = self.quick
        if quick is not None and isinstance(data, SocketBody) and data.spliceable:
            # An upload to a node agent: moved from the caller's socket to the engine's
            # in the kernel, never read through Python (splice.py).
            with translated(engine_url=self.base_url, container_id=container_id):
                status, content = quick.put_body(
                    f"/containers/{container_id}/archive", params, data
                )
            if status >= 400:
                message = _json_message(content)
                self._refused(
                    container_id, path, status, message, lambda: raise_engine_error(status, content)
                )
            return
        # A generator body goes out with chunked transfer encoding: nothing is held
        # whole. A body with a length (bytes, a SizedTar) goes out with a Content-Length
        # and no chunk framing; a list would go out as a form.
        body = data if body_length(data) is not None else iter(data)
        with translated(engine_url=self.base_url, container_id=container_id):
            response = self.api._put(self._archive_url(container_id), params=params, data=body)
        self._check(container_id, path, response)

    def archive_put_then_rename(
        self,
        container_id: str,
        path: str,
        data: Iterable[bytes],
        *,
        src: str,
        dst: str,
        user: str,
        large_file: bool = False,
    ) -> None:
        # A file write's temp file is created through the container's root where it
        # can be (file_put.py); the engine puts whatever else.
        rest = put_file_through_root(self.roots, container_id, path, data, src=src, user=user)
        if rest is not None:
            self.archive_put(container_id, path, rest)
        self.path_rename(container_id, src, dst, user=user, large_file=large_file)

    def _run_fixed(self, container_id: str, argv: list[str], *, user: str) -> None:
        """Run one fixed command (an argv, never parsed by a shell) and raise if it fails:
        in the container's helper shell (helpers.py), or a one-off exec."""
        for arg in argv[1:]:
            # Defence in depth: callers pass normalised absolute paths and flags only.
            if not arg.startswith(("/", "-")) or "\x00" in arg:
                raise ValueError(f"refusing unsafe argument {arg!r}")
        answer = helpers.pool.run(self.api, self.base_url, container_id, argv, user)
        if answer is not None:
            exit_code, output = answer
        else:
            with translated(engine_url=self.base_url, container_id=container_id):
                created: dict[str, Any] = self.api.exec_create(
                    container_id, argv, user=user, workdir="/", environment={"LC_ALL": "C"}
                )
                output = self.api.exec_start(created["Id"])
                exit_code = self.api.exec_inspect(created["Id"]).get("ExitCode")
        if exit_code == 0:
            return
        text = output.decode(errors="replace").strip()
        if exit_code in _CANNOT_RUN:
            raise WorkspaceToolMissing(
                f"The workspace image cannot run '{argv[0]}', which this file operation needs.",
                command=argv[0],
                output=text[-500:],
            )
        raise EngineCommandFailed(
            f"'{argv[0]}' failed in the workspace: {text[-500:] or f'exit code {exit_code}'}",
            command=argv[0],
            exit_code=exit_code,
            output=text[-500:],
        )

    def path_rename(
        self, container_id: str, src: str, dst: str, *, user: str, large_file: bool = False
    ) -> None:
        try:
            # Through the container's root, as the user: no process in the container.
            self.roots.rename(container_id, src, dst, user=user, swap=large_file)
            return
        except AskEngine:
            pass
        # -T: rename(2) semantics, never "move into dst" when dst is a directory.
        self._run_fixed(container_id, ["mv", "-f", "-T", "--", src, dst], user=user)

    def path_remove(
        self, container_id: str, path: str, *, kind: PathKind, recursive: bool, user: str
    ) -> None:
        if posixpath.normpath(path) in ("/", "."):
            raise ValueError("refusing to remove the container root")
        if kind == "dir" and not recursive:
            argv = ["rmdir", "--", path]  # fails on a non-empty directory, as it should
        else:
            argv = ["rm", "-rf" if recursive else "-f", "--", path]
        self._run_fixed(container_id, argv, user=user)
