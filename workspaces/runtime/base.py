"""The container runtime interface.

Everything engine-specific lives behind these two small interfaces: the
lifecycle of a container (create, start, stop, remove, inspect, list by
label, volumes, images) and the operations run against a live one (exec,
archives, stats, commit; added beside the lifecycle as they land). A later
Kubernetes driver implements the same methods.

Drivers raise only :class:`core.errors.EngineError` subclasses.
"""

from __future__ import annotations

import abc
import socket
import threading
import time
from collections.abc import Callable, Container, Generator, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from core.errors import EngineError, EngineTimeout

LABEL_WORKSPACE = "devbench.workspace"
LABEL_TENANT = "devbench.tenant"
LABEL_INSTANCE = "devbench.instance"
LABEL_SNAPSHOT = "devbench.snapshot"

# Who runs in a workspace: the image-independent non-root user that owns /workspace.
WORKSPACE_UID = 1000
WORKSPACE_USER = f"{WORKSPACE_UID}:{WORKSPACE_UID}"  # uid:gid, as the engine takes it
# A file write whose old or new file is this large swaps them (path_rename's
# ``large_file``): the plain rename's costs on ext4 grow with the size (bench/README.md),
# the swap's (an exchange, then an unlink) barely do; below it the two are alike.
LARGE_FILE_BYTES = 8 * 1024 * 1024
ROOT_USER = "0:0"


@dataclass(frozen=True)
class VolumeMount:
    source: str  # volume name
    target: str  # path inside the container
    read_only: bool = False
    # A volume that does not exist yet is made by the container's create, with these
    # labels: one engine call fewer than creating it first.
    volume_labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to create one workspace container."""

    image: str
    name: str
    labels: dict[str, str]
    command: list[str]
    entrypoint: list[str] | None = None
    user: str = WORKSPACE_USER
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = "/workspace"
    mounts: tuple[VolumeMount, ...] = ()
    memory_bytes: int = 512 * 1024 * 1024
    nano_cpus: int = 1_000_000_000
    pids_limit: int = 256
    network_mode: str = "none"
    read_only_rootfs: bool = True
    tmpfs: dict[str, str] = field(
        default_factory=lambda: {"/tmp": "rw,nosuid,nodev,size=64m"}  # noqa: S108 - in the container
    )
    cap_drop: tuple[str, ...] = ("ALL",)
    cap_add: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ("no-new-privileges:true",)
    init: bool = True
    restart_policy: str | None = None  # e.g. "unless-stopped" for persistent workspaces
    runtime: str | None = None
    # "private": the container sees only its own cgroup tree (an engine on cgroup v1
    # defaults to "host", which shows the host's cgroup hierarchy inside).
    cgroupns: str = "private"


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    status: str  # engine words: created, running, paused, restarting, exited, dead
    running: bool
    labels: dict[str, str]
    image_id: str
    exit_code: int | None = None
    started_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    digests: tuple[str, ...]
    labels: dict[str, str] = field(default_factory=dict)
    size: int = 0  # bytes, every layer included


@dataclass(frozen=True)
class PullProgress:
    """Where a pull is: layers known and finished (``Already exists`` counts as finished),
    and bytes of the layers being downloaded (the engine reports a layer's size only once
    its download starts, so ``bytes_total`` grows)."""

    image: str
    layers_total: int = 0
    layers_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0

    @property
    def finished(self) -> bool:
        return self.layers_total > 0 and self.layers_done >= self.layers_total

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "layers_total": self.layers_total,
            "layers_done": self.layers_done,
            "bytes_total": self.bytes_total,
            "bytes_done": self.bytes_done,
        }


# Called on every progress event of a pull, in the pulling thread: keep it cheap.
PullReporter = Callable[[PullProgress], None]


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    labels: dict[str, str]


@dataclass(frozen=True)
class ContainerStats:
    """One resource reading, computed from the engine's two samples (now and ~1 s before)."""

    cpu_percent: float  # 100.0 = one full CPU
    memory_used_bytes: int  # page cache that can be reclaimed is not counted, as `docker stats`
    memory_limit_bytes: int
    pids: int
    network_rx_bytes: int
    network_tx_bytes: int
    block_read_bytes: int
    block_write_bytes: int
    read_at: str  # the engine's timestamp of the reading
    cpu_total_ns: int = 0  # CPU time of all the container's processes since it started

    @property
    def memory_percent(self) -> float:
        if self.memory_limit_bytes <= 0:
            return 0.0
        return self.memory_used_bytes * 100.0 / self.memory_limit_bytes


