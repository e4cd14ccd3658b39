"""Non-interactive execs started by the container's own runtime (runc), beside the engine.

For every exec the engine records it, asks containerd, which asks the container's
shim, which runs ``runc exec``; the output then comes back through the shim's FIFOs
and the engine's multiplexed stream. On two cores that is ~45 ms for ``true`` where
``runc exec`` of the same takes ~25, and ~140 ms of the engine's CPU per 8 MiB of
output (bench/README.md). A process that is root on the engine's host (the node's
worker and agent, beside a runc container) runs ``runc exec`` itself, as the shim
would, with the process the engine would give it:

- the container's own process (capabilities, no-new-privileges, AppArmor profile,
  rlimits, OOM score), read from the bundle the container's shim runs in, which is
  what the engine's exec starts from (``daemon/exec.go``); runc enters the
  container's namespaces and cgroup and applies its seccomp filter, as for any exec;
- the exec's arguments, working directory (else the container's), user (``uid:gid``:
  runc reads the supplementary groups from the container's /etc/group, as the engine
  does) and environment (the container's, the exec's variables replacing or added);
- output through two pipes, and the exit status (128 + n after signal n, as the
  engine reports it).

runc starts the process detached (``--detach``, as the shim does) and exits; this
process is a child subreaper (``PR_SET_CHILD_SUBREAPER``, again as the shim), so the
exec's process becomes its child then and its exit status is waited for here. (A
runc that waited itself would wait for its copies of the output to end, which a
process left in the background holds open.) The output ends when nothing holds the
pipes any more, or 2 s after the exec's own process ended, as the engine ends it.

An exec runc cannot start (a working directory or program that does not exist, say)
ends as the engine's does: no process, exit code 126, runc's reason as its output.

runc runs on a few threads of this process at a low CPU weight (runc_starts.py), so
that starting execs does not take the machine from the web tier's requests.

Anything else is the engine's: a tty or stdin, a user given by name, a container
that is not runc's (gVisor), not running or not on this host, a process that is
not root here (``create`` answers None).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import os
import select
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from core.errors import EngineRefused, EngineTimeout
from workspaces.runtime.base import (
    STREAM_STDERR,
    STREAM_STDOUT,
    ExecOutput,
    ExecSpec,
    ExecState,
)
from workspaces.runtime.docker.runc_starts import RuncStarts, default_starts

logger = logging.getLogger(__name__)

ID_PREFIX: Final = "runc-"
# The engine ends an exec's output this long after its process ended.
OUTPUT_AFTER_EXIT_S: Final = 2.0
_READ_BYTES: Final = 1024 * 1024
_PIPE_BYTES: Final = 1024 * 1024  # fewer wake-ups while output flows (the kernel may cap it)
# After a read this large the output is flowing: let a little more arrive before the next
# read (one read and one hand-over per burst, not per write of the process). A read of a
# few bytes (a line, a short exec's output) is never held.
_GATHER_AFTER_BYTES: Final = 64 * 1024
_GATHER_S: Final = 0.001
_F_SETPIPE_SZ: Final = 1031
_KEEP_PREPARED: Final = 4096  # created, never started (a runner that lost its claim)
_KEEP_ENDED: Final = 1024  # ended, still answered by exec_inspect
_SHIM_PREFIX: Final = "containerd-shim"


@dataclass(frozen=True)
class RuncContainer:
    """How to reach one container with runc: what its shim was told, and its process."""

    container_id: str
    pid: int  # its first process, on this host
    binary: str
    root: str  # runc's state directory for the engine's namespace
    systemd_cgroup: bool
    process: dict[str, Any]  # the container's process (the bundle's config.json)

    def runc(self, *args: str) -> list[str]:
        flags = ["--systemd-cgroup"] if self.systemd_cgroup else []
        # --log: runc's own errors go to its stderr as plain text (read as the output).
        return [self.binary, "--root", self.root, "--log", "/dev/null", *flags, *args]


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as file:
        return file.read()


def _parent_pid(pid: int) -> int:
    stat = _read_text(f"/proc/{pid}/stat")
    return int(stat.rsplit(")", 1)[1].split()[1])


def _shim_flag(argv: list[str], name: str) -> str | None:
    for index, arg in enumerate(argv[:-1]):
        if arg == name:
            return argv[index + 1]
    return None


def discover(container_id: str, pid: int) -> RuncContainer | None:
    """``container_id``'s runc, found from its first process ``pid`` (which the caller has
    checked is the container's): the parent is the container's shim, whose working
    directory is the container's bundle. None when anything is not as expected."""
    try:
        shim = _parent_pid(pid)
        argv = _read_text(f"/proc/{shim}/cmdline").split("\0")
        if not os.path.basename(argv[0]).startswith(_SHIM_PREFIX):
            return None
        namespace = _shim_flag(argv, "-namespace")
        if _shim_flag(argv, "-id") != container_id or not namespace:
            return None
        bundle = os.readlink(f"/proc/{shim}/cwd")
        if os.path.basename(bundle) != container_id:
            return None
        options: dict[str, Any] = {}
        with contextlib.suppress(FileNotFoundError):
            options = json.loads(_read_text(os.path.join(bundle, "options.json")))
        name = str(options.get("binary_name") or "runc")
        binary = shutil.which(name) if os.path.basename(name) == "runc" else None
        root = os.path.join(str(options.get("root") or "/run/containerd/runc"), namespace)
        if binary is None or not os.path.isfile(os.path.join(root, container_id, "state.json")):
            return None
        spec = json.loads(_read_text(os.path.join(bundle, "config.json")))
    except (OSError, ValueError, IndexError):
        return None
    process = spec.get("process")
    if not isinstance(process, dict) or process.get("terminal"):
        return None
    return RuncContainer(
        container_id=container_id,
        pid=pid,
        binary=binary,
        root=root,
        systemd_cgroup=bool(options.get("systemd_cgroup")),
        process=process,
    )


