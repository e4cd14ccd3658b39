from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from core import request_context

# One line per request (method, path, status, duration), with its request id.
access_log = logging.getLogger("devbench.request")


class RequestContextMiddleware:
    """Gives each request an id (kept from a sane X-Request-ID) for logs, audit, error
    bodies and the tasks it causes; answers it in ``X-Request-ID``; logs the request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_context.request_id_from(request.headers.get("X-Request-ID", ""))
        ctx = request_context.RequestContext(
            request_id=request_id,
            ip=request.META.get("REMOTE_ADDR"),
            user_agent=request.headers.get("User-Agent", "")[:300],
        )
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_context.bind(ctx)
        started = time.monotonic()
        status = 500
        try:
            response = self.get_response(request)
            status = response.status_code
        finally:
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
            request_context.reset(token)
        response["X-Request-ID"] = request_id
        return response
