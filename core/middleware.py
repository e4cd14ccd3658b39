from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from core import request_context

# One line per request (method, path, status, duration), with its request id.
access_log = logging.getLogger("devbench.request")


class RequestContextMiddleware:
    """Gives each request an id (kept from a sane X-Request-ID) for logs, audit, error
    bodies and the tasks it causes; answers it in ``X-Request-ID``; logs the request.

    Sync and async: every other middleware of the stack is async-capable, so
    under ASGI a sync-only one here would cost each request two extra thread
    hops (into a thread for this middleware, back to the event loop for the rest).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        token = self._bind(request)
        started = time.monotonic()
        status = 500
        try:
            response: HttpResponse = self.get_response(request)
            status = response.status_code
        finally:
            _log(request, status, started)
            request_context.reset(token)
        response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        token = self._bind(request)
        started = time.monotonic()
        status = 500
        try:
            get_response: Callable[[HttpRequest], Awaitable[HttpResponse]] = self.get_response
            response = await get_response(request)
            status = response.status_code
        finally:
            _log(request, status, started)
            request_context.reset(token)
        response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
        return response

    def _bind(self, request: HttpRequest) -> Any:
        request_id = request_context.request_id_from(request.headers.get("X-Request-ID", ""))
        ctx = request_context.RequestContext(
            request_id=request_id,
            ip=request.META.get("REMOTE_ADDR"),
            user_agent=request.headers.get("User-Agent", "")[:300],
        )
        request.request_id = request_id  # type: ignore[attr-defined]
        return request_context.bind(ctx)


def _log(request: HttpRequest, status: int, started: float) -> None:
    if not access_log.isEnabledFor(logging.INFO):  # LOG_LEVEL=WARNING: build nothing
        return
    # The query string may carry a token (?token=): the log formatter scrubs it.
    access_log.info(
        "%s %s %s",
        request.method,
        request.get_full_path(),
        status,
        extra={
            "method": request.method,
            "path": request.path,
            "status": status,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
        },
    )