def exec_process(container: RuncContainer, spec: ExecSpec) -> dict[str, Any] | None:
    """The process ``spec`` runs as, built as the engine builds an exec's; None when the
    engine must run it (a tty, stdin, a user given by name)."""
    if spec.tty or spec.stdin or not spec.cmd:
        return None
    process = dict(container.process)
    process["args"] = list(spec.cmd)
    process["terminal"] = False
    process.pop("consoleSize", None)
    if spec.workdir:
        process["cwd"] = spec.workdir
    if spec.user:
        uid, _, gid = spec.user.partition(":")
        if not (uid.isdigit() and gid.isdigit()):
            return None  # a name, or no group: the engine looks them up in the image
        # The engine makes an explicit group the only supplementary one too.
        process["user"] = {"uid": int(uid), "gid": int(gid), "additionalGids": [int(gid)]}
    process["env"] = _with_env(list(process.get("env") or []), spec.env)
    return process


def _with_env(base: list[str], extra: dict[str, str]) -> list[str]:
    """The engine's ``ReplaceOrAppendEnvValues``: a variable replaces one of its name."""
    env = {entry.partition("=")[0]: entry for entry in base}
    for name, value in extra.items():
        env[name] = f"{name}={value}"
    return list(env.values())


# The engine's exit code for an exec it could not start (``ContainerExecStart``).
START_FAILED_CODE: Final = 126
_PR_SET_CHILD_SUBREAPER: Final = 36
_ORPHAN_SCAN_S: Final = 1.0
_RUNC_START_S: Final = 60.0  # runc --detach returns once the process runs
_subreaper_lock = threading.Lock()
_subreaper = False


def _become_subreaper() -> None:
    """Make this process the parent of the execs runc leaves behind (once)."""
    global _subreaper
    with _subreaper_lock:
        if _subreaper:
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        _subreaper = True


def _wait_exit(child: subprocess.Popen[bytes], timeout_s: float) -> None:
    """``child.wait(timeout_s)``, told of the exit by the kernel: ``Popen.wait`` with a
    timeout polls, sleeping up to 50 ms between looks (~15 ms late for a 25 ms runc)."""
    pidfd = os.pidfd_open(child.pid)
    try:
        if not select.select([pidfd], [], [], timeout_s)[0]:
            raise subprocess.TimeoutExpired(child.args, timeout_s)
    finally:
        os.close(pidfd)
    child.wait()