class RuntimeLifecycle(abc.ABC):
    @abc.abstractmethod
    def ping(self) -> None:
        """Raise EngineUnavailable unless the engine answers."""

    @abc.abstractmethod
    def image_inspect(self, ref: str) -> ImageInfo: ...

    @abc.abstractmethod
    def volume_create(self, name: str, labels: dict[str, str]) -> None: ...

    @abc.abstractmethod
    def volume_remove(self, name: str) -> None:
        """Remove a volume; a missing one is not an error."""

    @abc.abstractmethod
    def create(self, spec: ContainerSpec) -> ContainerInfo:
        """Create (not start) a container; its info as created (``image_id`` is the spec's
        image, ``raw`` is empty: ``inspect`` tells the engine's view)."""

    @abc.abstractmethod
    def start(self, container_id: str) -> None: ...

    @abc.abstractmethod
    def stop(self, container_id: str, *, timeout_s: int = 10) -> None: ...

    @abc.abstractmethod
    def remove(self, container_id: str, *, force: bool = True) -> None:
        """Remove a container; a missing one is not an error."""

    @abc.abstractmethod
    def inspect(self, container_id: str) -> ContainerInfo: ...

    @abc.abstractmethod
    def pause(self, container_id: str) -> None:
        """Freeze every process of a running container (cgroup freezer); memory and
        files are kept. Pausing a paused container is not an error."""

    @abc.abstractmethod
    def unpause(self, container_id: str) -> None:
        """Thaw a paused container; a container that is not paused is not an error."""

    @abc.abstractmethod
    def restart_policy_set(self, container_id: str, policy: str | None) -> None:
        """Change a container's restart policy (``unless-stopped`` or none) in place."""

    @abc.abstractmethod
    def list_by_labels(self, labels: dict[str, str]) -> list[ContainerInfo]:
        """Every container (running or not) carrying all the given labels."""

    @abc.abstractmethod
    def volume_list_by_labels(self, labels: dict[str, str]) -> list[VolumeInfo]:
        """Every volume carrying all the given labels."""

    def volume_sizes(self) -> dict[str, int]:
        """Bytes used by each volume the engine can measure (for usage); may be slow."""
        return {}


@dataclass(frozen=True)
class EngineInfo:
    name: str  # driver kind, e.g. "docker"
    version: str
    api_version: str
    os: str
    arch: str


class RuntimeSystem(abc.ABC):
    @abc.abstractmethod
    def engine_info(self) -> EngineInfo:
        """Version facts of the engine; raises EngineUnavailable when it does not answer."""


# --- exec operations -----------------------------------------------------------

STREAM_STDOUT = 1
STREAM_STDERR = 2


@dataclass(frozen=True)
class ExecSpec:
    """One command to run beside a workspace's main process."""

    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None  # None: the container's working directory
    user: str = WORKSPACE_USER
    tty: bool = False
    stdin: bool = False


@dataclass(frozen=True)
class ExecState:
    id: str
    running: bool
    exit_code: int | None
    # Process id seen by the engine; 0 when the process never started (bad cmd/cwd).
    pid: int


class ExecOutput(abc.ABC):
    """The demultiplexed output of a started exec: ``(stream, data)`` frames in engine order.

    Iteration blocks until the next frame and ends when the process and every
    descendant holding its stdout/stderr are gone. ``close`` (from any thread)
    unblocks a reader.
    """

    @abc.abstractmethod
    def __iter__(self) -> Iterator[tuple[int, bytes]]: ...

    def batches(self) -> Iterator[list[tuple[int, bytes]]]:
        """The same frames, those that arrived together in one list (a reader hands them
        on at once: one hand-over per read, not per frame)."""
        for frame in self:
            yield [frame]

    @abc.abstractmethod
    def close(self) -> None: ...


