from __future__ import annotations

from typing import Annotated

from django.http import HttpRequest
from ninja import Router
from pydantic import StringConstraints

from core.validation import LINE_PATTERN
from tenants.errors import TenantNotFound
from tenants.principal import Principal
from tenants.schemas import PrincipalOut, TenantDetailOut
from tenants.selectors import tenant_policy_get

router = Router(tags=["identity"])

# A tenant slug in a path (tenants.models.Tenant.slug holds at most 50 characters).
TenantSlug = Annotated[str, StringConstraints(min_length=1, max_length=50, pattern=LINE_PATTERN)]


def principal_of(request: HttpRequest) -> Principal:
    principal = request.auth  # type: ignore[attr-defined]
    assert isinstance(principal, Principal)
    return principal


@router.get("/me", response=PrincipalOut, operation_id="me")
def me(request: HttpRequest) -> dict[str, object]:
    """Who the token belongs to: user, tenant and scopes."""
    principal = principal_of(request)
    user = principal.user
    return {
        "kind": principal.kind,
        "user": {
            "id": principal.user_id,
            "username": getattr(user, "username", None),
            "email": getattr(user, "email", None),
        },
        "tenant": {"slug": principal.tenant.slug, "name": principal.tenant.name},
        "scopes": sorted(principal.scopes),
    }


@router.get("/tenants/{slug}", response=TenantDetailOut, operation_id="tenant_get")
def tenant_get(request: HttpRequest, slug: TenantSlug) -> dict[str, object]:
    """The token's tenant and its policy. Any other slug is 404, whether it exists or not."""
    principal = principal_of(request)
    if principal.tenant.slug != slug:
        raise TenantNotFound("Tenant not found.")
    policy = tenant_policy_get(tenant=principal.tenant)
    return {"slug": principal.tenant.slug, "name": principal.tenant.name, "policy": policy}