def _status_code(info: os.waitid_result) -> int:
    if info.si_code == os.CLD_EXITED:
        return info.si_status
    return 128 + info.si_status  # killed by signal n: the engine reports 128 + n


class _Exec:
    """One exec: prepared, then started (runc has run), then ended (its status reaped)."""

    def __init__(self, exec_id: str, container: RuncContainer, process: dict[str, Any]) -> None:
        self.id = exec_id
        self.container = container
        self.process = process
        self.started = False
        self.pid = 0  # 0: not started, or runc could not start it
        self.pidfd: int | None = None
        self.exit_code: int | None = None
        self.lock = threading.Lock()
        self.ended = threading.Event()

    def failed(self, what: str, exc: Exception) -> EngineRefused:
        """An error for the caller: ``what`` went wrong on this side of the engine."""
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return EngineRefused(
            f"{what}: {reason}", engine_status=500, container_id=self.container.container_id
        )

    def start(self, starts: RuncStarts) -> tuple[int, int]:
        """Start the process (runc on one of ``starts``' threads); the read ends of its
        stdout and stderr pipes."""
        _become_subreaper()
        out_read, out_write = os.pipe2(os.O_CLOEXEC)
        err_read, err_write = os.pipe2(os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(out_write, _F_SETPIPE_SZ, _PIPE_BYTES)
        workdir = tempfile.mkdtemp(prefix="devbench-exec-")
        try:
            # The reaper leaves this process's container children alone until the new one
            # is known to it: it is one of them from runc's exit on.
            with _reaper.starting():
                self.pid = starts.run(lambda: self._run_runc(workdir, out_write, err_write))
                if self.pid:
                    # Its child now: its end is seen, and its status taken, here.
                    self.pidfd = self._open_pidfd()
                    _reaper.watch(self)
        except BaseException:
            for fd in (out_read, err_read):
                os.close(fd)
            raise
        finally:
            os.close(out_write)
            os.close(err_write)
            shutil.rmtree(workdir, ignore_errors=True)
        self.started = True
        if not self.pid:
            self.exit_code = START_FAILED_CODE
            self.ended.set()
        return out_read, err_read

    def _open_pidfd(self) -> int:
        try:
            return os.pidfd_open(self.pid)
        except OSError as exc:
            raise self.failed(f"The exec's process {self.pid} could not be watched", exc) from exc

    def _run_runc(self, workdir: str, stdout: int, stderr: int) -> int:
        """Run ``runc exec --detach``: the process's pid, or 0 if runc could not start it
        (runc's reason is then on ``stderr``, the exec's output)."""
        spec_path, pid_path = os.path.join(workdir, "process.json"), os.path.join(workdir, "pid")
        with open(spec_path, "w", encoding="utf-8") as file:
            json.dump(self.process, file)
        command = self.container.runc(
            "exec", "--detach", "--process", spec_path, "--pid-file", pid_path,
            self.container.container_id,
        )  # fmt: skip
        try:
            # Its own session: a signal to the worker's process group is not the exec's.
            runc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
                env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
            )
            _wait_exit(runc, _RUNC_START_S)
        except subprocess.TimeoutExpired as exc:
            runc.kill()
            runc.wait()
            raise EngineTimeout(f"runc did not start the exec within {_RUNC_START_S:g} s.") from exc
        except OSError as exc:
            raise self.failed("The exec could not be started", exc) from exc
        if runc.returncode != 0:
            return 0
        try:
            return int(_read_text(pid_path).strip())
        except (OSError, ValueError) as exc:
            raise self.failed("runc started the exec but did not say its process id", exc) from exc

    def state(self, wait_s: float | None) -> ExecState:
        if wait_s and self.pidfd is not None:
            self.ended.wait(wait_s)
        with self.lock:
            return ExecState(
                id=self.id,
                running=self.started and self.exit_code is None,
                exit_code=self.exit_code,
                pid=self.pid,
            )

    def reap(self) -> None:
        """Take the exit status if the process has ended (its pidfd is readable)."""
        with self.lock:
            if self.pidfd is None:
                return
            try:
                info = os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED | os.WNOHANG)
            except ChildProcessError:  # not ours to wait for after all
                logger.error("the exit status of exec %s was lost", self.id)
                info = None
                self.exit_code = -1
            else:
                if info is None:
                    return  # still running
                self.exit_code = _status_code(info)
            os.close(self.pidfd)
            self.pidfd = None
        self.ended.set()


