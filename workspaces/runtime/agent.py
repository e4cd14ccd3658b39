"""The node agent: a node worker serves its engine to the platform's other processes.

Web processes hold no engine socket; every engine call for a workspace goes to
the agent of the worker on the workspace's node, which runs it on its local
driver. Streams (files, exec output, the shell) flow straight through the
caller's HTTP connection, with TCP's back-pressure and no buffering in Redis
(docs/adr/node-routing.md). Wire format: ``workspaces.runtime.wire``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import secrets
import socket
import socketserver
import ssl
import stat
import threading
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httptools
from django.core.exceptions import ImproperlyConfigured

from core.errors import DevBenchError, EngineError, ValidationFailed
from workspaces.runtime import wire
from workspaces.runtime.agent_tls import HANDSHAKE_TIMEOUT_S, is_loopback, shutdown_socket
from workspaces.runtime.base import (
    ArchiveReader,
    Followed,
    InteractiveExec,
    PathStat,
    RuntimeDriver,
    SocketBody,
    SpliceableArchive,
    resize_when_started,
)
from workspaces.runtime.duplex import SocketDuplex
from workspaces.runtime.splice import SourceFailed, can_splice, splice_between, write_all

logger = logging.getLogger(__name__)

# An idle keep-alive connection is dropped after this long (callers retry on a fresh one).
IDLE_TIMEOUT_S = 120
_COPY_CHUNK = 1024 * 1024
_FRAME_APART_FROM = 64 * 1024
# A download is forwarded in pieces that grow from this size to _COPY_CHUNK: whole
# megabytes from the start held a listing's first entries back from the caller's parser
# (a listing of 1,000 files is a 1 MiB tar) until the engine had walked the whole tree,
# and small pieces all along cost a large transfer CPU on both ends (bench/README.md).
_FIRST_PIECE = 64 * 1024
# A request head's limits (those of the standard library's server).
_MAX_LINE = 65536
_MAX_FIELDS = 100


# Work a node's worker starts at once when a caller hands it over, instead of through the
# broker and the node's queue (an exec's runner: ``execution.hand_off``). The function
# takes the JSON arguments and says whether it took the work (False: busy, shutting
# down); a ValueError is a bad request. Registered by the app that owns the work, so
# this module imports none.
HandOff = Callable[[dict[str, Any]], bool]
_hand_offs: dict[str, HandOff] = {}


def register_hand_off(name: str, take: HandOff) -> None:
    _hand_offs[name] = take


# A stream a node's worker serves from its own memory to a caller following it (an
# exec's output as its runner emits it: ``execution.live``). The function takes the JSON
# arguments and returns the stream, or None when there is nothing to follow here; a
# ValueError is a bad request.
Follow = Callable[[dict[str, Any]], Followed | None]
_follows: dict[str, Follow] = {}


def register_follow(name: str, open_stream: Follow) -> None:
    _follows[name] = open_stream


def follow_here(name: str, args: dict[str, Any]) -> Followed | None:
    """Follow ``name`` in this process (a node worker's own follow)."""
    open_stream = _follows.get(name)
    return None if open_stream is None else open_stream(args)


def hand_off_here(name: str, args: dict[str, Any]) -> bool:
    """Start ``name`` in this process (a node worker handing work to itself)."""
    take = _hand_offs.get(name)
    return take is not None and take(args)


class _BadRequest(Exception):
    pass


class AgentBadRequest(ValidationFailed):
    code = "agent_bad_request"


class AgentCallFailed(EngineError):
    code = "node_agent_error"


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        *,
        driver: RuntimeDriver,
        token: str,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.driver = driver
        self.token = token
        self.tls = tls
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}"

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        # The handshake runs in the connection's own thread, not in the accept loop,
        # so a client that stalls it holds up nobody else.
        request.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            logger.info("agent: TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            with contextlib.suppress(OSError):
                shutdown_socket(conn, socket.SHUT_WR)  # what was sent arrives before the close
            conn.close()


class AgentSocketServer(socketserver.ThreadingUnixStreamServer):
    """The agent on a Unix socket, for callers on the node's own host.

    No TLS: what a Unix socket carries never leaves the kernel, and only the socket's
    owner (the worker's user, who can read the node's secret anyway) may connect.
    Callers prove themselves with the same secret as over TCP.
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, path: str, *, driver: RuntimeDriver, token: str) -> None:
        self.driver = driver
        self.token = token
        self.path = path
        super().__init__(path, _SocketHandler, bind_and_activate=False)
        try:
            self.server_bind()
            # Owner-only. Before this chmod only the owner could reach it anyway: its
            # directory is owner-only (agent_serve_socket).
            os.chmod(path, 0o600)
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def server_close(self) -> None:
        super().server_close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class _LengthBody(SocketBody):
    """A request body of a known length, read in large pieces or moved to another
    socket in the kernel (``send_into``).

    An iterator, so reading it again after an error takes up where it stopped.
    """

    def __init__(self, rfile: Any, sock: socket.socket, length: int) -> None:
        self._rfile = rfile
        self._sock = sock
        self._length = length
        self._remaining = length

    def __len__(self) -> int:
        return self._length

    def __next__(self) -> bytes:
        if not self._remaining:
            raise StopIteration
        # What has arrived (up to a chunk), not a whole chunk: the engine gets it while
        # the caller sends the next, instead of waiting for each megabyte to fill.
        data: bytes = self._rfile.read1(min(_COPY_CHUNK, self._remaining))
        if not data:
            self._remaining = 0
            raise _BadRequest("The body ended early.")
        self._remaining -= len(data)
        return data

    @property
    def spliceable(self) -> bool:
        return can_splice(self._sock)

    def send_into(self, sock: socket.socket) -> None:
        # What the head's reader took in beyond the head goes first, through Python.
        if self._remaining and self._rfile.peek(0):
            sock.sendall(next(self))
        if not self._remaining:
            return
        try:
            splice_between(self._sock, sock, self._remaining, on_taken=self._taken)
        except SourceFailed as exc:
            self._remaining = 0
            raise _BadRequest(f"The body ended early ({exc}).") from exc

    def write_into(self, fd: int, count: int) -> None:
        if count > self._remaining:
            raise _BadRequest("The body is shorter than the file it announces.")
        while count and self._rfile.peek(0):  # what the head's reader took in beyond it
            data = self._rfile.read1(count)
            self._remaining -= len(data)
            count -= len(data)
            write_all(fd, data)
        if not count:
            return
        if not self.spliceable:
            while count:
                data = next(self)
                # (next() reads at most what is left of the body, so nothing past the file
                # when count is what is left; a caller asks for no more than the file.)
                if len(data) > count:
                    raise _BadRequest("The body went on past the file it announces.")
                count -= len(data)
                write_all(fd, data)
            return
        try:
            splice_between(self._sock, fd, count, on_taken=self._taken)
        except SourceFailed as exc:
            self._remaining = 0
            raise _BadRequest(f"The body ended early ({exc}).") from exc

    def _taken(self, count: int) -> None:
        self._remaining -= count


def _growing_pieces(reader: ArchiveReader) -> Iterator[bytes]:
    """The reader's bytes: _FIRST_PIECE, then twice as much each time up to _COPY_CHUNK."""
    size = _FIRST_PIECE
    while data := reader.read(size):
        yield data
        size = min(size * 2, _COPY_CHUNK)


class _Head:
    """A request head's target and fields (names lower-cased), as httptools calls them."""

    def __init__(self) -> None:
        self.url = b""
        self.fields: dict[str, str] = {}
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        self.complete = True


class _Handler(BaseHTTPRequestHandler):
    server: AgentServer | AgentSocketServer
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S
    # An answer is written as its head, then its body: with Nagle's algorithm the body
    # waits for the caller's (delayed) ACK of the head, ~40 ms a call. Keystrokes of the
    # shell are small writes too.
    disable_nagle_algorithm = True
    rbufsize = _COPY_CHUNK  # uploads arrive in large chunks: fewer, larger reads

    raw_requestline: bytes  # (set by handle_one_request; not in the standard stubs)
    fields: dict[str, str]  # the request's head, names lower-cased (parse_request)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("agent: " + format, *args)

    def parse_request(self) -> bool:
        """The request line and head, parsed by httptools: the standard library's parse
        (through its email parser) was a third of the agent's CPU for a small call."""
        self.command = None  # type: ignore[assignment]  # (what the standard one does)
        self.request_version = self.protocol_version  # an error is answered in HTTP/1.1
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        lines = [self.raw_requestline]
        while lines[-1] not in (b"\r\n", b"\n", b""):
            line = self.rfile.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long")
                return False
            if len(lines) > _MAX_FIELDS:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
                return False
            lines.append(line)
        head = _Head()
        parser = httptools.HttpRequestParser(head)
        try:
            parser.feed_data(b"".join(lines))
        except httptools.HttpParserUpgrade:
            pass  # the head is whole; the method answers the upgrade
        except httptools.HttpParserError as exc:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request ({exc})")
            return False
        if not head.complete:
            return False  # the caller left mid-head
        self.command = parser.get_method().decode("latin-1")
        self.path = head.url.decode("latin-1")
        self.request_version = f"HTTP/{parser.get_http_version()}"
        self.fields = head.fields
        self.close_connection = not parser.should_keep_alive()
        if self.fields.get("expect", "").lower() == "100-continue":
            return self.handle_expect_100()  # (the standard server's answer: go on)
        return True

    # --- request plumbing --------------------------------------------------------

    def do_POST(self) -> None:
        method = self.path[len(wire.API_PREFIX) :] if self.path.startswith(wire.API_PREFIX) else ""
        if not self._authorised():
            self._drain_body()
            self._send_json(HTTPStatus.UNAUTHORIZED, {"error": {"code": "agent_token_invalid"}})
            return
        try:
            if method in wire.CALLS:
                self._call(method)
            elif method == "archive_put":
                self._archive_put()
            elif method in wire.STREAM_ARGS:
                getattr(self, f"_{method}")(self._args(wire.STREAM_ARGS[method]))
            elif method.startswith(wire.HAND_OFF):
                self._hand_off(method[len(wire.HAND_OFF) :])
            elif method.startswith(wire.FOLLOW):
                self._follow(method[len(wire.FOLLOW) :])
            else:
                self._drain_body()
                self._send_json(HTTPStatus.NOT_FOUND, {"error": {"code": wire.UNKNOWN_METHOD}})
        except _BadRequest as exc:
            self._send_error(AgentBadRequest(str(exc)))

    def _authorised(self) -> bool:
        given = self.fields.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.server.token}".encode())

    def _json_body(self) -> Any:
        length = int(self.fields.get("content-length") or 0)
        try:
            return json.loads(self.rfile.read(length) or b"{}")
        except ValueError as exc:
            raise _BadRequest("The body is not JSON.") from exc

    def _args(self, types: dict[str, Any]) -> dict[str, Any]:
        try:
            return wire.load_args(types, self._json_body())
        except ValueError as exc:
            raise _BadRequest(str(exc)) from exc

    def _drain_body(self) -> None:
        if self.fields.get("transfer-encoding", "").lower() == "chunked":
            for _ in self._chunks():
                pass
        else:
            self.rfile.read(int(self.fields.get("content-length") or 0))

    def _chunks(self) -> Iterator[bytes]:
        """The decoded chunks of a chunked request body."""
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise _BadRequest("Bad chunked encoding.") from exc
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            data = self.rfile.read(size)
            self.rfile.readline(8)  # the CRLF after each chunk
            if len(data) < size:
                raise _BadRequest("The body ended early.")
            yield data

    def _send_json(self, status: int, body: Any) -> None:
        # Head and body in one write: a caller woken by the head alone would wait again
        # for the body, and each write is a system call (a stat's whole answer is ~300
        # bytes). Without send_response's Server and Date headers, which nobody reads.
        payload = json.dumps(body).encode()
        self.log_request(status)
        self.wfile.write(
            b"HTTP/1.1 %d %b\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b"
            % (status, HTTPStatus(status).phrase.encode(), len(payload), payload)
        )

    def _send_error(self, exc: DevBenchError) -> None:
        self._send_json(exc.http_status, wire.error_body(exc))

    def _start_chunked(self, headers: dict[str, str]) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _write_chunk(self, data: bytes) -> None:
        if len(data) < _FRAME_APART_FROM:
            # One write per small chunk (exec output): over TLS each write is its own
            # run of records and syscalls.
            self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
            return
        # A large one (archive data) is not copied to be framed: two tiny writes cost less.
        self.wfile.write(b"%x\r\n" % len(data))
        self.wfile.write(data)
        self.wfile.write(b"\r\n")

    def _end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    # --- plain calls -----------------------------------------------------------------

    def _call(self, method: str) -> None:
        arg_types, result_type = wire.CALLS[method]
        kwargs = self._args(arg_types)
        try:
            result = getattr(self.server.driver, method)(**kwargs)
        except DevBenchError as exc:
            self._send_error(exc)
            return
        except Exception:
            logger.exception("agent: %s failed", method)
            self._send_error(AgentCallFailed(f"The node agent failed running {method}."))
            return
        self._send_json(HTTPStatus.OK, {"result": wire.dump(result_type, result)})

    def _hand_off(self, name: str) -> None:
        args = self._json_body()
        take = _hand_offs.get(name)
        if take is None:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": {"code": wire.UNKNOWN_METHOD}})
            return
        if not isinstance(args, dict):
            raise _BadRequest("The arguments are not a JSON object.")
        try:
            taken = take(args)
        except ValueError as exc:
            raise _BadRequest(str(exc)) from exc
        except Exception:
            logger.exception("agent: hand-off %s failed", name)
            taken = False  # the caller queues it instead
        self._send_json(HTTPStatus.OK, {"taken": bool(taken)})

    def _follow(self, name: str) -> None:
        args = self._json_body()
        if not isinstance(args, dict):
            raise _BadRequest("The arguments are not a JSON object.")
        try:
            followed = follow_here(name, args)
        except ValueError as exc:
            raise _BadRequest(str(exc)) from exc
        if followed is None:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": {"code": wire.NOT_FOLLOWING}})
            return
        self._start_chunked({})
        try:
            for piece in followed:
                self._write_chunk(wire.FRAME.pack(wire.FOLLOW_PIECE, len(piece)) + piece)
            self._write_chunk(wire.FRAME.pack(0, 0))
            self._end_chunked()
        except OSError:
            self.close_connection = True  # the follower went away
        finally:
            followed.close()

    # --- streams ---------------------------------------------------------------------

    def _archive_get(self, args: dict[str, Any]) -> None:
        container_id, path = args["container_id"], args["path"]
        driver = self.server.driver
        try:
            spliced = (
                driver.archive_get_spliceable(container_id, path)
                if can_splice(self.connection)
                else None
            )
            if spliced is not None:
                self._splice_out(spliced)
                return
            reader = driver.archive_get(container_id, path)
        except DevBenchError as exc:
            self._send_error(exc)
            return
        with reader:
            # Chunked, so the connection outlives the stream and the caller reuses it;
            # a missing last chunk tells the caller the stream broke.
            self._start_chunked({wire.STAT_HEADER: json.dumps(wire.dump(PathStat, reader.stat))})
            self._stream_out(_growing_pieces(reader), args["path"])

    def _splice_out(self, archive: SpliceableArchive) -> None:
        """The engine's answer moved to the caller in the kernel, in the engine's own
        framing (a stream that breaks shows at the caller's end). Chunks are not read
        here, so where chunks end is unknown: such an answer ends its connection. One
        of a stated length leaves it open for the next call."""
        self.close_connection = archive.length is None
        stat = json.dumps(wire.dump(PathStat, archive.stat)).encode()
        closing = b"Connection: close\r\n" if self.close_connection else b""
        self.log_request(HTTPStatus.OK)
        with archive:
            try:
                self.connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n%b\r\n"
                    b"%b: %b\r\n%b\r\n"
                    % (archive.framing, wire.STAT_HEADER.encode(), stat, closing)
                )
                if not archive.send_into(self.connection):
                    self.close_connection = True  # the caller must see the body end early
            except OSError:
                self.close_connection = True  # the caller stopped reading (a range) or left

    def _tree_entries(self, args: dict[str, Any]) -> None:
        try:
            entries = self.server.driver.tree_entries(
                args["container_id"], args["path"], nested=args["nested"]
            )
        except DevBenchError as exc:
            self._send_error(exc)
            return
        with entries:
            self._start_chunked({wire.STAT_HEADER: json.dumps(wire.dump(PathStat, entries.stat))})
            self._stream_out(wire.entry_lines(entries), args["path"])

    def _stream_out(self, chunks: Iterator[bytes], path: str) -> None:
        """The chunks of a streamed answer whose head is sent, then its last chunk."""
        try:
            for data in chunks:
                self._write_chunk(data)
            self._end_chunked()
        except OSError:
            self.close_connection = True  # the caller stopped reading (a range) or left
        except Exception:
            self.close_connection = True  # headers are gone: no last chunk says it broke
            logger.warning("agent: the stream of %s broke", path, exc_info=True)

    def _archive_put(self) -> None:
        try:
            container_id = self.fields.get("x-container-id", "")
            path = json.loads(self.fields.get("x-path", '""'))
        except (TypeError, ValueError) as exc:
            raise _BadRequest("X-Container-Id and X-Path are required.") from exc
        body: Iterator[bytes]
        if self.fields.get("transfer-encoding", "").lower() == "chunked":
            body = self._chunks()
        else:  # the length is known: the engine gets it too, and no chunk framing
            body = _LengthBody(
                self.rfile, self.connection, int(self.fields.get("content-length") or 0)
            )
        rename = self._rename_after_put()
        driver = self.server.driver
        try:
            if rename is None:
                driver.archive_put(container_id, path, body)
            else:
                driver.archive_put_then_rename(
                    container_id,
                    path,
                    body,
                    src=rename["src"],
                    dst=rename["dst"],
                    user=rename["user"],
                    large_file=rename.get("large_file") is True,
                )
        except DevBenchError as exc:
            # Read the rest so the caller, still sending, gets the answer (not a reset).
            for _ in body:
                pass
            self._send_error(exc)
            return
        for _ in body:
            pass
        self._send_json(HTTPStatus.OK, {"result": None if rename is None else {"renamed": True}})

    def _rename_after_put(self) -> dict[str, Any] | None:
        """A file write's rename, asked for with its put (``RemoteDriver``)."""
        raw = self.fields.get(wire.RENAME_HEADER.lower())
        if raw is None:
            return None
        try:
            rename = json.loads(raw)
            if not all(isinstance(rename.get(k), str) for k in ("src", "dst", "user")):
                raise ValueError(raw)
        except (TypeError, ValueError, AttributeError) as exc:
            raise _BadRequest(f"{wire.RENAME_HEADER} must name src, dst and user.") from exc
        wanted = ("src", "dst", "user", "large_file")
        return {k: rename[k] for k in wanted if k in rename}

    def _exec_stream(self, args: dict[str, Any]) -> None:
        try:
            output = self.server.driver.exec_stream(args["exec_id"])
        except DevBenchError as exc:
            self._send_error(exc)
            return
        self._start_chunked({})
        try:
            for stream, data in output:
                self._write_chunk(wire.FRAME.pack(stream, len(data)) + data)
            self._write_chunk(wire.FRAME.pack(0, 0))
            self._end_chunked()
        except OSError:
            self.close_connection = True  # the caller went away: stop reading the exec
        finally:
            output.close()

    def _exec_open_tty(self, args: dict[str, Any]) -> None:
        try:
            tty = self.server.driver.exec_open_tty(args["container_id"], args["spec"])
        except DevBenchError as exc:
            self._send_error(exc)
            return
        self.send_response(HTTPStatus.SWITCHING_PROTOCOLS)
        self.send_header("Upgrade", wire.UPGRADE)
        self.send_header("Connection", "Upgrade")
        self.send_header(wire.EXEC_ID_HEADER, tty.id)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        # No wait (a shell may sit idle for hours). Nothing is buffered in rfile: the
        # caller sends its first frame only after it has read the 101.
        duplex = SocketDuplex(self.connection)
        pump = threading.Thread(target=self._tty_output, args=(tty, duplex), daemon=True)
        pump.start()
        try:
            self._tty_input(tty, duplex)
        finally:
            tty.close()
            pump.join(timeout=5)

    def _tty_output(self, tty: InteractiveExec, duplex: SocketDuplex) -> None:
        try:
            while data := tty.read():
                duplex.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            shutdown_socket(self.connection, socket.SHUT_WR)  # the caller reads the shell's end

    def _tty_input(self, tty: InteractiveExec, duplex: SocketDuplex) -> None:
        while header := duplex.recv_exactly(wire.FRAME.size):
            if len(header) < wire.FRAME.size:
                return
            kind, length = wire.FRAME.unpack(header)
            payload = duplex.recv_exactly(length)
            if kind == wire.TTY_STDIN:
                tty.write(payload)
            elif kind == wire.TTY_RESIZE:
                size = json.loads(payload)
                if not resize_when_started(tty, rows=int(size["rows"]), cols=int(size["cols"])):
                    logger.info("agent: a shell refused a resize")