class Followed(Protocol):
    """Pieces of a stream a node's worker serves from its memory, as they come
    (``agent.register_follow``); ``close`` (from any thread) ends the iteration soon."""

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class InteractiveExec(abc.ABC):
    """A started exec with a tty: raw bytes both ways, resizable."""

    id: str

    @abc.abstractmethod
    def read(self, max_bytes: int = 65536) -> bytes:
        """Block for output; ``b""`` once the process has ended."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def resize(self, *, rows: int, cols: int) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...


def resize_when_started(tty: InteractiveExec, *, rows: int, cols: int) -> bool:
    """Resize a just-opened tty: the engine refuses until the process has started, which
    it does at once, so a few quick retries. False if it never took (the shell still
    works at its old size)."""
    for _ in range(10):
        try:
            tty.resize(rows=rows, cols=cols)
            return True
        except Exception:
            time.sleep(0.02)
    return False


class RuntimeExec(abc.ABC):
    @abc.abstractmethod
    def exec_create(self, container_id: str, spec: ExecSpec) -> str:
        """Prepare an exec; returns its engine id. Nothing runs until it is started."""

    @abc.abstractmethod
    def exec_stream(self, exec_id: str) -> ExecOutput:
        """Start a prepared (non-tty) exec and return its demultiplexed output."""

    @abc.abstractmethod
    def exec_inspect(self, exec_id: str) -> ExecState: ...

    @abc.abstractmethod
    def exec_open_tty(self, container_id: str, spec: ExecSpec) -> InteractiveExec:
        """Create and start an exec with a tty and stdin attached."""

    def exec_collect(
        self, container_id: str, spec: ExecSpec, *, timeout_s: float = 30
    ) -> tuple[int | None, bytes, bytes]:
        """Run a short helper command to the end: (exit code, stdout, stderr)."""
        exec_id = self.exec_create(container_id, spec)
        output = self.exec_stream(exec_id)
        out, err = bytearray(), bytearray()
        timer = threading.Timer(timeout_s, output.close)
        timer.start()
        try:
            for stream, data in output:
                (err if stream == STREAM_STDERR else out).extend(data)
        finally:
            timer.cancel()
            output.close()
        return self.exec_wait(exec_id).exit_code, bytes(out), bytes(err)

    def exec_wait(self, exec_id: str, *, timeout_s: float = 5) -> ExecState:
        """The state once the engine has recorded the exit (it lags the end of output)."""
        deadline = time.monotonic() + timeout_s
        delay = 0.002
        state = self.exec_inspect(exec_id)
        while state.running and time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
            state = self.exec_inspect(exec_id)
        return state


class RuntimeStats(abc.ABC):
    @abc.abstractmethod
    def stats(self, container_id: str) -> ContainerStats:
        """One reading of a running container's resource use (takes about a second)."""


# --- archive (file) operations ---------------------------------------------------

PathKind = Literal["file", "dir", "symlink", "other"]


@dataclass(frozen=True)
class PathStat:
    """What the engine reports about one path, without following a final symlink."""

    name: str
    kind: PathKind
    size: int
    mode: int  # permission bits only (0o7777)
    mtime: str  # RFC 3339, as the engine reports it
    # The engine reports a symlink's target fully resolved (absolute, in the
    # container's scope), not the link's text.
    link_target: str = ""


class EnginePathNotFound(EngineError):
    code = "not_found"
    http_status = 404
    default_message = "The path does not exist in the container."

    def __init__(self, message: str | None = None, *, path: str) -> None:
        super().__init__(message, extra={"path": path})


class EngineSymlinkLoop(EngineError):
    code = "symlink_loop"
    http_status = 422
    default_message = "Too many levels of symbolic links."

    def __init__(self, *, path: str) -> None:
        super().__init__(extra={"path": path})


class EngineCommandFailed(EngineError):
    """A fixed file command (rename, remove) exited non-zero inside the container."""

    code = "fs_command_failed"
    http_status = 409
    default_message = "The file operation failed inside the workspace."

    def __init__(self, message: str, *, command: str, exit_code: int | None, output: str) -> None:
        super().__init__(
            message, extra={"command": command, "exit_code": exit_code, "output": output}
        )


class WorkspaceToolMissing(EngineCommandFailed):
    """The workspace image lacks a program a file operation needs."""

    code = "workspace_tool_missing"

    def __init__(self, message: str, *, command: str, output: str) -> None:
        EngineError.__init__(self, message, extra={"command": command, "output": output})


class ArchiveReader(abc.ABC):
    """A tar stream of one path, read like a binary file; ``stat`` describes the path."""

    stat: PathStat

    @abc.abstractmethod
    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of the tar stream; ``b""`` at the end."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the engine connection (also mid-stream)."""

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """One path below a directory, as the directory's archive lists it."""

    relative: str  # below the directory, "/"-separated, as the engine spells it
    kind: PathKind
    size: int  # a regular file's; 0 for anything else
    mode: int  # permission bits only (0o7777)
    mtime: float  # seconds since the epoch
    link: str = ""  # a symlink's own text