class _Reaper:
    """Takes the exit status of every exec this process started, as soon as it ends.

    An ended process stays a zombie until its parent (this process) takes its status,
    and a container's first process does not finish exiting while a zombie of its
    namespace is left: the engine could not stop the container. So no exec waits for
    a caller to ask for its status: one thread polls them all. It also takes, once a
    second, the status of any other container process that has become this process's
    child: one whose runc-starting process ended before it (this process being the
    nearest subreaper above). Processes of this host's own namespace are left to
    whoever started them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._execs: dict[int, _Exec] = {}  # by a descriptor of its own (a dup of its pidfd)
        self._wake_read, self._wake_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread: threading.Thread | None = None
        self._starts = 0  # execs between runc's start and their watch

    @contextlib.contextmanager
    def starting(self) -> Iterator[None]:
        with self._lock:
            self._starts += 1
        try:
            yield
        finally:
            with self._lock:
                self._starts -= 1

    def watch(self, started: _Exec) -> None:
        assert started.pidfd is not None
        with self._lock:
            self._execs[os.dup(started.pidfd)] = started
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="runc-exec-reaper")
                self._thread.daemon = True
                self._thread.start()
        os.write(self._wake_write, b"x")

    def _run(self) -> None:
        next_scan = time.monotonic() + _ORPHAN_SCAN_S
        while True:
            poller = select.poll()
            poller.register(self._wake_read, select.POLLIN)
            with self._lock:
                for fd in self._execs:
                    poller.register(fd, select.POLLIN)
            for fd, _ in poller.poll(max(0.0, next_scan - time.monotonic()) * 1000):
                if fd == self._wake_read:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_read, 4096)
                    continue
                with self._lock:
                    ended = self._execs.pop(fd)
                os.close(fd)
                try:
                    ended.reap()
                except Exception:  # never let one exec stop the reaping of the others
                    logger.exception("reaping exec %s failed", ended.id)
            if time.monotonic() >= next_scan:
                with self._lock:
                    if not self._starts:
                        _reap_orphans({e.pid for e in self._execs.values()})
                next_scan = time.monotonic() + _ORPHAN_SCAN_S


def _reap_orphans(known: set[int]) -> None:
    """Take the status of ended children of this process that ran in a container's pid
    namespace and are not execs it is waiting for."""
    for child in _children():
        if child in known:
            continue
        try:
            stat = _read_text(f"/proc/{child}/stat")
            if stat.rsplit(")", 1)[1].split()[0] != "Z":
                continue
            nspid = next(
                line for line in _read_text(f"/proc/{child}/status").splitlines()
                if line.startswith("NSpid:")
            )  # fmt: skip
            if len(nspid.split()) > 2:  # "NSpid:", this namespace's pid, the container's...
                os.waitpid(child, os.WNOHANG)
        except (OSError, StopIteration, IndexError):
            continue


def _children() -> list[int]:
    pids: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError):
                pids += [int(pid) for pid in _read_text(f"/proc/self/task/{task}/children").split()]
    return pids


_reaper = _Reaper()


class RuncExecOutput(ExecOutput):
    """The output of a started exec, read from its two pipes (see the module's docstring)."""

    def __init__(self, started: _Exec, stdout: int, stderr: int) -> None:
        self._exec = started
        self._streams = {stdout: STREAM_STDOUT, stderr: STREAM_STDERR}
        # The process's end, seen by this reader (its own descriptor: the exec closes its);
        # None: it has ended already (or never started).
        with started.lock:
            self._exited = os.dup(started.pidfd) if started.pidfd is not None else None
        self._wake_read, self._wake_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._lock = threading.Lock()
        self._reading = self._closed = self._released = False

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[tuple[int, bytes]]]:
        with self._lock:
            if self._reading or self._released:
                return
            self._reading = True
        try:
            yield from self._read()
        finally:
            self._release()

    def _read(self) -> Iterator[list[tuple[int, bytes]]]:
        poller = select.poll()
        for fd in (*self._streams, self._wake_read):
            poller.register(fd, select.POLLIN)
        deadline: float | None = None
        if self._exited is not None:
            poller.register(self._exited, select.POLLIN)
        else:
            deadline = time.monotonic() + OUTPUT_AFTER_EXIT_S
        open_pipes = set(self._streams)
        while open_pipes and not self._closed:
            wait_ms = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1000
            events = poller.poll(wait_ms)
            if self._closed or (not events and deadline is not None):
                # Closed (what woke it); or what still holds the pipes is not the exec's.
                return
            batch = []
            for fd, _ in events:
                if fd == self._exited:
                    poller.unregister(fd)
                    self._exec.reap()
                    deadline = time.monotonic() + OUTPUT_AFTER_EXIT_S
                    continue
                piece = self._take(fd)
                if piece is None:
                    poller.unregister(fd)
                    open_pipes.discard(fd)
                else:
                    batch.append(piece)
            if batch:
                yield batch
                if max(len(data) for _, data in batch) >= _GATHER_AFTER_BYTES:
                    time.sleep(_GATHER_S)

    def _take(self, fd: int) -> tuple[int, bytes] | None:
        """What one of the pipes holds now; None at its end."""
        data = os.read(fd, _READ_BYTES)
        return (self._streams[fd], data) if data else None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._reading and not self._released:
                # The reader releases everything once it wakes.
                with contextlib.suppress(OSError):
                    os.write(self._wake_write, b"x")
                return
        self._release()

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
            for fd in (*self._streams, self._wake_read, self._wake_write, self._exited):
                if fd is not None:
                    os.close(fd)


