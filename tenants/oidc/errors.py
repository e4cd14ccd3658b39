"""Errors of OIDC bearer authentication (codes are part of the API)."""

from __future__ import annotations

from core.errors import DevBenchError


class ProviderUnreachable(DevBenchError):
    """The provider's discovery, JWKS or userinfo endpoint could not be reached.

    503, not 401: the token may well be valid, so clients should retry later
    rather than drop their credentials.
    """

    code = "provider_unreachable"
    http_status = 503
    default_message = "The identity provider cannot be reached; try again later."

    def __init__(self, message: str | None = None, *, provider: str) -> None:
        super().__init__(message, extra={"provider": provider})


class TenantRequired(DevBenchError):
    """An OIDC principal belongs to several (or no) tenants and named none."""

    code = "tenant_required"
    http_status = 400
    default_message = "Name the tenant with the X-DevBench-Tenant header."

    def __init__(self, message: str, *, tenants: list[str] | None = None) -> None:
        super().__init__(message, extra={} if tenants is None else {"tenants": tenants})
