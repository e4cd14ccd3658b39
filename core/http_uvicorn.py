"""uvicorn's HTTP protocol with the request-header limit (the production server's workers),
and request bodies received with one copy less.

uvicorn's httptools protocol has no header limit: a 100 KB ``Authorization`` (or
an endless header line) is accumulated whole. :class:`HttpProtocol` counts the
request line and headers of each request and, past
``DEVBENCH_MAX_REQUEST_HEADER_BYTES``, answers ``431 request_header_too_large``
(the same answer as daphne's, ``core.http_limits``), ends its side of the
connection and discards what the client still sends until it closes (at most
:data:`DISCARD_S`), so the client reads the answer instead of a reset. Websocket
handshakes are parsed here too, so the limit covers them.

Counted exactly per header as the parser completes it, and also per received
chunk while a request's head is still incomplete, so a header line that never
ends is refused once it passes the limit, not buffered forever.

uvicorn appends each piece of a body the parser hands it to a ``bytearray`` and
copies that whole into a new ``bytes`` for each ``receive``: every byte of an
upload is copied twice under the interpreter lock, on the event loop (a quarter
of the web process's time in a 64 MiB write; bench/README.md). :class:`_BodyPieces`
keeps the pieces instead and joins them once, or not at all when one piece came.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.http_limits import header_limit, header_refusal

# After a refusal, how long the server keeps discarding what the client still sends.
DISCARD_S = 5.0


class _HeadTooLarge(Exception):
    pass


class _BodyPieces:
    """What uvicorn's request cycle keeps as its body buffer: it only appends (``+=``),
    measures (``len``) and takes it whole (``bytes``), then starts a new one."""

    __slots__ = ("_pieces", "_size")

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._size = 0

    def __iadd__(self, piece: bytes) -> _BodyPieces:
        self._pieces.append(piece)
        self._size += len(piece)
        return self

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        pieces = self._pieces
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


class HttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_limit = header_limit()
        self._head_bytes = 0  # counted from the parser's callbacks, exact
        self._head_chunks = 0  # received while the head is incomplete, coarse
        self._in_head = True
        self._refused = False

    def data_received(self, data: bytes) -> None:
        # uvicorn's own, but a callback's refusal answers 431, not 400.
        if self._refused:
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__cause__ or exc.__context__, _HeadTooLarge):
                self._refuse()
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        if self._in_head:
            self._head_chunks += len(data)
            if self._head_chunks > self._head_limit:
                self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._head_chunks = 0
        self._in_head = True

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if not isinstance(cycle.body, _BodyPieces):  # a new request, or one taken by receive
            leftover = bytes(cycle.body)
            cycle.body = _BodyPieces()  # type: ignore[assignment]
            if leftover:
                cycle.body += leftover
        super().on_body(body)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # "name: value\r\n"
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self._head_limit:
            raise _HeadTooLarge  # httptools stops parsing and re-raises it from feed_data

    def _refuse(self) -> None:
        self._refused = True
        transport: Any = self.transport
        transport.write(header_refusal())
        if transport.can_write_eof():
            transport.write_eof()  # the answer, then end of stream; keep reading
            loop = asyncio.get_running_loop()
            loop.call_later(DISCARD_S, transport.abort)
        else:  # pragma: no cover - TLS transports cannot half-close
            transport.close()
