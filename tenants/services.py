"""Writes on tenants, memberships, API tokens and policies.

Every admin-side action takes the acting principal (``actor``: a session user in
the Django admin or web UI, a token over REST, :func:`operator_principal` in
management commands), acts in the actor's tenant and records an audit event.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from tenants import token_cache, tokens
from tenants.audit import audit_record, audited
from tenants.errors import (
    InvalidFields,
    InvalidRole,
    InvalidScopes,
    LastOwner,
    MemberNotFound,
    NotAMember,
    ScopeEscalation,
    TenantExists,
    TokenNotFound,
    UnknownPolicyField,
)
from tenants.models import (
    MANAGING_ROLES,
    ApiToken,
    AuditEvent,
    Membership,
    Role,
    Scope,
    Tenant,
    TenantPolicy,
)
from tenants.principal import Principal, operator_principal

VALID_SCOPES = frozenset(s.value for s in Scope)


def _full_clean(obj: Any) -> None:
    """Field validation; uniqueness is left to the database constraint (no race)."""
    try:
        obj.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        raise InvalidFields(fields=exc.message_dict) from exc


def _require_admin(actor: Principal) -> None:
    actor.require_scope(Scope.ADMIN)


@transaction.atomic
def tenant_create(
    *, slug: str, name: str = "", owner: Any | None = None, actor_id: str = ""
) -> Tenant:
    """Make a tenant with the default policy (and an owner). Only operators do this (CLI,
    superusers), so the actor is named by ``actor_id`` (e.g. ``cli:root``)."""
    tenant = Tenant(slug=slug, name=name or slug)
    _full_clean(tenant)
    try:
        with transaction.atomic():
            tenant.save()
    except IntegrityError as exc:
        raise TenantExists(f"A tenant with slug '{slug}' already exists.") from exc
    actor = operator_principal(tenant, name=actor_id.removeprefix("cli:"))
    audit_record(
        actor=actor,
        action="tenant.create",
        outcome=AuditEvent.Outcome.SUCCESS,
        target_type="tenant",
        target_id=tenant.slug,
        details={"name": tenant.name},
    )
    if owner is not None:
        membership_set(actor=actor, user=owner, role=Role.OWNER)
    return tenant


def _check_role(role: str) -> None:
    if role not in Role.values:
        raise InvalidRole(role=role, allowed=Role.values)


def _refuse_last_owner(*, tenant: Tenant, user: Any) -> None:
    """A tenant always keeps one owner: nobody demotes or removes the last one."""
    owners = Membership.objects.select_for_update().filter(tenant=tenant, role=Role.OWNER)
    if [m.user_id for m in owners] == [user.pk]:
        raise LastOwner()


def membership_write(*, tenant: Tenant, user: Any, role: str, granted_by: str = "") -> Membership:
    """Store a membership without an audit event: for callers that record their own
    (sign-in membership rules, :func:`membership_set`)."""
    _check_role(role)
    membership, _ = Membership.objects.update_or_create(
        tenant=tenant, user=user, defaults={"role": role, "granted_by": granted_by}
    )
    if role in MANAGING_ROLES and not user.is_staff:
        # Tenant admins manage their tenant in the Django admin.
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    return membership


def membership_set(*, actor: Principal, user: Any, role: str) -> Membership:
    """Add ``user`` to the actor's tenant with ``role``, or change their role (audited).

    The membership becomes a hand-made one, which sign-in rules leave alone."""
    _require_admin(actor)
    with (
        audited(
            actor=actor, action="membership.set", target_type="user", target_id=str(user.pk)
        ) as audit,
        transaction.atomic(),
    ):
        # The audit event of a refusal is written after this block's rollback.
        _check_role(role)
        previous = Membership.objects.filter(tenant=actor.tenant, user=user).first()
        audit.details.update(
            {
                "username": user.get_username(),
                "role": role,
                "previous_role": previous.role if previous else None,
            }
        )
        if previous is not None and previous.role == Role.OWNER and role != Role.OWNER:
            _refuse_last_owner(tenant=actor.tenant, user=user)
        membership = membership_write(tenant=actor.tenant, user=user, role=role)
    return membership


def membership_remove(*, actor: Principal, membership: Membership) -> int:
    """Remove a member from the actor's tenant and revoke their tokens there (audited);
    returns how many tokens were revoked."""
    _require_admin(actor)
    user = membership.user
    with (
        audited(
            actor=actor, action="membership.remove", target_type="user", target_id=str(user.pk)
        ) as audit,
        transaction.atomic(),
    ):
        if membership.tenant_id != actor.tenant.pk:
            raise MemberNotFound()
        audit.details.update({"username": user.get_username(), "role": membership.role})
        if membership.role == Role.OWNER:
            _refuse_last_owner(tenant=actor.tenant, user=user)
        revoked = ApiToken.objects.filter(
            tenant=actor.tenant, user=user, revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
        audit.details["revoked_count"] = revoked
        membership.delete()
    # The bulk revocation sends no model signal: this process forgets its verified tokens
    # itself (others within DEVBENCH_TOKEN_CACHE_S, tenants/token_cache.py).
    token_cache.clear()
    return revoked


def membership_invite(*, actor: Principal, email: str, role: str, site_url: str) -> Membership:
    """Add a person by email; one without a password yet is mailed a link to choose one."""
    from tenants.invitations import invitation_send

    _require_admin(actor)
    _check_role(role)
    user = user_get_or_create(email=email)
    membership = membership_set(actor=actor, user=user, role=role)
    if not user.has_usable_password() and user.is_active:
        invitation_send(
            user=user,
            tenant=actor.tenant,
            role=role,
            site_url=site_url,
            invited_by=actor.actor_id if actor.user is None else actor.user.get_username(),
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
    actor: Principal,
    user: Any,
    name: str,
    scopes: Iterable[str] = (Scope.READ, Scope.WRITE),
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create a token of the actor's tenant for one of its members (audited); returns the
    row and the full secret, which is never stored. Nobody grants a scope they lack."""
    _require_admin(actor)
    with audited(actor=actor, action="api_token.create", target_type="api_token") as audit:
        tenant = actor.tenant
        if not Membership.objects.filter(tenant=tenant, user=user).exists():
            raise NotAMember(f"User '{user}' is not a member of tenant '{tenant.slug}'.")
        wanted = normalize_scopes(scopes)
        audit.details.update({"name": name, "scopes": wanted, "user_id": user.pk})
        beyond = [s for s in wanted if not actor.has_scope(s)]
        if beyond:
            raise ScopeEscalation(scopes=beyond)
        raw, parts = tokens.generate()
        salt = tokens.new_salt()
        token = ApiToken(
            tenant=tenant,
            user=user,
            name=name,
            prefix=parts.prefix,
            salt=salt,
            secret_hash=tokens.hash_secret(parts.secret, salt),
            scopes=wanted,
            expires_at=expires_at,
        )
        _full_clean(token)
        token.save()
        audit.target_id = token.prefix
    return token, raw


