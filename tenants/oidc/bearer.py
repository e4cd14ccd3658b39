"""The OIDC bearer validator registered with :func:`tenants.auth.register_bearer_validator`.

One validator for REST, MCP and websockets (they all call ``authenticate_bearer``).

Tenant: the caller's ``tenant_slug`` (the URL's tenant for MCP, the
``X-DevBench-Tenant`` header for REST); without one, the user's only tenant, else
``tenant_required`` (400). A tenant the user is not a member of is
``tenant_not_found`` (404), the same as a tenant that does not exist.

Scopes: those of the membership role (owner/admin: read, write, admin; member:
read, write; viewer: read). A token whose ``scope`` claim names any
``<OIDC_SCOPE_PREFIX><scope>`` values (``devbench:read`` …) is narrowed to those:
it never gains more than the role gives.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from devbench_site.errors import NotFound
from tenants import identity as identity_services
from tenants import selectors
from tenants.models import Tenant
from tenants.oidc.errors import TenantRequired, token_invalid
from tenants.oidc.verify import TokenIdentity, looks_like_jwt, verify_jwt, verify_opaque
from tenants.principal import ROLE_SCOPES, Principal


def validate_bearer(raw: str, tenant_slug: str | None) -> Principal | None:
    """A principal for an OIDC access token; None when no OIDC provider is configured."""
    from tenants.oidc.config import provider_list

    if not provider_list():
        return None
    if looks_like_jwt(raw):
        identity = verify_jwt(raw)
    else:
        found = verify_opaque(raw)
        if found is None:
            raise token_invalid()
        identity = found
    user = identity_services.oidc_user_resolve(
        provider_id=identity.provider.provider_id,
        subject=identity.subject,
        claims=identity.claims,
    )
    if not user.is_active:
        raise token_invalid()
    tenant = _tenant_for(user=user, tenant_slug=tenant_slug)
    membership = selectors.membership_get(user=user, tenant=tenant)
    if membership is None:
        raise NotFound("Tenant not found.", code="tenant_not_found")
    return Principal(
        user=user,
        tenant=tenant,
        scopes=narrow_scopes(ROLE_SCOPES[membership.role], identity.claims),
        kind="oidc",
        actor_id=f"user:{user.pk}",
        extra={
            "issuer": identity.provider.issuer,
            "subject": identity.subject,
            "provider": identity.provider.provider_id,
            "token_kind": identity.kind,
        },
    )


def _tenant_for(*, user: Any, tenant_slug: str | None) -> Tenant:
    if tenant_slug:
        tenant = Tenant.objects.filter(slug=tenant_slug, active=True).first()
        if tenant is None or selectors.membership_get(user=user, tenant=tenant) is None:
            raise NotFound("Tenant not found.", code="tenant_not_found")
        return tenant
    tenants = list(selectors.tenant_list_for_user(user=user)[:21])
    if len(tenants) == 1:
        return tenants[0]
    if not tenants:
        raise TenantRequired("You are not a member of any tenant; ask a tenant admin to add you.")
    raise TenantRequired(
        "You belong to several tenants: name one with the X-DevBench-Tenant header.",
        extra={"tenants": sorted(t.slug for t in tenants[:20])},
    )


def narrow_scopes(role_scopes: frozenset[str], claims: dict[str, Any]) -> frozenset[str]:
    prefix = settings.OIDC_SCOPE_PREFIX
    raw = claims.get("scope", "")
    requested = raw.split() if isinstance(raw, str) else [str(s) for s in raw or []]
    named = {s[len(prefix) :] for s in requested if s.startswith(prefix)}
    if not named:
        return role_scopes
    return frozenset(s for s in role_scopes if s in named)


__all__ = ["TokenIdentity", "narrow_scopes", "validate_bearer"]
