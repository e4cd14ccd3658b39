"""Exec operations on the Docker Engine: demultiplexed streaming, inspect, interactive tty.

The exec's start hands over the hijacked connection (``QuickEngine.upgrade`` on a
local socket, docker-py's ``exec_start(socket=True)`` otherwise); reading it
ourselves lets another thread close it to stop a reader, which the iterator
docker-py builds cannot do. On the quick path the frames are parsed here
(``demultiplexed``): docker-py's parser polls the socket before each of its reads,
and reads each frame's 8-byte header and its data separately; and while output flows,
one read gathers what arrives within a couple of milliseconds (``GatheringReads``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import docker

from core.errors import ExecStreamBroken
from workspaces.runtime.base import ExecOutput, ExecSpec, ExecState, InteractiveExec, RuntimeExec
from workspaces.runtime.docker.errors import translated
from workspaces.runtime.docker.quick import QuickEngine
from workspaces.runtime.docker.rootfs import AskEngine, ContainerRoots
from workspaces.runtime.docker.runc_exec import RuncContainer, RuncExecs, discover


def raw_socket(sock: Any) -> socket.socket | None:
    """The OS-level socket under docker-py's wrapper (SocketIO or a plain socket)."""
    if isinstance(sock, socket.socket):
        return sock
    raw = getattr(sock, "_sock", None)
    return raw if isinstance(raw, socket.socket) else None


def _prepare(sock: Any) -> None:
    # The client-wide request timeout must not end a quiet, long-running stream.
    raw = raw_socket(sock)
    if raw is not None:
        raw.settimeout(None)


def shutdown_stream(sock: Any) -> None:
    raw = raw_socket(sock)
    if raw is not None:
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
    response = getattr(sock, "_response", None)
    if response is not None:
        with contextlib.suppress(Exception):
            response.close()


# A frame of the engine's multiplexed stream: stream number, 3 bytes unused, length.
_FRAME_HEADER = struct.Struct(">BxxxL")
_READ_BYTES = 64 * 1024

# While output flows, a read waits up to GATHER_S for up to GATHER_BYTES. The engine
# forwards an exec's output as the process writes it, a pipe's worth (~4 KiB) at a time:
# a read, a batch and a wake-up of the runner per piece (2,000 for 8 MiB of `yes`) cost
# the worker more CPU than the bytes themselves; gathered, the same 8 MiB take ~40 reads.
# The first bytes after a quiet spell are never held (that read is an ordinary one), so
# a line printed now and then reaches watchers as soon as before; inside a burst no
# byte waits more than GATHER_S.
GATHER_S = 0.002
GATHER_BYTES = 256 * 1024
_NO_TIMEOUT = struct.pack("@ll", 0, 0)  # struct timeval: wait without a limit


class GatheringReads:
    """``recv`` of a blocking stream socket that gathers while output flows (above).

    The gathering read is the kernel's: ``MSG_WAITALL`` under ``SO_RCVTIMEO`` returns
    once ``GATHER_BYTES`` arrived or the time is up, with what arrived, in one call (and
    one release of the interpreter's lock). A socket with a Python-level timeout (not
    blocking underneath) or one that refuses the option is read plainly."""

    def __init__(self, sock: socket.socket, gather_s: float = GATHER_S) -> None:
        self._sock = sock
        self._gather = struct.pack("@ll", int(gather_s), int(gather_s % 1 * 1_000_000))
        self._usable = sock.gettimeout() is None
        self._gathering = False

    def __call__(self, max_bytes: int) -> bytes:
        if self._gathering:
            try:
                return self._sock.recv(max(max_bytes, GATHER_BYTES), socket.MSG_WAITALL)
            except BlockingIOError:  # nothing within GATHER_S: quiet again
                self._gathering = False
                self._receive_timeout(_NO_TIMEOUT)
        data = self._sock.recv(max_bytes)
        if data and self._usable:
            self._gathering = self._receive_timeout(self._gather)
        return data

    def _receive_timeout(self, timeval: bytes) -> bool:
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        except OSError:
            self._usable = False
            return False
        return True


def demultiplexed(
    received: bytes, recv: Callable[[int], bytes], read_bytes: int = _READ_BYTES
) -> Iterator[tuple[int, bytes]]:
    """The ``(stream, data)`` frames of an exec's multiplexed stream (see
    :func:`demultiplexed_batches`), one at a time."""
    for batch in demultiplexed_batches(received, recv, read_bytes):
        yield from batch