class TreeEntries(Iterator[TreeEntry]):
    """The entries below a directory in walk order (a directory's names sorted, each
    directory before its contents), read while the engine produces them; ``close``
    (also mid-way) releases the engine's stream. ``stat`` describes the path itself
    (not followed: a symlink there is described, and has no entries)."""

    stat: PathStat

    @abc.abstractmethod
    def __next__(self) -> TreeEntry: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> TreeEntries:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def body_length(data: bytes | Iterable[bytes]) -> int | None:
    """The byte length of an archive body known before it is sent: bytes, or chunks that
    report their total with ``len()`` (a plain list or tuple counts its items: None)."""
    if isinstance(data, bytes):
        return len(data)
    if isinstance(data, Sized) and not isinstance(data, Container):
        return len(data)
    return None


class SocketBody(Iterator[bytes]):
    """An archive body of known length (``len``) still arriving on a socket: a node
    agent's upload. A driver whose engine is a local socket may have the rest moved
    there in the kernel (``send_into``) instead of reading it through Python."""

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @property
    @abc.abstractmethod
    def spliceable(self) -> bool:
        """Whether ``send_into`` can move it (not over TLS)."""

    @abc.abstractmethod
    def send_into(self, sock: socket.socket) -> None:
        """Send what is left of the body into ``sock``. If ``sock`` fails, iterating
        goes on where the sending stopped (to read the rest, and answer the caller)."""

    @abc.abstractmethod
    def write_into(self, fd: int, count: int) -> None:
        """Write the next ``count`` bytes of the body to the file ``fd`` (in the kernel
        where it can). If the file fails, iterating goes on where the writing stopped."""