def api_token_revoke(*, actor: Principal, token: ApiToken) -> ApiToken:
    """Revoke a token of the actor's tenant (audited); revoking twice changes nothing."""
    _require_admin(actor)
    with audited(
        actor=actor, action="api_token.revoke", target_type="api_token", target_id=token.prefix
    ) as audit:
        if token.tenant_id != actor.tenant.pk:
            raise TokenNotFound()
        audit.details["name"] = token.name
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
        else:
            audit.details["already_revoked"] = True
    return token


# What a tenant admin may change in the policy (every editable field).
POLICY_FIELDS = (
    "allowed_images",
    "require_digest",
    "default_image",
    "memory_limit_mb",
    "cpu_limit",
    "pids_limit",
    "network_mode",
    "max_workspaces",
    "max_concurrent_execs",
    "default_ttl_s",
    "max_ttl_s",
    "max_file_size_bytes",
    "exec_output_cap_bytes",
    "exec_retention_days",
    "image_scan_block_severity",
    "warm_pool_size",
    "warm_pool_max_age_s",
    "idle_timeout_s",
)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def tenant_policy_update(*, actor: Principal, changes: Mapping[str, Any]) -> TenantPolicy:
    """Change fields of the actor's tenant policy (audited with old and new values).

    Every field is validated by the model; errors name the field
    (``extra.fields``), and nothing is saved unless all are valid.
    """
    _require_admin(actor)
    with (
        audited(
            actor=actor,
            action="tenant_policy.update",
            target_type="tenant_policy",
            target_id=actor.tenant.slug,
        ) as audit,
        transaction.atomic(),
    ):
        unknown = sorted(set(changes) - set(POLICY_FIELDS))
        if unknown:
            raise UnknownPolicyField(fields=unknown)
        policy = TenantPolicy.objects.select_for_update().get(tenant=actor.tenant)
        diff: dict[str, dict[str, Any]] = {}
        for name, value in changes.items():
            old = getattr(policy, name)
            setattr(policy, name, value)
            if old != value:
                diff[name] = {"old": _jsonable(old), "new": _jsonable(value)}
        audit.details["changes"] = diff
        _full_clean(policy)
        if policy.max_ttl_s and policy.default_ttl_s > policy.max_ttl_s:
            raise InvalidFields(fields={"default_ttl_s": ["Must not exceed max_ttl_s."]})
        policy.save()
    return policy


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
