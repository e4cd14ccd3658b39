"""Django's ASGI handler, with each request's middleware and view run in one thread hop.

Every view of this project is synchronous (the ORM, the engine client and the
waits block). Django's own ``ASGIHandler`` runs its middleware in async mode,
and each ``MiddlewareMixin`` middleware (sessions, CSRF, auth, messages,
security, CSP, metrics... eleven of them) then crosses to a thread and back for
its ``process_request`` and again for ``process_response``, before the view
makes one more crossing; plus one for the ``request_started`` and one for the
``request_finished`` signal. On a loaded two-core machine those crossings, not
the query, were most of a control read's cost (bench/README.md, the profiles).

:class:`OneHopASGIHandler` reads the body on the event loop as Django does (large
uploads of the routes registered in ``core.streamed_body`` are read by the view
while they arrive instead), then runs the signals, the whole middleware chain in
its synchronous mode and the view in one call on a shared thread pool, exactly
as Django's WSGI handler would, and sends the answer from the event loop.
Streaming answers (file downloads, archives) are read in a pool thread one chunk
ahead of the socket (:func:`_read_ahead`): Django's handler would first read a
synchronous iterator to its end into a list on its one shared thread, so a 64 MiB
download was held in memory whole, and only sent once it had all been read.

Threads: three pools per process. Quick reads (:func:`is_quick_read`: a GET of the
REST API that only reads the database, no wait, no engine) run on
``DEVBENCH_WEB_QUICK_THREADS`` threads (default 3); file metadata reads
(:func:`is_engine_read`: fs stat and list, answered by the workspace's node) on
``DEVBENCH_WEB_ENGINE_READ_THREADS`` (default 3), which overflow to the large pool
while a node that stopped answering holds them all (``core.engine_read_pool``);
everything else on ``DEVBENCH_WEB_THREADS`` (default 200). A request that waits (an exec long-poll,
``wait: true``) holds a thread for its wait, so the large pool bounds how many
such waits one web process serves at once; more queue for a thread.

Why a small pool: a process's threads share one interpreter lock. With fifty
clients polling, fifty threads took turns on it, every database or Redis answer
woke a thread that then queued for the lock, and a control read cost ~30 % more
CPU than with a handful of threads (bench/README.md). A few threads that stay
busy serve the same reads with less CPU, and writes, waits and engine calls in
the other pool never hold them up.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import re
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import close_old_connections
from django.http import FileResponse, HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.urls import ResolverMatch, set_script_prefix

from core import resolved_paths, streamed_body
from core.engine_read_pool import EngineReadPool

_pools: dict[str, Executor] = {}
_pools_lock = threading.Lock()

# REST reads that call the engine (files, archives, stats) or several nodes (system status):
# they may take as long as an engine, so they run with the writes.
_ENGINE_BOUND = re.compile(r"/(files|archive|stats)(/|$)|^/api/v1/system/")
# Of those, the file metadata reads: a node answers them in a millisecond or two.
_ENGINE_READ = re.compile(r"^/api/v1/workspaces/[^/]+/files/(stat|list)$")


# Authorization headers whose verification reads only the database (API tokens: the
# tenants app registers their prefix). Others (an OIDC access token) may ask an
# identity provider over the network first, so they run on the large pool.
_quick_credentials: list[bytes] = []


def register_quick_credential(header_prefix: bytes) -> None:
    """Requests whose ``Authorization`` header starts with this may be quick reads."""
    if header_prefix not in _quick_credentials:
        _quick_credentials.append(header_prefix)


def _api_read(scope: dict[str, Any]) -> bool:
    """A GET of the REST API without a wait (no query naming one, nor a percent-encoded
    query, which could spell one), with a credential checked against the database."""
    query: bytes = scope.get("query_string", b"")
    if not (
        scope["method"] in ("GET", "HEAD")
        and scope["path"].startswith("/api/v1/")
        and b"wait" not in query
        and b"%" not in query
    ):
        return False
    authorization = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
    return authorization.startswith(tuple(_quick_credentials))


def is_quick_read(scope: dict[str, Any]) -> bool:
    """An API read (:func:`_api_read`) that only reads the database: no engine call.
    tests/test_asgi_handler.py lists every one of them."""
    return _ENGINE_BOUND.search(scope["path"]) is None and _api_read(scope)


def is_engine_read(scope: dict[str, Any]) -> bool:
    """An API read of a file's or a directory's metadata (fs stat, fs list)."""
    return _ENGINE_READ.match(scope["path"]) is not None and _api_read(scope)


async def _read_ahead(
    chunks: Iterator[bytes], context: contextvars.Context
) -> AsyncIterator[bytes]:
    """``chunks`` read in a pool thread, the next one while the last is being sent.

    The iterator is never read by two threads at once, and no read is running once
    this generator ends (the response's close, which releases what the iterator
    holds, comes after)."""
    pool = _executor(False)
    end = object()

    def next_chunk() -> object:
        return context.run(next, chunks, end)

    # The thread's own future: a cancelled await of it (the client left) cancels only
    # the asyncio wrapper, and this one still says when the read is over.
    reading: Future[object] | None = pool.submit(next_chunk)
    try:
        while reading is not None:
            chunk = await asyncio.wrap_future(reading)
            reading = None
            if chunk is end:
                return
            reading = pool.submit(next_chunk)
            yield cast(bytes, chunk)
    finally:
        if reading is not None:  # the client left, or the send failed: let the read end
            with contextlib.suppress(BaseException):
                await asyncio.shield(asyncio.wrap_future(reading))


def _executor(quick: bool) -> ThreadPoolExecutor:
    kind = "quick" if quick else "request"
    with _pools_lock:
        if kind not in _pools:
            size = settings.DEVBENCH_WEB_QUICK_THREADS if quick else settings.DEVBENCH_WEB_THREADS
            _pools[kind] = ThreadPoolExecutor(max_workers=int(size), thread_name_prefix=kind)
        return cast(ThreadPoolExecutor, _pools[kind])


def _engine_reads() -> EngineReadPool:
    with _pools_lock:
        if "engine-read" not in _pools:
            _pools["engine-read"] = EngineReadPool(
                int(settings.DEVBENCH_WEB_ENGINE_READ_THREADS), lambda: _executor(False)
            )
        return cast(EngineReadPool, _pools["engine-read"])


def _pool_for(scope: dict[str, Any]) -> Executor:
    if is_quick_read(scope):
        return _executor(True)
    if is_engine_read(scope):
        return _engine_reads()
    return _executor(False)


class OneHopASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super(ASGIHandler, self).__init__()  # BaseHandler; Django's would build an async chain
        self.load_middleware(is_async=False)

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        body_file: Any
        if streamed_body.wants_stream(scope):  # read by the view while it arrives
            body_file = streamed_body.StreamedBody(receive)
        else:
            try:
                body_file = await self.read_body(receive)
            except RequestAborted:
                return
        try:
            context = contextvars.copy_context()
            loop = asyncio.get_running_loop()
            response = await loop.run_in_executor(
                _pool_for(scope), context.run, self._respond, scope, body_file
            )
            if isinstance(response, StreamingHttpResponse) and not response.is_async:
                chunks = cast(Iterator[bytes], response.streaming_content)
                response.streaming_content = _read_ahead(chunks, context)
            try:
                await self.send_response(response, send)
            finally:
                if response.streaming:  # its iterator may hold an engine stream
                    await sync_to_async(response.close)()
        finally:
            body_file.close()

    def resolve_request(self, request: HttpRequest) -> ResolverMatch:
        """Django's, with the match of a recently requested path remembered
        (``core.resolved_paths``)."""
        if hasattr(request, "urlconf"):  # set by a middleware: Django's own way
            return super().resolve_request(request)
        match = resolved_paths.resolve(request.path_info)
        request.resolver_match = match
        return match

    def _respond(self, scope: Any, body_file: Any) -> HttpResponseBase:
        """In a pool thread: what Django's WSGI handler does for one request."""
        try:
            set_script_prefix(get_script_prefix(scope))
            signals.request_started.send(sender=self.__class__, scope=scope)
            request, error_response = self.create_request(scope, body_file)
            if request is None:
                assert error_response is not None
                error_response.close()
                return error_response
            response = self.get_response(request)
            response._handler_class = self.__class__  # type: ignore[attr-defined]
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
            if not response.streaming:
                # The content is complete: end the request here (request_finished), in
                # the thread that holds its database connection.
                response.close()
            return response
        finally:
            # A streaming answer ends on another thread: give this thread's database
            # connection back now (the pool's connections have no maximum age).
            close_old_connections()
