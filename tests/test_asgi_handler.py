"""core.asgi_handler: a request's signals, middleware and view in one thread hop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.core import signals
from django.db import connection
from django.http import StreamingHttpResponse
from django.test import override_settings
from django.urls import Resolver404, path

from core import asgi_handler
from core.asgi_handler import OneHopASGIHandler, is_engine_read, is_quick_read
from tenants.tokens import TOKEN_PREFIX


def _scope(
    path: str, headers: list[tuple[bytes, bytes]], *, method: str = "GET", query: bytes = b""
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }


def _get(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        app = ApplicationCommunicator(OneHopASGIHandler(), _scope(path, headers))
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


# Every GET of the REST API that runs on the quick pool: a new GET endpoint fails
# test_every_quick_read_is_listed until it is decided here (engine calls and waits
# belong to the large pool: they may take as long as an engine or a command).
QUICK_READS = {
    "/api/v1/me",
    "/api/v1/tenants/{slug}",
    "/api/v1/tenants/{slug}/members",
    "/api/v1/tenants/{slug}/tokens",
    "/api/v1/tenants/{slug}/policy",
    "/api/v1/audit",
    "/api/v1/audit/export",
    "/api/v1/usage",
    "/api/v1/workspaces",
    "/api/v1/workspaces/{ref}",
    "/api/v1/workspaces/{workspace_id}/execs",
    "/api/v1/execs/{exec_id}",
    "/api/v1/execs/{exec_id}/detail",
    "/api/v1/snapshots",
    "/api/v1/snapshots/{ref}",
    "/api/v1/templates",
    "/api/v1/templates/{ref}",
    "/api/v1/templates/{ref}/log",
}


def _api_gets_where(
    kind: Callable[[dict[str, Any]], bool], headers: list[tuple[bytes, bytes]]
) -> set[str]:
    """The REST API's GET paths (from its schema) whose requests ``kind`` accepts."""
    from devbench_site.api import api

    schema = api.get_openapi_schema(path_prefix="/api/v1/")
    gets = [path for path, ops in schema["paths"].items() if "get" in ops]
    return {p for p in gets if kind(_scope(p.replace("{", "").replace("}", ""), headers))}


def test_every_quick_read_is_listed() -> None:
    token = [(b"authorization", f"Bearer {TOKEN_PREFIX}abcdefgh_secret".encode())]
    assert _api_gets_where(is_quick_read, token) == QUICK_READS
    # Engine-bound reads are not quick, nor is a wait, nor a write, nor a page.
    engine_bound = ["/api/v1/workspaces/w/stats", "/api/v1/workspaces/w/files/stat",
                    "/api/v1/workspaces/w/archive", "/api/v1/system/status"]  # fmt: skip
    assert not any(is_quick_read(_scope(path, token)) for path in engine_bound)
    assert not is_quick_read(_scope("/api/v1/execs/e", token, query=b"after_seq=3&wait_s=20"))
    # A wait spelt with percent-encoding would otherwise hold a quick thread for its wait.
    assert not is_quick_read(_scope("/api/v1/execs/e", token, query=b"%77ait_s=20"))
    assert is_quick_read(_scope("/api/v1/execs/e", token, query=b"after_seq=3"))
    # A credential that may need an identity provider's answer first (an OIDC token), or
    # none at all, is not quick either.
    assert not is_quick_read(_scope("/api/v1/execs/e", [(b"authorization", b"Bearer eyJ.x.y")]))
    assert not is_quick_read(_scope("/api/v1/execs/e", []))
    assert not is_quick_read(_scope("/api/v1/workspaces", token, method="POST"))
    assert not is_quick_read(_scope("/t/acme/workspaces/", token))


# The GETs that run on the engine-read pool: answered by a node in a millisecond or two.
ENGINE_READS = {"/api/v1/workspaces/{ref}/files/stat", "/api/v1/workspaces/{ref}/files/list"}


