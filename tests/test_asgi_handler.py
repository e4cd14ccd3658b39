"""core.asgi_handler: a request's signals, middleware and view in one thread hop."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.core import signals
from django.db import connection

from core.asgi_handler import OneHopASGIHandler


def _get(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }

    async def run() -> dict[str, Any]:
        app = ApplicationCommunicator(OneHopASGIHandler(), scope)
        await app.send_input({"type": "http.request", "body": b""})
        start = await app.receive_output(30)
        body = await app.receive_output(30)
        return {**start, "body": body["body"]}

    return async_to_sync(run)()


@pytest.mark.django_db(transaction=True)
def test_one_thread_runs_the_request_and_gives_its_connection_back(token: Any) -> None:
    threads: dict[str, int] = {}

    def started(**kwargs: Any) -> None:
        threads["started"] = threading.get_ident()

    def finished(**kwargs: Any) -> None:
        threads["finished"] = threading.get_ident()
        # Receivers run in order: Django's close_old_connections came first.
        threads["connection_returned"] = connection.connection is None

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        answer = _get("/api/v1/me", [(b"authorization", f"Bearer {token.raw}".encode())])
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)

    assert answer["status"] == 200
    assert b'"slug"' in answer["body"]
    headers = dict(answer["headers"])
    assert headers[b"X-Request-ID"]  # the middleware chain ran
    # Signals (and so the middleware and view between them) ran on one request thread,
    # not on the test's thread nor on asgiref's per-request threads.
    assert threads["started"] == threads["finished"] != threading.get_ident()
    # That thread gave its database connection back when the request ended.
    assert threads["connection_returned"]


def test_the_middleware_chain_is_synchronous() -> None:
    from asgiref.sync import iscoroutinefunction

    handler = OneHopASGIHandler()
    assert not iscoroutinefunction(handler._middleware_chain)  # type: ignore[attr-defined]
