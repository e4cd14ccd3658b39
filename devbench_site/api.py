"""The one NinjaAPI: routers from every app, errors mapped once."""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import HttpBearer

from devbench_site.errors import DevBenchError
from tenants.auth import authenticate_bearer
from tenants.principal import Principal

logger = logging.getLogger(__name__)


# Names the tenant for OIDC access tokens (a user may belong to several tenants). With an
# API token, which is bound to one tenant, a different slug is tenant_not_found (404).
TENANT_HEADER = "X-DevBench-Tenant"


class BearerAuth(HttpBearer):
    """Ninja face of :func:`tenants.auth.authenticate_bearer`."""

    def __call__(self, request: HttpRequest) -> Principal:
        return authenticate_bearer(
            request.headers.get("Authorization"),
            tenant_slug=request.headers.get(TENANT_HEADER, "").strip() or None,
        )

    def authenticate(self, request: HttpRequest, token: str) -> Principal:  # pragma: no cover
        return authenticate_bearer(f"Bearer {token}")


api = NinjaAPI(
    title="DevBench API",
    version="1.0.0",
    description=(
        "Isolated Docker workspaces for agents, people and integrations. "
        "Authenticate with `Authorization: Bearer <token>`: an API token, or an OpenID "
        "Connect access token plus `X-DevBench-Tenant: <slug>` when its user belongs to "
        "several tenants. Errors share one shape: "
        '`{"code": "...", "message": "...", "extra": {...}}`; branch on `code`.'
    ),
    auth=BearerAuth(),
    urls_namespace="api-v1",
)


def error_response(request: HttpRequest, exc: DevBenchError) -> HttpResponse:
    response = api.create_response(request, exc.as_dict(), status=exc.http_status)
    if exc.http_status == 401:
        response["WWW-Authenticate"] = f'Bearer error="{exc.code}"'
    return response


@api.exception_handler(DevBenchError)
def _devbench_error(request: HttpRequest, exc: DevBenchError) -> HttpResponse:
    return error_response(request, exc)


@api.exception_handler(NinjaValidationError)
def _validation_error(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    errors: list[dict[str, Any]] = [
        {"loc": list(e.get("loc", [])), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors
    ]
    fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors)
    return error_response(
        request,
        DevBenchError(
            f"Invalid request: {fields or 'body'}.",
            code="validation_failed",
            http_status=422,
            extra={"errors": errors},
        ),
    )


@api.exception_handler(AuthenticationError)
def _auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(
        request, DevBenchError("Authentication required.", code="token_missing", http_status=401)
    )


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return error_response(
        request, DevBenchError(str(exc), code="http_error", http_status=exc.status_code)
    )


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    request_id = getattr(request, "request_id", "")
    logger.exception("unhandled error in API request %s", request_id)
    return error_response(
        request,
        DevBenchError(
            "Internal error; quote the request id when reporting it.",
            code="internal_error",
            http_status=500,
            extra={"request_id": request_id},
        ),
    )


def _add_routers() -> None:
    from execution.api import router as execution_router
    from tenants.admin_api import router as tenant_admin_router
    from tenants.api import router as tenants_router
    from usage.api import router as usage_router
    from workspaces.api import router as workspaces_router
    from workspaces.filesystem.api import router as filesystem_router

    api.add_router("/", tenants_router)
    api.add_router("/", tenant_admin_router)
    api.add_router("/", usage_router)
    api.add_router("/", workspaces_router)
    api.add_router("/", execution_router)
    api.add_router("/", filesystem_router)


_add_routers()
