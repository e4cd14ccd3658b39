"""Small engine calls on a local socket, without docker-py's request machinery.

docker-py sends every call through requests (session, adapter, hooks, cookies)
and urllib3: ~0.4 ms of CPU for an exec inspect or a path's stat, against
~0.07-0.1 ms for the same request on a kept-alive connection (bench/README.md),
each written in one piece and its answer parsed by httptools (``http_answer``).
A node worker makes two such calls per exec and one per file
stat, on every exec's and every stat's path, so those calls (exec create and
inspect, the archive ``HEAD``) come here when the engine is a local socket, and so
does an exec's start (``upgrade``: docker-py took ~4 ms to hand the stream over, this
~1 ms; on every exec's path too). Other streams, everything else and engines over TCP
stay on docker-py.

An answer of 400 or more raises what docker-py raises for it (``NotFound``,
``APIError``...), so ``errors.translated`` turns it into the same error; an engine
that cannot be reached raises ``requests.exceptions.ConnectionError`` and one that
does not answer in time ``TimeoutError``, as there.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import quote, urlencode

import docker.errors
import requests

from workspaces.runtime.base import SocketBody
from workspaces.runtime.http_answer import HttpAnswer, ParseError, read_raw_head, request_bytes

UNIX_PREFIX = "unix://"
# Idle connections kept per engine; more are opened when more threads call at once.
MAX_IDLE = 16
# The connection broke while it sat idle (the engine restarted, or closed it): the
# request never reached the engine, so it is sent again once on a new connection.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
# What every request carries (Go's server wants a Host).
_HEAD = b"Host: localhost\r\n"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout_s: float) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True)
class StreamedAnswer:
    """``get_streamed``'s answer: ``received`` is what followed the head on the socket (an
    error's whole body), ``conn`` where the rest of a success waits (None for an error)."""

    status: int
    headers: dict[str, str]  # names lower-cased
    received: bytes
    conn: http.client.HTTPConnection | None