def demultiplexed_batches(
    received: bytes, recv: Callable[[int], bytes], read_bytes: int = _READ_BYTES
) -> Iterator[list[tuple[int, bytes]]]:
    """The ``(stream, data)`` frames of an exec's multiplexed stream, in lists of those one
    read brought (consecutive frames of one stream as one piece): ``received`` (read with
    the answer's head) first, then what ``recv`` gives until it ends. A frame's data is
    handed on as it arrives (a large frame in several pieces). An end mid-frame ends the
    output, as docker-py's parser does."""
    pending = received
    stream = left = 0  # the frame being read: its stream and the bytes still to come
    while True:
        spans: list[tuple[int, int, int]] = []  # (stream, start, end) in pending
        pos, end = 0, len(pending)
        while pos < end:
            if left:
                take = min(left, end - pos)
                spans.append((stream, pos, pos + take))
                pos += take
                left -= take
            elif end - pos >= _FRAME_HEADER.size:
                stream, left = _FRAME_HEADER.unpack_from(pending, pos)
                pos += _FRAME_HEADER.size
            else:
                break
        if spans:
            yield _pieces(pending, spans)
        rest = pending[pos:]  # part of a header
        data = recv(read_bytes)
        if not data:
            return
        pending = rest + data if rest else data


def _pieces(pending: bytes, spans: list[tuple[int, int, int]]) -> list[tuple[int, bytes]]:
    """The data of ``spans``, consecutive spans of one stream as one piece (a gathered
    read holds many small frames): copied once, and not at all when a piece is the whole
    read."""
    view = memoryview(pending)
    pieces: list[tuple[int, bytes]] = []
    for stream, group in itertools.groupby(spans, key=lambda span: span[0]):
        run = [(start, stop) for _, start, stop in group]
        if run == [(0, len(pending))]:
            pieces.append((stream, pending))
        elif len(run) == 1:
            pieces.append((stream, pending[run[0][0] : run[0][1]]))
        else:
            pieces.append((stream, b"".join(view[start:stop] for start, stop in run)))
    return pieces


class DockerExecOutput(ExecOutput):
    def __init__(self, sock: Any, engine_url: str, *, received: bytes | None = None) -> None:
        """``received``: a plain socket's output read with the start's answer (this parses
        the frames); None: docker-py's socket, read by docker-py's parser."""
        self._sock = sock
        self._engine_url = engine_url
        self._received = received
        self._closed = threading.Event()

    def _batches(self) -> Iterator[list[tuple[int, bytes]]]:
        if self._received is not None:
            return demultiplexed_batches(self._received, GatheringReads(self._sock))
        from docker.utils.socket import frames_iter

        frames: Iterator[tuple[int, bytes]] = frames_iter(self._sock, tty=False)
        return ([frame] for frame in frames)

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[tuple[int, bytes]]]:
        try:
            for batch in self._batches():
                frames = [frame for frame in batch if frame[1]]
                if frames:
                    yield frames
        except OSError as exc:
            if not self._closed.is_set():
                raise ExecStreamBroken(
                    f"The exec output stream from {self._engine_url} broke: {exc}"
                ) from exc
        except ValueError:
            # Reading a socket another thread has just closed.
            if not self._closed.is_set():
                raise

    def close(self) -> None:
        self._closed.set()
        shutdown_stream(self._sock)


class DockerInteractiveExec(InteractiveExec):
    def __init__(self, *, api: docker.APIClient, exec_id: str, sock: Any, engine_url: str) -> None:
        self.id = exec_id
        self._api = api
        self._sock = sock
        self._raw = raw_socket(sock)
        self._engine_url = engine_url

    def read(self, max_bytes: int = 65536) -> bytes:
        try:
            if self._raw is not None:
                return self._raw.recv(max_bytes)
            data: bytes | None = self._sock.read(max_bytes)
            return data or b""
        except (OSError, ValueError):
            return b""

    def write(self, data: bytes) -> None:
        try:
            if self._raw is not None:
                self._raw.sendall(data)
            else:
                self._sock.write(data)
        except OSError as exc:
            raise ExecStreamBroken("The shell's input stream is closed.") from exc

    def resize(self, *, rows: int, cols: int) -> None:
        with translated(engine_url=self._engine_url):
            self._api.exec_resize(self.id, height=rows, width=cols)

    def close(self) -> None:
        shutdown_stream(self._sock)


# Execs started with runc (runc_exec.py), for every engine of this process: ids are unique.
_runc_execs = RuncExecs()
_runc_lock = threading.Lock()
_runc_containers: dict[str, RuncContainer] = {}
_RUNC_CONTAINERS_KEPT = 4096


