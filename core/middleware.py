from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from core import request_context


class RequestContextMiddleware:
    """Gives each request an id (kept from a sane X-Request-ID) for logs and audit."""

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
        try:
            response = self.get_response(request)
        finally:
            request_context.reset(token)
        response["X-Request-ID"] = request_id
        return response