class QuickEngine:
    """Kept-alive connections to one engine's socket, shared by the process's threads."""

    def __init__(self, socket_path: str, *, timeout_s: float, version: Callable[[], str]) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self._version = version  # the API version docker-py negotiated (asked once)
        self._prefix = ""
        self._lock = threading.Lock()
        self._idle: list[_UnixConnection] = []

    def json(self, method: str, path: str, body: Any = None) -> Any:
        """The decoded JSON answer of ``method path`` (with ``body`` as JSON)."""
        status, _, content = self.request(method, path, body=body)
        if status >= 400:
            raise_engine_error(status, content)
        return json.loads(content) if content else None

    def head(self, path: str, params: Mapping[str, str]) -> tuple[int, dict[str, str]]:
        """The status and headers (names lower-cased) of ``HEAD path?params``."""
        status, headers, _ = self.request("HEAD", path, query=params)
        return status, headers

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """The status, headers (names lower-cased) and body of the engine's answer."""
        payload = None if body is None else json.dumps(body).encode()
        request = request_bytes(method, self._url(path, query), _HEAD, payload, b"application/json")
        head_only = method == "HEAD"
        for attempt in range(2):
            conn, reused = self._take() if attempt == 0 else (self._new(), False)
            answer = HttpAnswer(head_only=head_only)
            with self._failing(conn):
                try:
                    self._send(conn, request, answer)
                except _STALE:
                    if reused and not answer.started:  # (an answer began: the engine had it)
                        conn.close()
                        continue
                    raise
            break
        self._release(conn, keep=answer.keep_alive)
        return answer.status, answer.headers, answer.body

    def put_body(self, path: str, query: Mapping[str, str], body: SocketBody) -> tuple[int, bytes]:
        """The status and body of the answer to ``PUT path?query`` with ``body`` moved
        into the engine's socket in the kernel. On a new connection: an idle one the
        engine dropped could fail only after part of the body was taken, too late to
        send it again."""
        fields = b"%bContent-Type: application/x-tar\r\nContent-Length: %d\r\n" % (_HEAD, len(body))
        head = request_bytes("PUT", self._url(path, query), fields, None, b"")
        conn = self._new()
        answer = HttpAnswer()
        sent = False
        with self._failing(conn):
            conn.connect()
            assert conn.sock is not None
            try:
                conn.sock.sendall(head)
                body.send_into(conn.sock)
                sent = True
            except (BrokenPipeError, ConnectionResetError):
                pass  # the engine answered before taking it all (an error): the answer says why
            answer.read(conn.sock)
        self._release(conn, keep=sent and answer.keep_alive)
        return answer.status, answer.body

    def get_streamed(self, path: str, query: Mapping[str, str]) -> StreamedAnswer:
        """``GET path?query`` on a connection of its own, which the engine closes after its
        answer: the head read, the body left on the socket (but what came with the head).
        An answer of 400 or more is read whole, and its connection closed."""
        fields = b"%bAccept-Encoding: identity\r\nConnection: close\r\n" % _HEAD
        request = request_bytes("GET", self._url(path, query), fields, None, b"")
        return self._head_first(request)

    def upgrade(self, path: str, body: Any) -> tuple[socket.socket, bytes]:
        """``POST path`` with ``body`` (JSON), the engine asked to hand the connection over
        (an exec's start): the socket, timeout-free, and what followed the answer's head on
        it (the start of the stream). On a connection of its own. An answer of 400 or more
        raises docker-py's error for it."""
        payload = json.dumps(body).encode()
        fields = b"%bConnection: Upgrade\r\nUpgrade: tcp\r\n" % _HEAD
        request = request_bytes("POST", self._url(path, None), fields, payload, b"application/json")
        answer = self._head_first(request)
        if answer.conn is None:
            raise_engine_error(answer.status, answer.received)
        sock = answer.conn.sock
        assert sock is not None
        answer.conn.sock = None  # the caller's now
        sock.settimeout(None)  # a quiet stream may last as long as its exec
        return sock, answer.received

    def _head_first(self, request: bytes) -> StreamedAnswer:
        """``request`` on a new connection, its answer's head read: a success's connection
        holds the rest; an answer of 400 or more is read whole, and its connection closed."""
        conn = self._new()
        with self._failing(conn):
            conn.connect()
            sock = conn.sock
            assert sock is not None
            sock.sendall(request)
            raw_head, rest = read_raw_head(sock)
            head = HttpAnswer(head_only=True)
            head.read_head(raw_head)
            if head.status < 400:
                return StreamedAnswer(head.status, head.headers, rest, conn)
            whole = HttpAnswer()
            whole.feed(raw_head + rest)
            whole.read(sock)
        conn.close()
        return StreamedAnswer(whole.status, whole.headers, whole.body, None)

    @contextlib.contextmanager
    def _failing(self, conn: _UnixConnection) -> Iterator[None]:
        """Close ``conn`` if what runs in it fails (a body's own failure too: the engine
        has part of it). A broken connection or answer is what docker-py raises for an
        engine it cannot reach."""
        try:
            yield
        except TimeoutError:
            conn.close()
            raise
        except (OSError, http.client.HTTPException, ParseError) as exc:
            conn.close()
            raise requests.exceptions.ConnectionError(
                f"engine socket {self.socket_path}: {exc}"
            ) from exc
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _url(self, path: str, query: Mapping[str, str] | None) -> str:
        if not self._prefix:
            self._prefix = f"/v{self._version()}"
        url = self._prefix + quote(path)
        # Every byte of a value escaped (a space as %20, not "+", which Go's query
        # parser would keep as a plus only in paths, not in queries).
        return f"{url}?{urlencode(query, quote_via=quote, safe='')}" if query else url

    @staticmethod
    def _send(conn: _UnixConnection, request: bytes, answer: HttpAnswer) -> None:
        if conn.sock is None:
            conn.connect()
        assert conn.sock is not None
        conn.sock.sendall(request)
        answer.read(conn.sock)

    def _new(self) -> _UnixConnection:
        return _UnixConnection(self.socket_path, self.timeout_s)

    def _take(self) -> tuple[_UnixConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._new(), False

    def _release(self, conn: _UnixConnection, *, keep: bool) -> None:
        if keep:
            self._give_back(conn)
        else:
            conn.close()

    def _give_back(self, conn: _UnixConnection) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()


def raise_engine_error(status: int, content: bytes) -> NoReturn:
    """Raise what docker-py raises for an engine answer of ``status`` with ``content``."""
    response = requests.Response()
    response.status_code = status
    response._content = content
    response.encoding = "utf-8"
    docker.errors.create_api_error_from_http_exception(  # raises NotFound, APIError...
        requests.exceptions.HTTPError(response=response)
    )
    raise docker.errors.APIError(f"engine answered {status}", response=response)


_lock = threading.Lock()
_engines: dict[tuple[str, float], QuickEngine] = {}


def quick_engine(base_url: str, timeout_s: float, version: Callable[[], str]) -> QuickEngine | None:
    """The process's quick client of the engine at ``base_url``; None unless it is a
    local socket (``unix://``)."""
    if not base_url.startswith(UNIX_PREFIX):
        return None
    key = (base_url, timeout_s)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            path = base_url[len(UNIX_PREFIX) :]
            engine = _engines[key] = QuickEngine(path, timeout_s=timeout_s, version=version)
        return engine


def forget_quick_engines() -> None:
    with _lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.close()