class RuncExecs:
    """The execs this process started with runc, by id (``runc-`` and 32 hex digits)."""

    def __init__(self, starts: RuncStarts | None = None) -> None:
        self._starts = starts  # None: this process's (runc_starts.default_starts)
        self._lock = threading.Lock()
        self._prepared: OrderedDict[str, _Exec] = OrderedDict()
        self._started: dict[str, _Exec] = {}
        self._ended: OrderedDict[str, _Exec] = OrderedDict()

    @staticmethod
    def owns(exec_id: str) -> bool:
        return exec_id.startswith(ID_PREFIX)

    def create(self, container: RuncContainer, spec: ExecSpec) -> str | None:
        process = exec_process(container, spec)
        if process is None:
            return None
        created = _Exec(ID_PREFIX + uuid.uuid4().hex, container, process)
        with self._lock:
            self._prepared[created.id] = created
            while len(self._prepared) > _KEEP_PREPARED:
                self._prepared.popitem(last=False)
        return created.id

    def stream(self, exec_id: str) -> RuncExecOutput:
        with self._lock:
            prepared = self._prepared.pop(exec_id, None)
            if prepared is not None:
                self._started[exec_id] = prepared
        if prepared is None:
            raise self._unknown(exec_id)
        try:
            stdout, stderr = prepared.start(self._starts or default_starts())
        except BaseException as exc:
            with self._lock:
                self._started.pop(exec_id, None)
            if isinstance(exc, OSError):
                raise prepared.failed("The exec could not be started", exc) from exc
            raise
        return RuncExecOutput(prepared, stdout, stderr)

    def state(self, exec_id: str, *, wait_s: float | None = None) -> ExecState:
        with self._lock:
            found = (
                self._started.get(exec_id)
                or self._ended.get(exec_id)
                or self._prepared.get(exec_id)
            )
        if found is None:
            raise self._unknown(exec_id)
        state = found.state(wait_s)
        if not state.running and found.started:
            with self._lock:
                if self._started.pop(exec_id, None) is not None:
                    self._ended[exec_id] = found
                    while len(self._ended) > _KEEP_ENDED:
                        self._ended.popitem(last=False)
        return state

    @staticmethod
    def _unknown(exec_id: str) -> EngineRefused:
        return EngineRefused(
            f"No such exec instance: {exec_id}", engine_status=404, container_id=None
        )
