"""Answers under /api/v1/ that no operation produced still use the shared error shape.

Django answers an unknown path with its HTML 404 page and django-ninja an
unknown method with a plain-text 405; an API client branches on ``code``, so
both become ``{"code", "message", "extra"}`` (``route_not_found`` 404,
``method_not_allowed`` 405 with the ``Allow`` header kept).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from core.errors import DevBenchError, MethodNotAllowed, RouteNotFound

API_PREFIX = "/api/v1/"

_ANSWERS: dict[int, type[DevBenchError]] = {404: RouteNotFound, 405: MethodNotAllowed}


class ApiFallbackMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        answer = _ANSWERS.get(response.status_code)
        if (
            answer is None
            or not request.path.startswith(API_PREFIX)
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        extra: dict[str, Any] = {"method": request.method} if response.status_code == 405 else {}
        if "Allow" in response:
            extra["allowed"] = sorted(m.strip() for m in response["Allow"].split(","))
        replacement = HttpResponse(
            json.dumps(answer(extra=extra).as_dict()),
            status=response.status_code,
            content_type="application/json",
        )
        for header in ("Allow", "X-Request-ID"):
            if header in response:
                replacement[header] = response[header]
        return replacement
