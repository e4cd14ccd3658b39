"""One HTTP answer read straight off a kept-alive socket, parsed by httptools.

For the platform's own small calls: a node agent's plain calls and the engine's
quick calls (an exec's create and inspect, a path's stat). ``http.client`` spent
more CPU building and parsing the heads (through the email parser) than the rest
of such a call; httptools is the parser the web server already runs.
"""

from __future__ import annotations

import http.client
import select
import socket
from collections import deque

import httptools

ParseError = httptools.HttpParserError


class HttpAnswer:
    """The answer to one request; ``read`` fills it, httptools calls the ``on_*`` methods.

    ``head_only``: the answer to a HEAD, which announces a length it never sends.
    """

    def __init__(self, *, head_only: bool = False) -> None:
        self.started = False  # a byte arrived: the request reached the server
        self.status = 0
        self.keep_alive = False
        self.headers: dict[str, str] = {}  # names lower-cased
        self._head_only = head_only
        self._parser = httptools.HttpResponseParser(self)
        self._name = ""
        self._pieces: deque[bytes] = deque()
        self._buffered = 0  # bytes in _pieces
        self._head_read = False
        self._complete = False

    @property
    def body(self) -> bytes:
        return b"".join(self._pieces)

    @property
    def complete(self) -> bool:
        return self._complete

    def read(self, sock: socket.socket) -> None:
        """Read until the answer is whole: ``RemoteDisconnected`` if the server closed the
        connection first, ``ParseError`` if it is no HTTP answer, ``OSError``s as raised."""
        while not self._complete:
            self._receive(sock, 65536)

    def read_head(self, sock: socket.socket) -> None:
        """Read until the answer's head is whole (its body is read with ``read_body``)."""
        while not self._head_read:
            self._receive(sock, 65536)

    def read_body(self, sock: socket.socket, size: int) -> bytes:
        """Up to ``size`` bytes more of the body: what has arrived (waiting only when
        nothing has), never held back to fill ``size``. ``b""`` once it has ended."""
        while not self._pieces and not self._complete:
            self._receive(sock, size)
        # All that is there already, up to size: one piece per receive would hand a
        # forwarder the engine's small chunks one by one, each its own write.
        while not self._complete and self._buffered < size and _readable_now(sock):
            data = sock.recv(size - self._buffered)
            if not data:
                break  # the end, or a break: told by the next read, after what came before
            self._parser.feed_data(data)
        taken: list[bytes] = []
        while self._pieces and size > 0:
            piece = self._pieces.popleft()
            if len(piece) > size:
                piece, rest = piece[:size], piece[size:]
                self._pieces.appendleft(rest)
            taken.append(piece)
            size -= len(piece)
            self._buffered -= len(piece)
        return b"".join(taken)

    def _receive(self, sock: socket.socket, size: int) -> None:
        data = sock.recv(size)
        if not data:
            raise http.client.RemoteDisconnected("the server closed the connection")
        self.started = True
        self._parser.feed_data(data)

    def parse_head(self, head: bytes) -> None:
        """Parse a whole response head already read (``head_only``), nothing after it:
        ``ConnectionError`` if it is no HTTP answer. A ``101`` is whole too (what follows
        its head is another protocol's)."""
        try:
            self._parser.feed_data(head)
        except httptools.HttpParserUpgrade:
            pass
        except ParseError as exc:
            raise ConnectionError(f"not an HTTP answer ({exc})") from exc
        if not self._complete:
            raise ConnectionError("the answer's head ended early")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        # (Asked here: once the message is complete the parser has forgotten it.)
        self.status = self._parser.get_status_code()
        self._head_read = True
        if self._head_only:
            # The parser, not knowing the answer's body is left out, would wait for it (or
            # for the connection's end, without a length): judged by the version instead.
            self.keep_alive = (
                self._parser.get_http_version() == "1.1"
                and self.headers.get("connection", "").lower() != "close"
            )
            self._complete = True
        else:
            self.keep_alive = self._parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self._pieces.append(body)
        self._buffered += len(body)

    def on_message_complete(self) -> None:
        self._complete = True


def _readable_now(sock: socket.socket) -> bool:
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def request_bytes(
    method: str, target: str, head: bytes, body: bytes | None, content_type: bytes
) -> bytes:
    """A whole request in one piece: ``head`` holds the fields every request carries
    (each line ending in CRLF)."""
    if body is None:
        return b"%b %b HTTP/1.1\r\n%b\r\n" % (method.encode(), target.encode(), head)
    return b"%b %b HTTP/1.1\r\n%bContent-Type: %b\r\nContent-Length: %d\r\n\r\n%b" % (
        method.encode(),
        target.encode(),
        head,
        content_type,
        len(body),
        body,
    )