def test_every_engine_read_is_listed() -> None:
    token = [(b"authorization", f"Bearer {TOKEN_PREFIX}abcdefgh_secret".encode())]
    assert _api_gets_where(is_engine_read, token) == ENGINE_READS
    stat = "/api/v1/workspaces/w/files/stat"
    assert is_engine_read(_scope(stat, token, query=b"path=/workspace/a"))
    assert asgi_handler._pool_for(_scope(stat, token)) is asgi_handler._engine_reads()
    # A file's content, an archive, a wait, a write, an OIDC token: the large pool.
    assert not is_engine_read(_scope("/api/v1/workspaces/w/files", token))
    assert not is_engine_read(_scope("/api/v1/workspaces/w/archive", token))
    assert not is_engine_read(_scope(stat, token, query=b"wait_s=3"))
    assert not is_engine_read(_scope(stat, token, method="POST"))
    assert not is_engine_read(_scope(stat, [(b"authorization", b"Bearer eyJ.x.y")]))
    assert asgi_handler._pool_for(_scope(stat, [])) is asgi_handler._executor(False)


@pytest.mark.django_db(transaction=True)
def test_quick_reads_are_answered_while_every_other_thread_is_busy(
    token: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes, waits and engine calls never hold up the quick reads: with the large pool's
    only thread taken, a quick read is answered and a wait queues until it frees."""
    settings.DEVBENCH_WEB_THREADS = 1
    settings.DEVBENCH_WEB_QUICK_THREADS = 1
    monkeypatch.setattr(asgi_handler, "_pools", {})
    release = threading.Event()
    busy = asgi_handler._executor(quick=False).submit(release.wait, 30)
    auth = [(b"authorization", f"Bearer {token.raw}".encode())]

    async def run() -> tuple[dict[str, Any], bool, dict[str, Any]]:
        quick = ApplicationCommunicator(OneHopASGIHandler(), _scope("/api/v1/me", auth))
        await quick.send_input({"type": "http.request", "body": b""})
        quick_start = await quick.receive_output(10)  # not behind the busy thread (30 s)
        await quick.receive_output(30)
        slow = ApplicationCommunicator(
            OneHopASGIHandler(), _scope("/api/v1/me", auth, query=b"wait_s=1")
        )
        await slow.send_input({"type": "http.request", "body": b""})
        await asyncio.sleep(1)
        queued = slow.output_queue.empty()  # (receive_output's timeout would cancel it)
        release.set()
        slow_start = await slow.receive_output(30)
        return quick_start, queued, slow_start

    try:
        quick_start, queued, slow_start = async_to_sync(run)()
    finally:
        release.set()
        busy.result(timeout=30)
        for pool in asgi_handler._pools.values():
            pool.shutdown(wait=True)
    assert quick_start["status"] == 200
    assert queued  # the large pool's thread was taken: the wait-shaped request queued
    assert slow_start["status"] == 200


class _SlowChunks:
    """Chunks a view streams: the second waits until the test lets it through."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.reading = 0
        self.most_reading = 0
        self.threads: set[int] = set()
        self.closed = False
        self._sent = 0

    def __iter__(self) -> _SlowChunks:
        return self

    def __next__(self) -> bytes:
        self.reading += 1
        self.most_reading = max(self.most_reading, self.reading)
        self.threads.add(threading.get_ident())
        try:
            self._sent += 1
            if self._sent == 2:
                assert self.release.wait(30)
            if self._sent > 3:
                raise StopIteration
            return b"%d" % self._sent * 1000
        finally:
            self.reading -= 1

    def close(self) -> None:
        assert self.reading == 0, "closed while a read was running"
        self.closed = True


_streams: list[_SlowChunks] = []


def _streaming_view(request: Any) -> StreamingHttpResponse:
    chunks = _SlowChunks()
    _streams.append(chunks)
    return StreamingHttpResponse(chunks, content_type="application/octet-stream")


def _breaking_view(request: Any) -> StreamingHttpResponse:
    def chunks() -> Any:
        yield b"first"
        raise OSError("the source broke")  # e.g. a download whose content proved wrong

    response = StreamingHttpResponse(chunks(), content_type="application/octet-stream")
    response["Content-Length"] = "10"
    return response


urlpatterns = [path("stream", _streaming_view), path("broken", _breaking_view)]


@override_settings(ROOT_URLCONF=__name__)
def test_a_streamed_answer_goes_out_while_it_is_read() -> None:
    async def run() -> None:
        _streams.clear()
        app = ApplicationCommunicator(OneHopASGIHandler(), _scope("/stream", []))
        await app.send_input({"type": "http.request", "body": b""})
        start = await app.receive_output(30)
        assert start["status"] == 200
        # The first chunk is out while the view's iterator is still stuck on its second:
        # the answer is not read to its end before it is sent.
        first = await app.receive_output(30)
        assert first["body"] == b"1" * 1000 and first["more_body"]
        [chunks] = _streams
        assert not chunks.closed
        chunks.release.set()
        rest = b""
        while (message := await app.receive_output(30)).get("more_body"):
            rest += message["body"]
        assert rest + message.get("body", b"") == b"2" * 1000 + b"3" * 1000
        await app.wait(30)
        assert chunks.closed and chunks.most_reading == 1
        assert threading.get_ident() not in chunks.threads  # read off the event loop

    async_to_sync(run)()


@override_settings(ROOT_URLCONF=__name__)
def test_a_client_gone_mid_stream_closes_the_stream_after_its_last_read() -> None:
    async def run() -> None:
        _streams.clear()
        app = ApplicationCommunicator(OneHopASGIHandler(), _scope("/stream", []))
        await app.send_input({"type": "http.request", "body": b""})
        await app.receive_output(30)  # the head
        await app.receive_output(30)  # the first chunk; the read of the second is stuck
        [chunks] = _streams
        threading.Timer(0.3, chunks.release.set).start()
        app.future.cancel()  # the server drops the request (the client left)
        with contextlib.suppress(asyncio.CancelledError):
            await app.future
        deadline = time.monotonic() + 10
        while not chunks.closed and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        # close() asserts that no read was running when it came
        assert chunks.closed and chunks.reading == 0

    async_to_sync(run)()


@override_settings(ROOT_URLCONF=__name__)
def test_a_stream_that_breaks_ends_without_its_last_message() -> None:
    # The server then drops the connection: the client sees the body end short of its
    # Content-Length, never a complete answer.
    async def run() -> None:
        app = ApplicationCommunicator(OneHopASGIHandler(), _scope("/broken", []))
        await app.send_input({"type": "http.request", "body": b""})
        assert (await app.receive_output(30))["status"] == 200
        first = await app.receive_output(30)
        assert first["body"] == b"first" and first["more_body"]
        with pytest.raises(OSError, match="the source broke"):
            await app.wait(30)
        assert app.output_queue.empty()  # no closing message was sent

    async_to_sync(run)()


def _urls_hello(request: Any, name: str) -> Any:
    from django.http import HttpResponse

    return HttpResponse(f"hello {name}".encode())


urlpatterns += [path("hello/<str:name>", _urls_hello)]


def test_a_repeated_path_is_resolved_once_and_each_request_gets_its_own_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.urls.resolvers import URLResolver

    from core import resolved_paths

    walks: list[str] = []
    real = URLResolver.resolve

    def counted(self: Any, path_info: str) -> Any:
        if self.pattern.regex.pattern == "^/":  # the root resolver: one walk per resolution
            walks.append(path_info)
        return real(self, path_info)

    monkeypatch.setattr(URLResolver, "resolve", counted)
    with override_settings(ROOT_URLCONF=__name__):
        first = resolved_paths.resolve("/hello/ann")
        first.kwargs["name"] = "changed by its request"
        second = resolved_paths.resolve("/hello/ann")
        assert second.func is _urls_hello and second.kwargs == {"name": "ann"}
        assert walks == ["/hello/ann"]
        assert resolved_paths.resolve("/hello/bob").kwargs == {"name": "bob"}
        with pytest.raises(Resolver404):
            resolved_paths.resolve("/nowhere")
        with pytest.raises(Resolver404):
            resolved_paths.resolve("/nowhere")  # not kept: walked again
        assert walks == ["/hello/ann", "/hello/bob", "/nowhere", "/nowhere"]
    # Another URLconf: its own resolution, never the one remembered for the first.
    with override_settings(ROOT_URLCONF="devbench_site.urls"), pytest.raises(Resolver404):
        resolved_paths.resolve("/hello/ann")
    with override_settings(ROOT_URLCONF=__name__):
        assert resolved_paths.resolve("/hello/ann").func is _urls_hello
        assert walks[-1] == "/hello/ann"  # walked again after the URLconf changed


def test_the_handler_answers_through_the_remembered_match() -> None:
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[]):
        assert _get("/hello/ann", [])["body"] == b"hello ann"
        assert _get("/hello/ann", [])["body"] == b"hello ann"
        assert _get("/hello/bob", [])["body"] == b"hello bob"
        assert _get("/nowhere", [])["status"] == 404