class _SocketHandler(_Handler):
    disable_nagle_algorithm = False  # a Unix socket has no Nagle's algorithm to turn off

    def address_string(self) -> str:
        return "local socket"


def agent_serve(
    *, bind: str, driver: RuntimeDriver, token: str, tls: ssl.SSLContext | None
) -> AgentServer:
    """Start the agent on ``host:port`` (port 0: any free one) in a daemon thread; plain
    HTTP (``tls`` None) only on a loopback address."""
    host, _, port = bind.rpartition(":")
    host = host or "127.0.0.1"
    if tls is None and not is_loopback(host):
        raise ImproperlyConfigured(
            f"The node agent serves plain HTTP on the loopback only, not on {host}: "
            "leave DEVBENCH_NODE_AGENT_TLS on to serve other hosts."
        )
    server = AgentServer((host, int(port or 0)), driver=driver, token=token, tls=tls)
    thread = threading.Thread(target=server.serve_forever, name="node-agent", daemon=True)
    thread.start()
    logger.info("node agent listening on %s", server.url)
    return server


def agent_socket_sweep(directory: str) -> None:
    """Remove the sockets of agents that are gone (a worker killed before it could)."""
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if not (entry.name.startswith("agent-") and entry.name.endswith(".sock")):
                continue
            # (connecting to a file that is no socket is refused too)
            if not stat.S_ISSOCK(entry.stat(follow_symlinks=False).st_mode):
                continue
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(1.0)  # a live agent too busy to accept holds no one up
                try:
                    probe.connect(entry.path)
                except ConnectionRefusedError:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                except OSError:
                    pass  # not ours to judge (no permission, a timeout): leave it


def agent_serve_socket(*, directory: str, driver: RuntimeDriver, token: str) -> AgentSocketServer:
    """Start the agent on a new Unix socket in ``directory`` (made owner-only) in a daemon
    thread. Its name is random: a caller on another host finds no such file and uses
    the agent's URL."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)  # one made earlier with a wider mode, too
    agent_socket_sweep(directory)
    path = os.path.join(directory, f"agent-{secrets.token_hex(8)}.sock")
    server = AgentSocketServer(path, driver=driver, token=token)
    thread = threading.Thread(target=server.serve_forever, name="node-agent-socket", daemon=True)
    thread.start()
    logger.info("node agent listening on %s", path)
    return server
