"""Writes on tenants, memberships and API tokens."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from tenants import tokens
from tenants.errors import InvalidFields, InvalidRole, InvalidScopes, NotAMember, TenantExists
from tenants.models import ApiToken, Membership, Role, Scope, Tenant

VALID_SCOPES = frozenset(s.value for s in Scope)


def _full_clean(obj: Any) -> None:
    """Field validation; uniqueness is left to the database constraint (no race)."""
    try:
        obj.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        raise InvalidFields(fields=exc.message_dict) from exc


@transaction.atomic
def tenant_create(*, slug: str, name: str = "", owner: Any | None = None) -> Tenant:
    tenant = Tenant(slug=slug, name=name or slug)
    _full_clean(tenant)
    try:
        with transaction.atomic():
            tenant.save()
    except IntegrityError as exc:
        raise TenantExists(f"A tenant with slug '{slug}' already exists.") from exc
    if owner is not None:
        membership_set(tenant=tenant, user=owner, role=Role.OWNER)
    return tenant


def membership_set(*, tenant: Tenant, user: Any, role: str, granted_by: str = "") -> Membership:
    """Add or change a membership. ``granted_by`` names the provider whose rules grant it;
    empty (the default, e.g. an admin's edit) makes it a hand-made one that rules leave alone."""
    if role not in Role.values:
        raise InvalidRole(role=role, allowed=Role.values)
    membership, _ = Membership.objects.update_or_create(
        tenant=tenant, user=user, defaults={"role": role, "granted_by": granted_by}
    )
    if role in (Role.OWNER, Role.ADMIN) and not user.is_staff:
        # Tenant admins manage their tenant in the Django admin.
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    return membership


def membership_invite(
    *, tenant: Tenant, email: str, role: str, site_url: str, invited_by: str = ""
) -> Membership:
    """Add a person by email; one without a password yet is mailed a link to choose one."""
    from tenants.invitations import invitation_send

    user = user_get_or_create(email=email)
    membership = membership_set(tenant=tenant, user=user, role=role)
    if not user.has_usable_password() and user.is_active:
        invitation_send(
            user=user, tenant=tenant, role=role, site_url=site_url, invited_by=invited_by
        )
    return membership


def normalize_scopes(scopes: Iterable[str]) -> list[str]:
    cleaned = sorted({s.strip().lower() for s in scopes if s.strip()})
    unknown = [s for s in cleaned if s not in VALID_SCOPES]
    if unknown or not cleaned:
        raise InvalidScopes(
            f"Scopes must be a non-empty subset of {sorted(VALID_SCOPES)}; got {unknown or 'none'}."
        )
    return cleaned


def api_token_create(
    *,
    tenant: Tenant,
    user: Any,
    name: str,
    scopes: Iterable[str] = (Scope.READ, Scope.WRITE),
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the full secret, which is never stored."""
    if not Membership.objects.filter(tenant=tenant, user=user).exists():
        raise NotAMember(f"User '{user}' is not a member of tenant '{tenant.slug}'.")
    raw, parts = tokens.generate()
    salt = tokens.new_salt()
    token = ApiToken(
        tenant=tenant,
        user=user,
        name=name,
        prefix=parts.prefix,
        salt=salt,
        secret_hash=tokens.hash_secret(parts.secret, salt),
        scopes=normalize_scopes(scopes),
        expires_at=expires_at,
    )
    _full_clean(token)
    token.save()
    return token, raw


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def user_get_or_create(*, email: str, is_superuser: bool = False) -> Any:
    user_model = get_user_model()
    user = user_model.objects.filter(email__iexact=email).first()
    if user is None:
        username = email.split("@")[0] if "@" in email else email
        if user_model.objects.filter(username=username).exists():
            username = email
        user = user_model.objects.create_user(username=username, email=email)
    if is_superuser and not user.is_superuser:
        user.is_superuser = user.is_staff = True
        user.save(update_fields=["is_superuser", "is_staff"])
    return user


def audit_event_purge(*, retention_days: int | None = None, batch_size: int | None = None) -> int:
    """Delete audit events older than the retention period, in batches; returns the count.

    ``retention_days`` defaults to ``AUDIT_RETENTION_DAYS``; 0 keeps everything.
    Batches keep each delete short, so writers of new events are never blocked long.
    """
    from datetime import timedelta

    from django.conf import settings

    from tenants.models import AuditEvent

    days = settings.AUDIT_RETENTION_DAYS if retention_days is None else retention_days
    if days <= 0:
        return 0
    size = batch_size or settings.AUDIT_PURGE_BATCH
    cutoff = timezone.now() - timedelta(days=days)
    total = 0
    while True:
        ids = list(
            AuditEvent.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:size]
        )
        if not ids:
            return total
        total += AuditEvent.objects.filter(pk__in=ids).delete()[0]
