"""Request size limits and access-log hygiene of daphne (on Twisted).

The rules, answers and redaction are shared with the production server
(``core.http_limits``; the body limit is also enforced for both by its ASGI
middleware). Daphne offers no settings for these, so :func:`install` (called by
``devbench_site.asgi``) adjusts its HTTP protocol once per process:

- Request headers over ``DEVBENCH_MAX_REQUEST_HEADER_BYTES`` in total (or in one
  line) answer ``431 request_header_too_large``. Left alone, Twisted closes the
  connection without a word when a single header line passes 16 KiB (a long
  ``Authorization``), and answers a bare 400 when all headers pass 16 KiB.
- A body over ``DEVBENCH_MAX_REQUEST_BODY_BYTES`` (declared by
  ``Content-Length``, or counted while a chunked body arrives) answers
  ``413 request_body_too_large`` before the rest is read: daphne would buffer
  any body whole before the application (and its middleware) sees it.
- The access log never shows the value of a secret query parameter
  (``?token=``, ``?access_token=``...): accepted or refused, it reads
  ``token=[redacted]``.

Refusals use the shared error shape. The server sends the answer, then only
discards what the client still sends until it closes (or a few seconds pass), so
the client reads the answer instead of a connection reset.
"""

from __future__ import annotations

from typing import Any

from daphne.access import AccessLogGenerator
from twisted.web import http

from core.http_limits import body_limit, body_refusal, header_limit, header_refusal, redact

# After a refusal, how long the server keeps discarding what the client still sends.
DISCARD_S = 5.0

_installed = False


def _refuse(channel: Any, answer: bytes) -> None:
    if getattr(channel, "_devbench_refused", False):
        return
    channel._devbench_refused = True
    # From now on every byte from the client is dropped, also what the protocol still
    # has buffered, and no request is handed on to the application.
    for method in ("dataReceived", "rawDataReceived", "lineReceived"):
        setattr(channel, method, lambda data: None)
    channel.allContentReceived = lambda: None
    transport: Any = channel.transport
    transport.write(answer)
    try:
        transport.loseWriteConnection()  # the answer, then end of stream; keep reading
    except AttributeError:  # pragma: no cover - transports without half-close
        transport.loseConnection()
        return
    from twisted.internet import reactor  # the one daphne installed; never install another

    cast_reactor: Any = reactor
    cast_reactor.callLater(DISCARD_S, transport.abortConnection)


def _headers_too_large(channel: Any) -> None:
    _refuse(channel, header_refusal())


def _body_too_large(channel: Any) -> None:
    _refuse(channel, body_refusal())


def install() -> None:
    """Apply the limits and the log redaction to this process's daphne (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    _limit_headers(http.HTTPChannel)
    _limit_bodies(http.HTTPChannel, http.Request)
    _redact_access_log()


def _limit_headers(channel_class: Any) -> None:
    limit = header_limit()
    channel_class.totalHeadersSize = limit
    channel_class.MAX_LENGTH = limit
    line_received = channel_class.lineReceived

    def lineReceived(self: Any, line: bytes) -> None:
        if getattr(self, "_devbench_refused", False):
            return  # lines still buffered after a refusal
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            _headers_too_large(self)
            return
        line_received(self, line)

    def lineLengthExceeded(self: Any, line: bytes) -> None:
        _headers_too_large(self)

    channel_class.lineReceived = lineReceived
    channel_class.lineLengthExceeded = lineLengthExceeded


def _limit_bodies(channel_class: Any, request_class: Any) -> None:
    all_headers_received = channel_class.allHeadersReceived
    handle_content_chunk = request_class.handleContentChunk

    def allHeadersReceived(self: Any) -> None:
        if getattr(self, "_devbench_refused", False):
            return
        if self.length is not None and self.length > body_limit():
            _body_too_large(self)
            return
        all_headers_received(self)

    def handleContentChunk(self: Any, data: bytes) -> None:
        if getattr(self.channel, "_devbench_refused", False):
            return
        self._devbench_body_bytes = getattr(self, "_devbench_body_bytes", 0) + len(data)
        if self._devbench_body_bytes > body_limit():
            _body_too_large(self.channel)
            return
        handle_content_chunk(self, data)

    channel_class.allHeadersReceived = allHeadersReceived
    request_class.handleContentChunk = handleContentChunk


def _redact_access_log() -> None:
    log_action = AccessLogGenerator.__call__

    def redacted_log(self: Any, protocol: str, action: str, details: dict[str, Any]) -> None:
        if isinstance(details.get("path"), str):
            details = {**details, "path": redact(details["path"])}
        log_action(self, protocol, action, details)

    AccessLogGenerator.__call__ = redacted_log
