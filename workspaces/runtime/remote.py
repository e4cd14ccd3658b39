"""The runtime driver of a node reached through its worker's agent.

Every method is one HTTP call to the agent (``workspaces.runtime.agent``),
which runs it on the node's own engine. Plain calls (a JSON body each way) are
written in one piece and their answers parsed by httptools (``http_answer``);
streams use ``http.client``. Plain calls, archives and exec output run on pooled
keep-alive connections (a stream's connection goes back to the
pool once it has ended cleanly; a ``close`` from any thread before that shuts
it down); a tty gets a connection of its own. Over TLS the agent must hold
the key of the certificate its node registered (``runtime.agent_tls``); plain
HTTP only to the loopback. A node that cannot be reached answers
``node_unavailable`` (503).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import socket
import ssl
import stat
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any

from core.errors import DevBenchError, EngineError, EngineUnavailable
from workspaces.runtime import wire
from workspaces.runtime.agent_tls import agent_client_context, is_loopback, shutdown_socket
from workspaces.runtime.base import (
    ArchiveReader,
    CaptureSpec,
    ContainerInfo,
    ContainerSpec,
    ContainerStats,
    EngineInfo,
    ExecOutput,
    ExecSpec,
    ExecState,
    Followed,
    ImageInfo,
    InteractiveExec,
    PathKind,
    PathStat,
    PullReporter,
    RegistryAuth,
    RuntimeDriver,
    TreeEntries,
    TreeEntry,
    VolumeInfo,
    body_length,
)
from workspaces.runtime.duplex import SocketDuplex
from workspaces.runtime.http_answer import HttpAnswer, ParseError, read_raw_head, request_bytes
from workspaces.runtime.tree import TarEntries

CONNECT_TIMEOUT_S = 3.0
_POOL_SIZE = 32
# A pooled connection idle longer is not reused: well inside the agent's idle timeout
# (agent.IDLE_TIMEOUT_S), so an upload (which cannot be sent twice) never meets a
# connection the agent is closing.
_REUSE_WITHIN_S = 60.0
_STALE = (
    http.client.RemoteDisconnected,
    BrokenPipeError,
    ConnectionResetError,
    ssl.SSLEOFError,
)


class NodeUnavailable(EngineUnavailable):
    code = "node_unavailable"
    http_status = 503
    default_message = "The node holding this workspace cannot be reached."

    def __init__(self, message: str | None = None, *, node: str) -> None:
        super().__init__(message, extra={"node": node})


class NodeAgentMisconfigured(EngineError):
    code = "node_agent_misconfigured"


class _Connection(http.client.HTTPConnection):
    """An HTTP connection whose socket another thread may shut down."""

    idle_since = 0.0

    def shutdown(self) -> None:
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                shutdown_socket(sock, socket.SHUT_RDWR)
        self.close()


class _TLSConnection(_Connection, http.client.HTTPSConnection):
    pass


class _SocketConnection(_Connection):
    """HTTP over the agent's Unix socket (``agent.AgentSocketServer``)."""

    def __init__(self, path: str, *, host: str, timeout: float) -> None:
        super().__init__(host, timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = _unix_connect(self.path, timeout_s=self.timeout)


def _unix_connect(path: str, *, timeout_s: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout_s)
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


class RemoteDriver(RuntimeDriver):
    def __init__(
        self,
        *,
        node: str,
        url: str,
        token: str,
        cert: str = "",
        socket_path: str = "",
        timeout_s: float = 60,
    ) -> None:
        """``socket_path``: the agent's Unix socket, used instead of ``url`` while this
        host has it (the caller runs beside the node's worker)."""
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise NodeAgentMisconfigured(
                f"Node {node}: agent URL {url!r} is not https://host:port."
            )
        self._tls: ssl.SSLContext | None = None
        if parsed.scheme == "https":
            if not cert:
                raise NodeAgentMisconfigured(f"Node {node} registered no agent certificate.")
            try:
                self._tls = agent_client_context(cert_pem=cert)
            except ssl.SSLError as exc:
                raise NodeAgentMisconfigured(
                    f"Node {node}: its agent certificate does not load ({exc})."
                ) from exc
        elif not is_loopback(parsed.hostname):
            raise NodeAgentMisconfigured(
                f"Node {node}: plain HTTP to its agent is refused off the loopback ({url})."
            )
        self.node = node
        self.url = url
        self.socket_path = socket_path
        self._host = parsed.hostname
        self._port = parsed.port or (443 if self._tls else 80)
        self._auth = f"Bearer {token}"
        self._timeout_s = timeout_s
        self._pool: queue.LifoQueue[_Connection] = queue.LifoQueue(maxsize=_POOL_SIZE)
        self._json_headers = self._headers({"Content-Type": "application/json"})
        host = self._host if ":" not in self._host else f"[{self._host}]"
        self._plain_head = f"Host: {host}:{self._port}\r\nAuthorization: {self._auth}\r\n".encode(
            "latin-1"
        )

    # --- plumbing --------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> NodeUnavailable:
        return NodeUnavailable(
            f"Node '{self.node}' cannot be reached ({type(exc).__name__}: {exc}).",
            node=self.node,
        )

    def _local_socket(self) -> str | None:
        """The agent's socket if this host has it and it is this user's (no one else's
        process can be listening on it), else None: the agent's URL then."""
        if not self.socket_path:
            return None
        try:
            info = os.stat(self.socket_path)
        except OSError:
            return None
        if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
            return None
        return self.socket_path

    def _connect(self) -> _Connection:
        path = self._local_socket()
        if path is not None:
            local = _SocketConnection(path, host=self._host, timeout=CONNECT_TIMEOUT_S)
            try:
                local.connect()
            except OSError:
                pass  # a socket its worker left behind: the URL tells whether the node is up
            else:
                assert local.sock is not None
                local.sock.settimeout(self._timeout_s)
                return local
        conn = (
            _TLSConnection(self._host, self._port, timeout=CONNECT_TIMEOUT_S, context=self._tls)
            if self._tls
            else _Connection(self._host, self._port, timeout=CONNECT_TIMEOUT_S)
        )
        try:
            conn.connect()  # over TLS: the handshake too, so a wrong key fails here
        except OSError as exc:  # ssl.SSLError is one
            raise self._unavailable(exc) from exc
        assert conn.sock is not None
        conn.sock.settimeout(self._timeout_s)
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": self._auth, **(extra or {})}

    def _checkout(self) -> tuple[_Connection, bool]:
        """A pooled keep-alive connection (True: reused) or a new one."""
        while True:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                return self._connect(), False
            if time.monotonic() - conn.idle_since < _REUSE_WITHIN_S:
                return conn, True
            conn.close()

    def _checkin(self, conn: _Connection, response: http.client.HTTPResponse) -> None:
        """Back to the pool once ``response`` was read to its end."""
        if response.will_close or not response.isclosed():
            conn.close()
            return
        self._release(conn)

    def _release(self, conn: _Connection) -> None:
        """An idle connection back to the pool (closed if the pool is full)."""
        conn.idle_since = time.monotonic()
        try:
            self._pool.put_nowait(conn)
        except queue.Full:
            conn.close()

    def _request(
        self, method: str, body: bytes, headers: dict[str, str]
    ) -> tuple[_Connection, http.client.HTTPResponse]:
        """Send a request with a small body on a pooled connection; its response head."""
        for attempt in range(2):
            conn, reused = self._checkout()
            try:
                conn.request("POST", wire.API_PREFIX + method, body=body, headers=headers)
                return conn, conn.getresponse()
            except _STALE as exc:
                conn.close()
                if reused and attempt == 0:
                    continue  # the agent closed an idle connection: once more on a new one
                raise self._unavailable(exc) from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise self._unavailable(exc) from exc
        raise AssertionError("unreachable")

    def _pooled_stream(
        self, method: str, body: bytes
    ) -> tuple[_Connection, http.client.HTTPResponse]:
        """A streamed (chunked) answer on a pooled connection: its head, once it is a 200."""
        conn, response = self._request(method, body, self._json_headers)
        if response.status != 200:
            self._answer(conn, response)  # raises the agent's error
        return conn, response

    def _answer(self, conn: _Connection, response: http.client.HTTPResponse) -> bytes:
        """The whole body of a plain answer (its connection back in the pool); the agent's
        error raised unless it is a 200."""
        try:
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise self._unavailable(exc) from exc
        self._checkin(conn, response)
        _raise_status(response.status, payload)
        return payload

    def _call(self, method: str, **kwargs: Any) -> Any:
        arg_types, result_type = wire.CALLS[method]
        body = json.dumps(wire.dump_args(arg_types, kwargs)).encode()
        return wire.load(result_type, json.loads(self._plain(method, body))["result"])

    def hand_off(self, name: str, args: dict[str, Any], *, timeout_s: float) -> bool:
        """Ask the node's worker to start ``name`` now (``agent.register_hand_off``): True if
        it took it. Waits at most ``timeout_s`` for the answer."""
        body = json.dumps(args).encode()
        answer = json.loads(self._plain(wire.HAND_OFF + name, body, timeout_s=timeout_s))
        return bool(answer.get("taken"))

    def follow(self, name: str, args: dict[str, Any]) -> Followed | None:
        """Follow the stream ``name`` the node's worker serves from its memory
        (``agent.register_follow``); None when it has nothing to follow for ``args``."""
        conn, response = self._request(
            wire.FOLLOW + name, json.dumps(args).encode(), self._json_headers
        )
        if response.status != 200:
            try:
                self._answer(conn, response)
            except DevBenchError as exc:
                if exc.code == wire.NOT_FOLLOWING:
                    return None
                raise
        assert conn.sock is not None
        conn.sock.settimeout(None)  # quiet as long as what it follows; closed by the caller
        return _RemoteFollowed(_RemoteExecOutput(conn, response, self))

    def _plain(self, method: str, body: bytes, *, timeout_s: float | None = None) -> bytes:
        """The body of the agent's answer to a JSON request (within ``timeout_s`` if given),
        on a pooled connection; the agent's error raised unless it is a 200."""
        request = request_bytes(
            "POST", wire.API_PREFIX + method, self._plain_head, body, b"application/json"
        )
        for attempt in range(2):
            conn, reused = self._checkout()
            sock = conn.sock
            assert sock is not None
            answer = HttpAnswer()
            try:
                if timeout_s is not None:
                    sock.settimeout(timeout_s)
                sock.sendall(request)
                answer.read(sock)
                if timeout_s is not None:
                    sock.settimeout(self._timeout_s)
            except _STALE as exc:
                conn.close()
                if reused and attempt == 0 and not answer.started:
                    continue  # the agent closed an idle connection: once more on a new one
                raise self._unavailable(exc) from exc
            except (OSError, ParseError) as exc:
                conn.close()
                raise self._unavailable(exc) from exc
            if answer.keep_alive:
                self._release(conn)
            else:
                conn.close()
            _raise_status(answer.status, answer.body)
            return answer.body
        raise AssertionError("unreachable")

    def _stream_args(self, method: str, **kwargs: Any) -> bytes:
        return json.dumps(wire.dump_args(wire.STREAM_ARGS[method], kwargs)).encode()

    # --- lifecycle and system ---------------------------------------------------------

    def ping(self) -> None:
        self._call("ping")

    def engine_info(self) -> EngineInfo:
        result: EngineInfo = self._call("engine_info")
        return result

    def image_inspect(self, ref: str) -> ImageInfo:
        result: ImageInfo = self._call("image_inspect", ref=ref)
        return result

    def image_remove(self, ref: str) -> None:
        self._call("image_remove", ref=ref)

    def image_pull(
        self, ref: str, *, auth: RegistryAuth | None = None, progress: PullReporter | None = None
    ) -> ImageInfo:
        # Progress stays on the node (logged there): pulls that report it run in the node's
        # worker, where the engine is local.
        result: ImageInfo = self._call("image_pull", ref=ref, auth=auth)
        return result

    def image_push(self, source: str, ref: str, *, auth: RegistryAuth | None = None) -> str:
        result: str = self._call("image_push", source=source, ref=ref, auth=auth)
        return result

    def snapshot_capture(self, spec: CaptureSpec) -> ImageInfo:
        result: ImageInfo = self._call("snapshot_capture", spec=spec)
        return result

    def volume_create(self, name: str, labels: dict[str, str]) -> None:
        self._call("volume_create", name=name, labels=labels)

    def volume_remove(self, name: str) -> None:
        self._call("volume_remove", name=name)

    def create(self, spec: ContainerSpec) -> ContainerInfo:
        result: ContainerInfo = self._call("create", spec=spec)
        return result

    def start(self, container_id: str) -> None:
        self._call("start", container_id=container_id)

    def stop(self, container_id: str, *, timeout_s: int = 10) -> None:
        self._call("stop", container_id=container_id, timeout_s=timeout_s)

    def remove(self, container_id: str, *, force: bool = True) -> None:
        self._call("remove", container_id=container_id, force=force)

    def pause(self, container_id: str) -> None:
        self._call("pause", container_id=container_id)

    def unpause(self, container_id: str) -> None:
        self._call("unpause", container_id=container_id)

    def restart_policy_set(self, container_id: str, policy: str | None) -> None:
        self._call("restart_policy_set", container_id=container_id, policy=policy)

    def inspect(self, container_id: str) -> ContainerInfo:
        result: ContainerInfo = self._call("inspect", container_id=container_id)
        return result

    def list_by_labels(self, labels: dict[str, str]) -> list[ContainerInfo]:
        result: list[ContainerInfo] = self._call("list_by_labels", labels=labels)
        return result

    def volume_list_by_labels(self, labels: dict[str, str]) -> list[VolumeInfo]:
        result: list[VolumeInfo] = self._call("volume_list_by_labels", labels=labels)
        return result

    def stats(self, container_id: str) -> ContainerStats:
        result: ContainerStats = self._call("stats", container_id=container_id)
        return result

    # --- exec ---------------------------------------------------------------------------

    def exec_create(self, container_id: str, spec: ExecSpec) -> str:
        result: str = self._call("exec_create", container_id=container_id, spec=spec)
        return result

    def exec_inspect(self, exec_id: str) -> ExecState:
        result: ExecState = self._call("exec_inspect", exec_id=exec_id)
        return result

    def exec_stream(self, exec_id: str) -> ExecOutput:
        # On a pooled connection too (the agent chunks the output, so the connection
        # outlives it): no connect, TLS handshake or agent thread per exec.
        conn, response = self._pooled_stream(
            "exec_stream", self._stream_args("exec_stream", exec_id=exec_id)
        )
        assert conn.sock is not None
        conn.sock.settimeout(None)  # an exec may be quiet for as long as it runs
        return _RemoteExecOutput(conn, response, self)

    def exec_open_tty(self, container_id: str, spec: ExecSpec) -> InteractiveExec:
        body = self._stream_args("exec_open_tty", container_id=container_id, spec=spec)
        sock = self._tty_socket()
        try:
            sock.settimeout(self._timeout_s)
            upgrade = f"Connection: Upgrade\r\nUpgrade: {wire.UPGRADE}\r\n".encode()
            sock.sendall(
                request_bytes(
                    "POST",
                    wire.API_PREFIX + "exec_open_tty",
                    self._plain_head + upgrade,
                    body,
                    b"application/json",
                )
            )
            head, leftover = read_raw_head(sock)
            answer = HttpAnswer(head_only=True)
            answer.read_head(head)
            status, headers = answer.status, answer.headers
            if status != 101:
                length = int(headers.get("content-length", "0"))
                while len(leftover) < length and (part := sock.recv(length - len(leftover))):
                    leftover += part
                try:
                    body_json = json.loads(leftover[:length])
                except ValueError:
                    body_json = None
                raise wire.error_from(body_json, status)
        except OSError as exc:
            sock.close()
            raise self._unavailable(exc) from exc
        except DevBenchError:
            sock.close()
            raise
        return _RemoteTty(sock, leftover, headers.get(wire.EXEC_ID_HEADER.lower(), ""))

    def _tty_socket(self) -> socket.socket:
        """A connection of the shell's own: the agent's socket if this host has it."""
        path = self._local_socket()
        if path is not None:
            with contextlib.suppress(OSError):
                return _unix_connect(path, timeout_s=CONNECT_TIMEOUT_S)
        try:
            sock = socket.create_connection((self._host, self._port), timeout=CONNECT_TIMEOUT_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # keystrokes go at once
        except OSError as exc:
            raise self._unavailable(exc) from exc
        if self._tls is not None:
            try:
                sock = self._tls.wrap_socket(sock)
            except OSError as exc:
                sock.close()
                raise self._unavailable(exc) from exc
        return sock

    # --- archives -------------------------------------------------------------------------

    def path_stat(self, container_id: str, path: str) -> PathStat | None:
        result: PathStat | None = self._call("path_stat", container_id=container_id, path=path)
        return result

    def path_stat_chain(self, container_id: str, paths: list[str]) -> list[PathStat | None]:
        if len(paths) <= 1:
            return super().path_stat_chain(container_id, paths)
        try:
            result: list[PathStat | None] = self._call(
                "path_stat_chain", container_id=container_id, paths=paths
            )
        except DevBenchError as exc:
            if exc.code != wire.UNKNOWN_METHOD:
                raise
            return super().path_stat_chain(container_id, paths)  # an agent of an earlier version
        if not 0 < len(result) <= len(paths):
            raise EngineError(
                f"The node agent answered {len(result)} stats for {len(paths)} paths."
            )
        return result

    def archive_get(self, container_id: str, path: str) -> ArchiveReader:
        # On a pooled connection (the body is chunked): no connect, handshake or new
        # agent thread per read.
        body = self._stream_args("archive_get", container_id=container_id, path=path)
        conn, response = self._pooled_stream("archive_get", body)
        return _RemoteArchiveReader(conn, response, self._stat_of(conn, response), self)

    @staticmethod
    def _stat_of(conn: _Connection, response: http.client.HTTPResponse) -> PathStat:
        """The path's stat that came with a streamed answer (``wire.STAT_HEADER``)."""
        try:
            stat: PathStat = wire.load(
                PathStat, json.loads(response.getheader(wire.STAT_HEADER, "{}"))
            )
        except ValueError:
            conn.close()
            raise
        return stat

    def tree_entries(self, container_id: str, path: str, *, nested: bool) -> TreeEntries:
        # The agent reads the directory's archive: only names and stats cross to here.
        body = self._stream_args(
            "tree_entries", container_id=container_id, path=path, nested=nested
        )
        try:
            conn, response = self._pooled_stream("tree_entries", body)
        except DevBenchError as exc:
            if exc.code != wire.UNKNOWN_METHOD:
                raise
            # An agent of an earlier version: its archive, read here.
            return TarEntries(self.archive_get(container_id, path), nested=nested)
        stat = self._stat_of(conn, response)
        return _RemoteTreeEntries(_RemoteBody(conn, response, self), stat)

    def archive_put(self, container_id: str, path: str, data: Iterable[bytes]) -> None:
        self._archive_put(container_id, path, data, {})

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
        # The agent renames once the put succeeded: one round trip instead of two. An agent
        # of an earlier version ignores the header and does not say it renamed: then the
        # rename is a call of its own.
        rename: dict[str, str | bool] = {"src": src, "dst": dst, "user": user}
        if large_file:
            rename["large_file"] = True
        answer = self._archive_put(
            container_id, path, data, {wire.RENAME_HEADER: json.dumps(rename)}
        )
        if not (isinstance(answer, dict) and answer.get("renamed")):
            self.path_rename(container_id, src, dst, user=user)

    def _archive_put(
        self, container_id: str, path: str, data: Iterable[bytes], extra: dict[str, str]
    ) -> Any:
        """The agent's ``result`` for an archive put."""
        # A pooled connection too (the answer has a length, so it stays usable); one
        # reused within _REUSE_WITHIN_S is open on the agent's side, which matters
        # because a consumed body cannot be sent again.
        # A body of known length (a SizedTar) goes with a Content-Length, unframed.
        length = body_length(data)
        framing = {"Transfer-Encoding": "chunked"} if length is None else {}
        conn, _ = self._checkout()
        try:
            conn.putrequest("POST", wire.API_PREFIX + "archive_put")
            for name, value in self._headers(
                {
                    "Content-Type": "application/x-tar",
                    **({"Content-Length": str(length)} if length is not None else framing),
                    "X-Container-Id": container_id,
                    "X-Path": json.dumps(path),
                    **extra,
                }
            ).items():
                conn.putheader(name, value)
            conn.endheaders()
            for chunk in data:
                if not chunk:
                    continue
                if length is not None:
                    conn.send(chunk)
                else:  # framed by hand: http.client would copy every chunk to frame it
                    conn.send(b"%x\r\n" % len(chunk))
                    conn.send(chunk)
                    conn.send(b"\r\n")
            if length is None:
                conn.send(b"0\r\n\r\n")
            response = conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise _broken(self, exc) from exc
        except BaseException:
            conn.close()  # the body failed half-sent: the connection is spent
            raise
        self._checkin(conn, response)
        _raise_status(response.status, payload)
        return json.loads(payload).get("result")

    def path_rename(
        self, container_id: str, src: str, dst: str, *, user: str, large_file: bool = False
    ) -> None:
        # A call of its own (a move, or an agent of an earlier version after a put) renames
        # the plain way: the hint only rides with a write's put.
        self._call("path_rename", container_id=container_id, src=src, dst=dst, user=user)

    def path_remove(
        self, container_id: str, path: str, *, kind: PathKind, recursive: bool, user: str
    ) -> None:
        self._call(
            "path_remove",
            container_id=container_id,
            path=path,
            kind=kind,
            recursive=recursive,
            user=user,
        )


def _raise_status(status: int, payload: bytes) -> None:
    """The agent's error (rebuilt as its class) unless ``status`` is 200."""
    if status == 200:
        return
    try:
        body = json.loads(payload)
    except ValueError:
        body = None
    raise wire.error_from(body, status)


def _broken(driver: RemoteDriver, exc: BaseException) -> EngineUnavailable:
    return NodeUnavailable(
        f"The stream from node '{driver.node}' broke ({type(exc).__name__}).",
        node=driver.node,
    )


_DRAIN = 64 * 1024


class _RemoteBody:
    """A streamed (chunked) answer on a pooled connection, which goes back to the pool
    once the answer was read to its end."""

    def __init__(
        self, conn: _Connection, response: http.client.HTTPResponse, driver: RemoteDriver
    ) -> None:
        self._conn = conn
        self._response = response
        self._driver = driver
        self._closed = False

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._response.read(None if size < 0 else size)
        except (OSError, http.client.HTTPException) as exc:
            # A chunked body that stops without its last chunk: the agent's engine
            # read broke mid-stream (or the node went away).
            raise self.broken(exc) from exc
        return self._not_cut_short(data, size)

    def _not_cut_short(self, data: bytes, size: int) -> bytes:
        # A body of a stated length that ends early ends the reads of http.client
        # quietly (an engine's answer the agent passed on as it came).
        if not data and size and self._response.length:
            raise self.broken(http.client.IncompleteRead(b"", self._response.length))
        return data

    def broken(self, exc: BaseException) -> EngineUnavailable:
        return _broken(self._driver, exc)

    def read_chunk(self) -> bytes:
        """What is left of the chunk the agent is sending (a whole one if none was begun)."""
        try:
            data = self._response.read1(_DRAIN)
        except (OSError, http.client.HTTPException) as exc:
            raise self.broken(exc) from exc
        return self._not_cut_short(data, _DRAIN)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._response.isclosed():
            # A tar reader stops at the end-of-archive blocks, before the last chunk:
            # take what little is left so the connection can serve the next call.
            with contextlib.suppress(OSError, http.client.HTTPException):
                self._response.read(_DRAIN)
        if self._response.isclosed():
            self._driver._checkin(self._conn, self._response)
        else:
            self._conn.shutdown()  # a range read stopped early: nobody reads the rest
            # An answer that ends its connection took the socket from it: closed here.
            self._response.close()


class _RemoteArchiveReader(_RemoteBody, ArchiveReader):
    def __init__(
        self,
        conn: _Connection,
        response: http.client.HTTPResponse,
        stat: PathStat,
        driver: RemoteDriver,
    ) -> None:
        super().__init__(conn, response, driver)
        self.stat = stat


class _RemoteTreeEntries(TreeEntries):
    """The agent's lines of entries (``wire.entry_lines``), read as they are needed."""

    def __init__(self, body: _RemoteBody, stat: PathStat) -> None:
        self._body = body
        self.stat = stat
        self._entries: Iterator[TreeEntry] = iter(())
        self._partial = b""

    def __next__(self) -> TreeEntry:
        while True:
            entry = next(self._entries, None)
            if entry is not None:
                return entry
            line, newline, self._partial = self._partial.partition(b"\n")
            if not newline:
                data = self._body.read_chunk()
                if not data:
                    if line:
                        raise self._body.broken(EOFError("a line ended early"))
                    raise StopIteration
                self._partial = line + data
                continue
            try:
                self._entries = iter(wire.entries_of_line(line))
            except ValueError as exc:
                raise self._body.broken(exc) from exc

    def close(self) -> None:
        self._body.close()


class _RemoteExecOutput(ExecOutput):
    """An exec's frames off a pooled connection, which goes back to the pool once the
    stream has ended cleanly; ``close`` (from any thread) before that shuts it down."""

    def __init__(
        self, conn: _Connection, response: http.client.HTTPResponse, driver: RemoteDriver
    ) -> None:
        self._conn = conn
        self._response = response
        self._driver = driver
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._iterating = False  # a thread reads the stream: it closes the connection
        self._released = False  # the connection went back to the pool or was closed

    def broken(self, exc: BaseException) -> EngineUnavailable:
        return _broken(self._driver, exc)

    def _read_exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            part = self._response.read(size - len(data))
            if not part:
                raise EOFError("the exec stream ended mid-frame")
            data += part
        return data

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        ended = False
        with self._lock:
            self._iterating = not self._released
        try:
            while True:
                stream, length = wire.FRAME.unpack(self._read_exactly(wire.FRAME.size))
                if stream == 0 and length == 0:
                    # The end frame; then the last chunk, which frees the connection.
                    ended = self._response.read(_DRAIN) == b"" and self._response.isclosed()
                    return
                yield stream, self._read_exactly(length)
        except (OSError, EOFError, http.client.HTTPException, ValueError) as exc:
            if self._closed.is_set():
                return  # closed on purpose by the caller
            raise _broken(self._driver, exc) from exc
        finally:
            self._release(reuse=ended)

    def _release(self, *, reuse: bool) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
            if reuse and not self._closed.is_set():
                assert self._conn.sock is not None
                self._conn.sock.settimeout(self._driver._timeout_s)
                self._driver._checkin(self._conn, self._response)
            else:
                self._conn.close()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            if self._released:
                return  # ended cleanly: the connection may already serve another call
            sock = self._conn.sock
            if self._iterating and sock is not None:
                # Wake the reader, which closes the connection in its own thread (closing
                # its response here would race the read it is in).
                with contextlib.suppress(OSError):
                    shutdown_socket(sock, socket.SHUT_RDWR)
                return
            self._released = True
            self._conn.shutdown()


class _RemoteFollowed:
    """The pieces of a followed stream (``wire.FOLLOW``), framed as exec output is."""

    def __init__(self, frames: _RemoteExecOutput) -> None:
        self._frames = frames

    def __iter__(self) -> Iterator[bytes]:
        for kind, piece in self._frames:
            if kind != wire.FOLLOW_PIECE:
                raise self._frames.broken(ValueError(f"a followed piece of kind {kind}"))
            yield piece

    def close(self) -> None:
        self._frames.close()


class _RemoteTty(InteractiveExec):
    def __init__(self, sock: socket.socket, leftover: bytes, exec_id: str) -> None:
        self._sock = sock
        # Read by the shell's output thread, written by its input thread.
        self._duplex = SocketDuplex(sock, leftover=leftover)
        self.id = exec_id

    def read(self, max_bytes: int = 65536) -> bytes:
        return self._duplex.recv(max_bytes)

    def _send(self, kind: int, payload: bytes) -> None:
        try:
            self._duplex.sendall(wire.FRAME.pack(kind, len(payload)) + payload)
        except OSError as exc:
            raise NodeUnavailable("The shell's connection to its node is gone.", node="") from exc

    def write(self, data: bytes) -> None:
        self._send(wire.TTY_STDIN, data)

    def resize(self, *, rows: int, cols: int) -> None:
        self._send(wire.TTY_RESIZE, json.dumps({"rows": rows, "cols": cols}).encode())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            shutdown_socket(self._sock, socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()