def _runc_allowed() -> bool:
    from django.conf import settings

    return bool(getattr(settings, "DEVBENCH_RUNC_EXECS", True)) and os.geteuid() == 0


class DockerExec(RuntimeExec):
    base_url: str

    @property
    def api(self) -> docker.APIClient:  # provided by DockerLifecycle
        raise NotImplementedError

    @property
    def quick(self) -> QuickEngine | None:  # provided by DockerLifecycle
        raise NotImplementedError

    @property
    def roots(self) -> ContainerRoots:  # provided by DockerArchive
        raise NotImplementedError

    def _runc_container(self, container_id: str) -> RuncContainer | None:
        """How to run ``container_id``'s execs with runc, or None: the engine runs them."""
        if not _runc_allowed():
            return None
        try:
            pid = self.roots.first_pid(container_id)
        except AskEngine:
            return None
        known = _runc_containers.get(container_id)
        if known is None or known.pid != pid:
            known = discover(container_id, pid)
            if known is None:
                return None
            with _runc_lock:
                if len(_runc_containers) >= _RUNC_CONTAINERS_KEPT:
                    _runc_containers.clear()
                _runc_containers[container_id] = known
        return known

    def exec_create(self, container_id: str, spec: ExecSpec) -> str:
        if not (spec.tty or spec.stdin) and (runc := self._runc_container(container_id)):
            created = _runc_execs.create(runc, spec)
            if created is not None:
                return created
        quick = self.quick
        if quick is not None:
            body = {
                "User": spec.user or "",
                "Privileged": False,
                "Tty": spec.tty,
                "AttachStdin": spec.stdin,
                "AttachStdout": True,
                "AttachStderr": True,
                "Cmd": list(spec.cmd),
                "Env": [f"{k}={v}" for k, v in spec.env.items()] if spec.env else None,
            }
            if spec.workdir:
                body["WorkingDir"] = spec.workdir
            with translated(engine_url=self.base_url, container_id=container_id):
                answer = quick.json("POST", f"/containers/{container_id}/exec", body)
            return str(answer["Id"])
        with translated(engine_url=self.base_url, container_id=container_id):
            created = self.api.exec_create(
                container_id,
                spec.cmd,
                stdout=True,
                stderr=True,
                stdin=spec.stdin,
                tty=spec.tty,
                user=spec.user,
                environment=spec.env or None,
                workdir=spec.workdir,
            )
        exec_id: str = created["Id"]
        return exec_id

    def exec_stream(self, exec_id: str) -> ExecOutput:
        if RuncExecs.owns(exec_id):
            return _runc_execs.stream(exec_id)
        quick = self.quick
        if quick is not None:
            start = {"Detach": False, "Tty": False}
            with translated(engine_url=self.base_url, container_id=exec_id):
                sock, received = quick.upgrade(f"/exec/{exec_id}/start", start)
            return DockerExecOutput(sock, self.base_url, received=received)
        with translated(engine_url=self.base_url, container_id=exec_id):
            sock = self.api.exec_start(exec_id, tty=False, socket=True)
        _prepare(sock)
        return DockerExecOutput(sock, self.base_url)

    def exec_inspect(self, exec_id: str) -> ExecState:
        if RuncExecs.owns(exec_id):
            return _runc_execs.state(exec_id)
        quick = self.quick
        with translated(engine_url=self.base_url, container_id=exec_id):
            raw = (
                quick.json("GET", f"/exec/{exec_id}/json")
                if quick is not None
                else self.api.exec_inspect(exec_id)
            )
        return ExecState(
            id=exec_id,
            running=bool(raw.get("Running")),
            exit_code=raw.get("ExitCode"),
            pid=int(raw.get("Pid") or 0),
        )

    def exec_wait(self, exec_id: str, *, timeout_s: float = 5) -> ExecState:
        if RuncExecs.owns(exec_id):
            return _runc_execs.state(exec_id, wait_s=timeout_s)
        return super().exec_wait(exec_id, timeout_s=timeout_s)

    def exec_open_tty(self, container_id: str, spec: ExecSpec) -> InteractiveExec:
        tty_spec = ExecSpec(
            cmd=spec.cmd, env=spec.env, workdir=spec.workdir, user=spec.user, tty=True, stdin=True
        )
        exec_id = self.exec_create(container_id, tty_spec)
        with translated(engine_url=self.base_url, container_id=container_id):
            sock = self.api.exec_start(exec_id, tty=True, socket=True)
        _prepare(sock)
        return DockerInteractiveExec(
            api=self.api, exec_id=exec_id, sock=sock, engine_url=self.base_url
        )
