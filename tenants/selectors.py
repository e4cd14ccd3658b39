"""Tenant-scoped reads. The admin and the API use these, never raw managers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet

from tenants.errors import TenantNotFound
from tenants.models import (
    MANAGING_ROLES,
    ApiToken,
    AuditEvent,
    Membership,
    MembershipRule,
    Tenant,
    TenantPolicy,
    is_slug,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    AnyUser = AbstractBaseUser | AnonymousUser


def tenant_ids_managed_by(*, user: Any) -> list[int] | None:
    """Tenant ids the user may administer; ``None`` means all (superuser)."""
    if getattr(user, "is_superuser", False):
        return None
    if not getattr(user, "is_authenticated", False):
        return []
    return list(
        Membership.objects.filter(user=user, role__in=MANAGING_ROLES).values_list(
            "tenant_id", flat=True
        )
    )


def _scoped(qs: QuerySet[Any], *, user: Any, field: str = "tenant_id") -> QuerySet[Any]:
    ids = tenant_ids_managed_by(user=user)
    if ids is None:
        return qs
    return qs.filter(**{f"{field}__in": ids})


def tenant_list_managed(*, user: Any) -> QuerySet[Tenant]:
    return _scoped(Tenant.objects.all(), user=user, field="id")


def membership_list_managed(*, user: Any) -> QuerySet[Membership]:
    return _scoped(Membership.objects.select_related("user", "tenant"), user=user)


def api_token_list_managed(*, user: Any) -> QuerySet[ApiToken]:
    return _scoped(ApiToken.objects.select_related("user", "tenant"), user=user)


def tenant_policy_list_managed(*, user: Any) -> QuerySet[TenantPolicy]:
    return _scoped(TenantPolicy.objects.select_related("tenant"), user=user)


def audit_event_list_managed(*, user: Any) -> QuerySet[AuditEvent]:
    return _scoped(AuditEvent.objects.select_related("tenant"), user=user)


def membership_rule_list_managed(*, user: Any) -> QuerySet[MembershipRule]:
    return _scoped(MembershipRule.objects.select_related("tenant"), user=user)


def tenant_list_for_user(*, user: Any) -> QuerySet[Tenant]:
    """Active tenants the user belongs to, with any role."""
    if not getattr(user, "is_authenticated", False):
        return Tenant.objects.none()
    return Tenant.objects.filter(memberships__user=user, active=True).distinct()


def membership_get(*, user: Any, tenant: Tenant) -> Membership | None:
    return Membership.objects.filter(user=user, tenant=tenant).first()


def tenant_get_by_slug(*, slug: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug, active=True).first() if is_slug(slug) else None
    if tenant is None:
        raise TenantNotFound("Tenant not found.")
    return tenant


def tenant_policy_get(*, tenant: Tenant) -> TenantPolicy:
    """The tenant's policy (created with the tenant; read fresh, never cached on it)."""
    return TenantPolicy.objects.get(tenant_id=tenant.pk)
