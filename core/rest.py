"""The REST face of errors: every failure of a NinjaAPI becomes ``{"code","message","extra"}``."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.pagination import LimitOffsetPagination
from ninja.params.models import QueryModel as NinjaQueryModel
from ninja.parser import Parser
from pydantic import Field

from core.errors import (
    DevBenchError,
    HttpStatusError,
    InternalError,
    InvalidInput,
    InvalidJson,
    PayloadTooLarge,
    RateLimited,
    TokenMissing,
)
from core.openapi import add_error_responses
from core.refusals import audit_invalid_input
from core.validation import MAX_SAFE_INT, QueryModel, json_loads_strict

logger = logging.getLogger("devbench.api")


class StrictJsonParser(Parser):
    """Bodies are RFC 8259 JSON: ``NaN``/``Infinity`` and overflowing numbers are refused."""

    def parse_body(self, request: HttpRequest) -> Any:
        try:
            return json_loads_strict(request.body)
        except (ValueError, RecursionError) as exc:
            # ninja wraps this in a 400; ``http_error`` below answers it as it is.
            raise InvalidJson() from exc


MAX_PAGE_LIMIT = 1000


class BoundedLimitOffset(LimitOffsetPagination):
    """limit/offset with upper bounds the database (bigint) and the schema agree on."""

    class Input(QueryModel):
        limit: int = Field(100, ge=1, le=MAX_PAGE_LIMIT, description="At most this many items.")
        offset: int = Field(0, ge=0, le=MAX_SAFE_INT, description="Items to skip.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_limit=MAX_PAGE_LIMIT, **kwargs)


def _strict_query_data(
    cls: type[NinjaQueryModel], request: HttpRequest, api: NinjaAPI, path_params: Any
) -> Any:
    """The query string of one operation: a parameter it does not declare, or a single
    value given more than once, is refused like an unknown body field (not ignored)."""
    declared = getattr(cls, "__ninja_flatten_map__", {})
    lists = list(getattr(cls, "__ninja_collection_fields__", []))
    errors = []
    for key in request.GET:
        if key not in declared:
            errors.append(
                {"loc": ("query", key), "msg": "Unknown parameter.", "type": "extra_forbidden"}
            )
        elif key not in lists and len(request.GET.getlist(key)) > 1:
            errors.append(
                {"loc": ("query", key), "msg": "Given more than once.", "type": "too_many_values"}
            )
    if errors:
        raise NinjaValidationError(errors)
    return api.parser.parse_querydict(request.GET, lists, request)


class DevBenchAPI(NinjaAPI):
    """A NinjaAPI that reads strict JSON and strict query strings, and whose schema lists
    every operation's errors."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("parser", StrictJsonParser())
        super().__init__(**kwargs)

    @property
    def urls(self) -> Any:
        self._strict_queries()
        return super().urls

    def _strict_queries(self) -> None:
        # ninja builds one query model per operation; each reads its query string strictly.
        routers = [router for _, router in self._routers]
        while routers:
            router = routers.pop()
            routers.extend(child for _, child, *_ in router._routers)
            for path_view in router.path_operations.values():
                for operation in path_view.operations:
                    for model in operation.models:
                        if issubclass(model, NinjaQueryModel):
                            model.get_request_data = classmethod(_strict_query_data)

    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> Any:
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        return add_error_responses(schema)


def _audit_refusal(request: HttpRequest, errors: Any) -> None:
    audit_invalid_input(
        actor=getattr(request, "auth", None),
        interface="rest",
        operation=f"{request.method} {request.path}",
        errors=errors,
    )


def _error_response(api: NinjaAPI, request: HttpRequest, exc: DevBenchError) -> HttpResponse:
    response = api.create_response(request, exc.as_dict(), status=exc.http_status)
    if exc.http_status == 401:
        response["WWW-Authenticate"] = f'Bearer error="{exc.code}"'
    if isinstance(exc, RateLimited):
        response["Retry-After"] = str(exc.retry_after_s)
    return response


def install_error_handlers(api: NinjaAPI) -> None:
    """Map every error of ``api`` once, to the body MCP and websockets use too."""

    def respond(request: HttpRequest, exc: DevBenchError) -> HttpResponse:
        return _error_response(api, request, exc)

    @api.exception_handler(DevBenchError)
    def devbench_error(request: HttpRequest, exc: DevBenchError) -> HttpResponse:
        return respond(request, exc)

    @api.exception_handler(NinjaValidationError)
    def validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
        _audit_refusal(request, exc.errors)
        return respond(request, InvalidInput(exc.errors, what="request"))

    @api.exception_handler(RequestDataTooBig)
    def too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
        _audit_refusal(request, [{"loc": ["body"], "type": PayloadTooLarge.code}])
        return respond(request, PayloadTooLarge(max_bytes=settings.DATA_UPLOAD_MAX_MEMORY_SIZE))

    @api.exception_handler(AuthenticationError)
    def auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return respond(request, TokenMissing("Authentication required."))

    @api.exception_handler(HttpError)
    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        if isinstance(exc.__cause__, DevBenchError):  # raised by the parser, wrapped by ninja
            _audit_refusal(request, [{"loc": ["body"], "type": exc.__cause__.code}])
            return respond(request, exc.__cause__)
        return respond(request, HttpStatusError(str(exc), status=exc.status_code))

    @api.exception_handler(Exception)
    def unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
        request_id = getattr(request, "request_id", "")
        logger.exception("unhandled error in API request %s", request_id)
        return respond(request, InternalError(request_id=request_id))
