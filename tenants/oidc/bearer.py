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

from tenants import identity as identity_services
from tenants.errors import TenantNotFound, TokenInvalid
from tenants.models import Membership
from tenants.oidc.config import provider_list
from tenants.oidc.errors import TenantRequired
from tenants.oidc.verify import TokenIdentity, looks_like_jwt, verify_jwt, verify_opaque
from tenants.principal import ROLE_SCOPES, Principal


def validate_bearer(raw: str, tenant_slug: str | None) -> Principal | None:
    """A principal for an OIDC access token; None when no OIDC provider is configured."""
    providers = provider_list()
    if not providers:
        return None
    if looks_like_jwt(raw):
        identity = verify_jwt(raw, providers=providers)
    else:
        found = verify_opaque(raw, providers=providers)
        if found is None:
            raise TokenInvalid()
        identity = found
    user = identity_services.oidc_user_resolve(
        provider_id=identity.provider.provider_id,
        subject=identity.subject,
        claims=identity.claims,
    )
    if not user.is_active:
        raise TokenInvalid()
    membership = _membership_for(user=user, tenant_slug=tenant_slug)
    return Principal(
        user=user,
        tenant=membership.tenant,
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


def _membership_for(*, user: Any, tenant_slug: str | None) -> Membership:
    """The membership in the named tenant, or in the user's only tenant (one query)."""
    memberships = Membership.objects.select_related("tenant").filter(user=user, tenant__active=True)
    if tenant_slug:
        membership = memberships.filter(tenant__slug=tenant_slug).first()
        if membership is None:
            raise TenantNotFound("Tenant not found.")
        return membership
    found = list(memberships.order_by("tenant__slug")[:21])
    if len(found) == 1:
        return found[0]
    if not found:
        raise TenantRequired("You are not a member of any tenant; ask a tenant admin to add you.")
    raise TenantRequired(
        "You belong to several tenants: name one with the X-DevBench-Tenant header.",
        tenants=[m.tenant.slug for m in found[:20]],
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
