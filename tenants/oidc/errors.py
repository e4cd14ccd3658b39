"""Errors of OIDC bearer authentication (codes are part of the API)."""

from __future__ import annotations

from core.errors import AuthenticationFailed, DevBenchError


class ProviderUnreachable(DevBenchError):
    """The provider's discovery, JWKS or userinfo endpoint could not be reached.

    503, not 401: the token may well be valid, so clients should retry later
    rather than drop their credentials.
    """

    default_code = "provider_unreachable"
    default_status = 503
    default_message = "The identity provider cannot be reached; try again later."


class TenantRequired(DevBenchError):
    """An OIDC principal belongs to several (or no) tenants and named none."""

    default_code = "tenant_required"
    default_status = 400
    default_message = "Name the tenant with the X-DevBench-Tenant header."


def token_invalid(message: str = "The token is not valid.") -> AuthenticationFailed:
    return AuthenticationFailed(message, code="token_invalid")
