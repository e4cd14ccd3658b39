"""Tenant-scoped reads. The admin and the API use these, never raw managers."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet

from tenants.errors import MemberNotFound, TenantNotFound, TokenNotFound
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

    from tenants.principal import Principal

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


# --- Tenant administration: the actor's own tenant, admin scope -----------------------


def tenant_require_admin(*, actor: Principal, slug: str) -> Tenant:
    """The actor's tenant when ``slug`` names it and the actor administers it.

    Any other slug is ``tenant_not_found`` whether it exists or not (no existence leak);
    the admin scope is checked only for the actor's own tenant.
    """
    if actor.tenant.slug != slug:
        raise TenantNotFound()
    actor.require_scope("admin")
    return actor.tenant


def member_list(*, actor: Principal) -> QuerySet[Membership]:
    actor.require_scope("admin")
    return (
        Membership.objects.filter(tenant=actor.tenant)
        .select_related("user")
        .order_by("user__username", "pk")
    )


def member_get(*, actor: Principal, user_id: int) -> Membership:
    membership = member_list(actor=actor).filter(user_id=user_id).first()
    if membership is None:
        raise MemberNotFound()
    return membership


def api_token_list(
    *, actor: Principal, prefix: str | None = None, include_revoked: bool = False
) -> QuerySet[ApiToken]:
    actor.require_scope("admin")
    qs = ApiToken.objects.filter(tenant=actor.tenant).select_related("user")
    if prefix:
        qs = qs.filter(prefix__startswith=prefix)
    if not include_revoked:
        qs = qs.filter(revoked_at__isnull=True)
    return qs.order_by("-created_at", "-pk")


def api_token_get(*, actor: Principal, prefix: str) -> ApiToken:
    token = api_token_list(actor=actor, include_revoked=True).filter(prefix=prefix).first()
    if token is None:
        raise TokenNotFound()
    return token


def audit_event_list(
    *,
    actor: Principal,
    actor_id: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    request_id: str | None = None,
) -> QuerySet[AuditEvent]:
    """The actor's tenant's audit events, newest first (admin scope).

    ``action`` ending in ``.`` or ``*`` matches a family (``fs.`` for every file action);
    ``since`` is inclusive, ``until`` exclusive.
    """
    actor.require_scope("admin")
    qs = AuditEvent.objects.filter(tenant=actor.tenant).select_related("tenant")
    if actor_id:
        qs = qs.filter(actor_id=actor_id)
    if action:
        family = action.rstrip("*")
        if family != action or action.endswith("."):
            qs = qs.filter(action__startswith=family)
        else:
            qs = qs.filter(action=action)
    if outcome:
        qs = qs.filter(outcome=outcome)
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    if target_type:
        qs = qs.filter(target_type=target_type)
    if target_id:
        qs = qs.filter(target_id=target_id)
    if request_id:
        qs = qs.filter(request_id=request_id)
    return qs.order_by("-created_at", "-pk")
