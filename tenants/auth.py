"""The one authentication function for REST, MCP and websockets.

``authenticate_bearer`` turns an ``Authorization`` header into a
:class:`Principal` or raises :class:`AuthenticationFailed` with a stable
code. Failure detail beyond "invalid" (expired, revoked) is only given once
the caller has proven it holds the secret, so nothing leaks to guessers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from ninja.security import HttpBearer

from core import metrics
from core.errors import (
    AuthenticationFailed,
    DevBenchError,
    NotFound,
    PermissionDenied,
    TokenMissing,
)
from tenants import token_cache, tokens
from tenants.audit import audit_record
from tenants.errors import (
    TenantInactive,
    TenantNotFound,
    TokenExpired,
    TokenInvalid,
    TokenMalformed,
    TokenRevoked,
)
from tenants.models import ApiToken, AuditEvent, Membership, Tenant, is_slug
from tenants.oidc.errors import TenantRequired
from tenants.principal import ROLE_SCOPES, Principal
from tenants.ratelimit import rate_limit_hit

logger = logging.getLogger(__name__)

# Names the tenant for OIDC access tokens (a user may belong to several tenants). With an
# API token, which is bound to one tenant, a different slug is tenant_not_found (404).
TENANT_HEADER = "X-DevBench-Tenant"

# Writing last_used_at on every request would make each read a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)

# Other bearer validators (e.g. OIDC) register here: (raw token, tenant slug) -> Principal
# or None when the token is not theirs to judge.
BearerValidator = Callable[[str, str | None], Principal | None]
_extra_validators: list[BearerValidator] = []


def register_bearer_validator(validator: BearerValidator) -> None:
    if validator not in _extra_validators:
        _extra_validators.append(validator)


def extract_bearer(authorization: str | None) -> str:
    if not authorization:
        raise TokenMissing("Send 'Authorization: Bearer <token>'.")
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials or " " in credentials:
        raise TokenMalformed("The Authorization header must read 'Bearer <token>'.")
    return credentials


@dataclass
class _Attempt:
    """What is known about a refused attempt, for its audit event."""

    credential: str = ""  # "api_token" or "other" (an OIDC token)
    token_prefix: str = ""
    tenant: Tenant | None = None


def authenticate_bearer(
    authorization: str | None, *, tenant_slug: str | None = None, cached: bool = False
) -> Principal:
    """Resolve the header to a principal; with ``tenant_slug``, the token must belong to it.

    With ``cached``, an API token verified in this process in the last
    ``DEVBENCH_TOKEN_CACHE_S`` seconds is accepted without a database query
    (see :mod:`tenants.token_cache` for the revocation bound).

    A token for another tenant gets the same ``tenant_not_found`` (404) as a
    tenant that does not exist. Every refusal of a presented credential (401,
    403, 404 tenant, 400 tenant_required) is recorded as a ``auth.bearer``
    audit event, in the requested tenant (or the token's) when there is one.
    """
    attempt = _Attempt()
    try:
        return _authenticate(authorization, tenant_slug, attempt, cached)
    except (AuthenticationFailed, PermissionDenied, NotFound, TenantRequired) as exc:
        metrics.AUTH_FAILURES.labels(code=exc.code).inc()
        if exc.code != "token_missing":
            _audit_refusal(exc, attempt, tenant_slug)
        raise


def _authenticate(
    authorization: str | None, tenant_slug: str | None, attempt: _Attempt, cached: bool
) -> Principal:
    if tenant_slug is not None and not is_slug(tenant_slug):
        # No tenant has such a slug (a NUL or a newline cannot even be looked up).
        raise TenantNotFound("Tenant not found.")
    raw = extract_bearer(authorization)
    if tokens.looks_like_api_token(raw):
        attempt.credential = "api_token"
        principal = (cached and token_cache.get(raw)) or _authenticate_api_token(
            raw, attempt, cache=cached
        )
    else:
        attempt.credential = "other"
        principal = _authenticate_other(raw, tenant_slug)
    if tenant_slug is not None and principal.tenant.slug != tenant_slug:
        raise TenantNotFound("Tenant not found.")
    return principal


def _audit_refusal(exc: DevBenchError, attempt: _Attempt, tenant_slug: str | None) -> None:
    tenant = attempt.tenant
    if tenant_slug and is_slug(tenant_slug):
        tenant = Tenant.objects.filter(slug=tenant_slug).first() or tenant
    try:
        audit_record(
            actor=None,
            actor_kind="anonymous",
            actor_id=f"token:{attempt.token_prefix}" if attempt.token_prefix else "",
            action="auth.bearer",
            outcome=AuditEvent.Outcome.DENIED,
            tenant=tenant,
            error_code=exc.code,
            details={
                "auth_kind": attempt.credential,
                "token_prefix": attempt.token_prefix,
                "requested_tenant": tenant_slug or "",
            },
        )
    except Exception:  # the refusal itself must reach the client
        logger.exception("could not record a refused authentication")


def _authenticate_other(raw: str, tenant_slug: str | None) -> Principal:
    for validator in _extra_validators:
        principal = validator(raw, tenant_slug)
        if principal is not None:
            return principal
    raise TokenMalformed("The token is not valid.")


def _authenticate_api_token(raw: str, attempt: _Attempt, *, cache: bool) -> Principal:
    parts = tokens.parse(raw)
    if parts is None:
        raise TokenMalformed("The token is not valid.")
    attempt.token_prefix = parts.prefix
    token = ApiToken.objects.select_related("tenant", "user").filter(prefix=parts.prefix).first()
    if token is not None:
        attempt.tenant = token.tenant
    if token is None or not tokens.secret_matches(parts.secret, token.salt, token.secret_hash):
        raise TokenInvalid("The token is not valid.")
    if token.is_revoked:
        raise TokenRevoked("The token has been revoked.")
    if token.is_expired:
        raise TokenExpired("The token has expired.")
    if not token.user.is_active:
        raise TokenInvalid("The token is not valid.")
    if not token.tenant.active:
        raise TenantInactive("The tenant is deactivated.")
    _touch(token)
    principal = Principal(
        user=token.user,
        tenant=token.tenant,
        scopes=frozenset(token.scopes),
        kind="token",
        actor_id=f"token:{token.prefix}",
        token_id=token.pk,
    )
    if cache:
        token_cache.put(raw, principal, expires_at=token.expires_at)
    return principal


def _touch(token: ApiToken) -> None:
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)


def principal_for_member(*, user: Any, tenant: Tenant, kind: str = "session") -> Principal:
    """A signed-in user acting in one of their tenants (web UI, websockets by session)."""
    if getattr(user, "is_superuser", False):
        scopes = ROLE_SCOPES["owner"]
    else:
        membership = Membership.objects.filter(user=user, tenant=tenant).first()
        if membership is None or not tenant.active:
            raise TenantNotFound("Tenant not found.")
        scopes = ROLE_SCOPES[membership.role]
    return Principal(
        user=user,
        tenant=tenant,
        scopes=scopes,
        kind=kind,  # type: ignore[arg-type]
        actor_id=f"user:{getattr(user, 'pk', '')}",
    )


def authenticate_bearer_limited(
    authorization: str | None, *, tenant_slug: str | None = None, cached: bool = False
) -> Principal:
    """:func:`authenticate_bearer`, then one hit on the principal's rate limits: what
    REST, MCP and websockets authenticate bearer tokens with. The hit comes after the
    token cache too, so a cached principal is counted like any other."""
    principal = authenticate_bearer(authorization, tenant_slug=tenant_slug, cached=cached)
    rate_limit_hit(principal)
    return principal


class BearerAuth(HttpBearer):
    """The REST face of :func:`authenticate_bearer_limited`."""

    def __call__(self, request: HttpRequest) -> Principal:
        return authenticate_bearer_limited(
            request.headers.get("Authorization"),
            tenant_slug=request.headers.get(TENANT_HEADER, "").strip() or None,
            cached=True,
        )

    def authenticate(self, request: HttpRequest, token: str) -> Principal:  # pragma: no cover
        return authenticate_bearer(f"Bearer {token}")
