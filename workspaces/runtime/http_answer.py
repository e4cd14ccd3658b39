"""One HTTP answer read straight off a kept-alive socket, parsed by httptools.

For the platform's own small calls: a node agent's plain calls and the engine's
quick calls (an exec's create and inspect, a path's stat). ``http.client`` spent
more CPU building and parsing the heads (through the email parser) than the rest
of such a call; httptools is the parser the web server already runs.
"""

from __future__ import annotations

import http.client
import socket

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
        self._pieces: list[bytes] = []
        self._complete = False

    @property
    def body(self) -> bytes:
        return b"".join(self._pieces)

    def feed(self, data: bytes) -> None:
        """Parse bytes of the answer read already (``read`` goes on after them)."""
        self.started = True
        self._parser.feed_data(data)

    def read(self, sock: socket.socket) -> None:
        """Read until the answer is whole: ``RemoteDisconnected`` if the server closed the
        connection first, ``ParseError`` if it is no HTTP answer, ``OSError``s as raised."""
        while not self._complete:
            data = sock.recv(65536)
            if not data:
                raise http.client.RemoteDisconnected("the server closed the connection")
            self.feed(data)

    def read_head(self, head: bytes) -> None:
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

    def on_message_complete(self) -> None:
        self._complete = True


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


# The longest answer head read (an upgrade's, an engine's archive answer).
_MAX_HEAD = 64 * 1024


def read_raw_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """An HTTP answer's head read straight off the socket, and what came after it.

    Not through a buffered reader: what follows the head (an upgraded connection's tty
    output, a body to be moved in the kernel) must not stay behind in a buffer another
    object reads. ``ConnectionError`` if the connection ends first.
    """
    data = b""
    while (end := data.find(b"\r\n\r\n")) < 0:
        if len(data) > _MAX_HEAD:
            raise ConnectionError("the answer has no end of head")
        part = sock.recv(65536)
        if not part:
            raise ConnectionError("the connection closed before an answer")
        data += part
    return data[: end + 4], data[end + 4 :]