class SpliceableArchive(abc.ABC):
    """A path's archive answer still on the engine's local socket: its body can be moved
    to another socket in the kernel, framed as the engine framed it (``framing``: its
    ``Content-Length`` or ``Transfer-Encoding`` field), so a stream that breaks shows
    it at the far end. ``length``: the body's, when the engine stated it. ``stat``
    describes the path."""

    stat: PathStat
    framing: bytes
    length: int | None

    @abc.abstractmethod
    def send_into(self, sock: socket.socket) -> bool:
        """The body to its end, into ``sock``: False if the source failed first (the
        framing tells the reader it ended early); ``OSError`` if ``sock`` fails."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> SpliceableArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RuntimeArchive(abc.ABC):
    """File access through the engine's archive API, plus the two changes it cannot express.

    Paths are absolute container paths. The engine follows symlinks in the
    parent components of a path (scoped to the container's root) but never the
    final component; confining paths to a directory is the caller's job.
    """

    @abc.abstractmethod
    def path_stat(self, container_id: str, path: str) -> PathStat | None:
        """The path's stat, or ``None`` if it does not exist."""

    def path_stat_chain(self, container_id: str, paths: list[str]) -> list[PathStat | None]:
        """:meth:`path_stat` of nested paths (each inside the one before), in order, up to
        and including the first that is not a directory (missing, a file, a symlink):
        what a walk down the chain would ask, and no more. A driver that crosses a
        network asks for them in one round trip."""
        stats: list[PathStat | None] = []
        for path in paths:
            stat = self.path_stat(container_id, path)
            stats.append(stat)
            if stat is None or stat.kind != "dir":
                break
        return stats

    @abc.abstractmethod
    def archive_get(self, container_id: str, path: str) -> ArchiveReader:
        """A tar stream of the path (EnginePathNotFound if it is missing)."""

    def archive_get_spliceable(self, container_id: str, path: str) -> SpliceableArchive | None:
        """:meth:`archive_get` left on the engine's socket, for a node agent to move into
        its caller's in the kernel; None where the engine is not on a local socket."""
        return None

    @abc.abstractmethod
    def tree_entries(self, container_id: str, path: str, *, nested: bool) -> TreeEntries:
        """The entries below the directory ``path`` (not the directory itself): its whole
        tree when ``nested``, else its own names only. Only names and stats leave the
        engine's host, never the files' contents (EnginePathNotFound if it is missing)."""

    @abc.abstractmethod
    def archive_put(self, container_id: str, path: str, data: Iterable[bytes]) -> None:
        """Extract a tar stream into the existing directory ``path``, streamed in chunks.

        An existing directory is never replaced by a non-directory (or vice versa).
        """

    @abc.abstractmethod
    def path_rename(
        self, container_id: str, src: str, dst: str, *, user: str, large_file: bool = False
    ) -> None:
        """Atomically rename ``src`` to ``dst`` (replacing a non-directory) as ``user``.
        ``large_file``: ``dst`` names a file now, and it or ``src`` is large (at least
        :data:`LARGE_FILE_BYTES`): a driver may then swap the two names atomically and
        remove the old file after, which is cheaper for large files on some
        filesystems (ext4)."""

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
        """:meth:`archive_put`, then :meth:`path_rename` once it succeeded: a file write's
        two steps. A driver that crosses a network does both in one round trip."""
        self.archive_put(container_id, path, data)
        self.path_rename(container_id, src, dst, user=user, large_file=large_file)

    @abc.abstractmethod
    def path_remove(
        self, container_id: str, path: str, *, kind: PathKind, recursive: bool, user: str
    ) -> None:
        """Remove a file, symlink or directory (an empty one unless ``recursive``) as ``user``."""


# --- images ----------------------------------------------------------------------


@dataclass(frozen=True)
class CaptureSpec:
    """What a snapshot captures: a container's image plus one directory's contents."""

    container_id: str
    base_image: str  # the image the container runs (id or reference)
    path: str  # absolute directory in the container, e.g. /workspace
    repository: str  # the new image's repository and tag
    tag: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one registry; never logged (the repr hides the password)."""

    username: str
    password: str = field(repr=False)


class RegistryAuthFailed(EngineError):
    code = "registry_auth_failed"
    http_status = 502
    default_message = "The registry refused the credentials."


class RegistryUnreachable(EngineError):
    code = "registry_unreachable"
    http_status = 502
    default_message = "The registry could not be reached or refused the request."


@dataclass(frozen=True)
class BuildSpec:
    """An image build: a tar context holding a Dockerfile, under limits."""

    context: bytes  # a tar with the Dockerfile at its root
    repository: str
    tag: str
    labels: dict[str, str] = field(default_factory=dict)
    network_mode: str = "none"
    timeout_s: int = 600
    memory_bytes: int = 1024 * 1024 * 1024


class TemplateBuildFailed(EngineError):
    code = "template_build_failed"
    http_status = 422
    default_message = "The image build failed; its log says why."


class TemplateBuildTimeout(EngineTimeout):
    code = "template_build_timeout"
    default_message = "The build ran longer than allowed and was stopped."


class RuntimeImages(abc.ABC):
    @abc.abstractmethod
    def snapshot_capture(self, spec: CaptureSpec) -> ImageInfo:
        """A new image: ``base_image`` plus ``path``'s contents (owners, modes, links).

        The container is paused while its files are copied, so the copy is
        consistent, and continues afterwards whatever happens.
        """

    @abc.abstractmethod
    def image_pull(
        self, ref: str, *, auth: RegistryAuth | None = None, progress: PullReporter | None = None
    ) -> ImageInfo:
        """Pull ``ref`` (``host/path:tag`` or ``@sha256:…``) onto this engine; progress is
        logged per layer and given to ``progress`` (where the engine is local: a node
        agent's caller is not called back). RegistryAuthFailed, ImageNotFound or
        RegistryUnreachable."""

    @abc.abstractmethod
    def image_push(self, source: str, ref: str, *, auth: RegistryAuth | None = None) -> str:
        """Tag the local image ``source`` as ``ref`` and push it; returns the registry
        digest (``sha256:…``). The local tag ``ref`` is removed again afterwards."""

    def image_build(self, spec: BuildSpec) -> Generator[str, None, str]:
        """Build on this engine, yielding log lines; ends with the image's id as the
        generator's return value; raises TemplateBuildFailed (with the engine's reason) or
        EngineTimeout past ``timeout_s``. Runs where the engine is (a node worker)."""
        raise EngineError("Image builds run in the node's worker, not through its agent.")

    @abc.abstractmethod
    def image_remove(self, ref: str) -> None:
        """Remove an image tag (and its layers when nothing else uses them); a missing
        image is not an error; one a container uses is ``engine_conflict``."""


class RuntimeDriver(
    RuntimeLifecycle,
    RuntimeStats,
    RuntimeArchive,
    RuntimeExec,
    RuntimeSystem,
    RuntimeImages,
    abc.ABC,
):
    """Lifecycle plus operations; the type services depend on."""
