"""uvicorn's HTTP protocol with the request-header limit (the production server's workers).

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
