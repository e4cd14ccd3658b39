"""The REST face of errors: every failure of a NinjaAPI becomes ``{"code","message","extra"}``."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError

from core.errors import (
    DevBenchError,
    HttpStatusError,
    InternalError,
    InvalidInput,
    RateLimited,
    TokenMissing,
)

logger = logging.getLogger("devbench.api")


def install_error_handlers(api: NinjaAPI) -> None:
    """Map every error of ``api`` once, to the body MCP and websockets use too."""

    def respond(request: HttpRequest, exc: DevBenchError) -> HttpResponse:
        response = api.create_response(request, exc.as_dict(), status=exc.http_status)
        if exc.http_status == 401:
            response["WWW-Authenticate"] = f'Bearer error="{exc.code}"'
        if isinstance(exc, RateLimited):
            response["Retry-After"] = str(exc.retry_after_s)
        return response

    @api.exception_handler(DevBenchError)
    def devbench_error(request: HttpRequest, exc: DevBenchError) -> HttpResponse:
        return respond(request, exc)

    @api.exception_handler(NinjaValidationError)
    def validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
        return respond(request, InvalidInput(exc.errors, what="request"))

    @api.exception_handler(AuthenticationError)
    def auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return respond(request, TokenMissing("Authentication required."))

    @api.exception_handler(HttpError)
    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        return respond(request, HttpStatusError(str(exc), status=exc.status_code))

    @api.exception_handler(Exception)
    def unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
        request_id = getattr(request, "request_id", "")
        logger.exception("unhandled error in API request %s", request_id)
        return respond(request, InternalError(request_id=request_id))
