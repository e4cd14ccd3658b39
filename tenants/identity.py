"""Identity services: users of OpenID providers and the memberships their claims grant.

Users are linked by (issuer, subject) through allauth's ``SocialAccount``
(provider id, uid = ``sub``), the record browser sign-in uses, so a user who
first shows up with a bearer token and later signs in in the browser (or the
other way round) is one user. Never by email: two providers (or a provider and
a local account) may share an address without being the same person.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from tenants.audit import audit_record
from tenants.models import ROLE_RANK, AuditEvent, Membership, MembershipRule, Role
from tenants.services import membership_write


def oidc_user_resolve(*, provider_id: str, subject: str, claims: dict[str, Any]) -> Any:
    """The user linked to (provider, subject); a new one (with rule memberships) if none is."""
    from allauth.socialaccount.models import SocialAccount

    account = (
        SocialAccount.objects.select_related("user")
        .filter(provider=provider_id, uid=subject)
        .first()
    )
    if account is not None:
        return account.user
    try:
        with transaction.atomic():
            user = _user_create(claims=claims)
            SocialAccount.objects.create(
                user=user, provider=provider_id, uid=subject, extra_data={"userinfo": claims}
            )
    except IntegrityError:
        # Another request linked this subject first: use its user.
        return (
            SocialAccount.objects.select_related("user").get(provider=provider_id, uid=subject).user
        )
    membership_rules_apply(user=user, provider_id=provider_id, claims=claims)
    return user


def _user_create(*, claims: dict[str, Any]) -> Any:
    from allauth.utils import generate_unique_username

    user_model = get_user_model()
    username = generate_unique_username(
        [claims.get("preferred_username"), claims.get("name"), claims.get("sub"), "user"]
    )
    email = str(claims.get("email") or "")
    # The address is informational only; leave it out rather than collide with another account.
    if email and user_model.objects.filter(email__iexact=email).exists():
        email = ""
    user = user_model.objects.create_user(username=username, email=email)
    user.set_unusable_password()
    user.save(update_fields=["password"])
    return user


def claim_values(claims: dict[str, Any], path: str) -> set[str]:
    """Values of a (dotted) claim as strings: a string, or the items of a list."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return set()
        value = value.get(part)
    if isinstance(value, str | int | bool):
        return {str(value)}
    if isinstance(value, list | tuple):
        return {str(v) for v in value if isinstance(v, str | int | bool)}
    return set()


def membership_rules_apply(*, user: Any, provider_id: str, claims: dict[str, Any]) -> None:
    """Make the user's rule-granted memberships of this provider match its rules and claims.

    The highest role wins when several rules name one tenant. Memberships added
    by hand are never changed; rule-granted ones whose rules no longer match go.
    """
    wanted: dict[int, tuple[Any, str]] = {}
    rules = MembershipRule.objects.filter(provider_id=provider_id, active=True).select_related(
        "tenant"
    )
    for rule in rules:
        if rule.tenant.active and rule.value in claim_values(claims, rule.claim):
            current = wanted.get(rule.tenant_id)
            if current is None or ROLE_RANK[Role(rule.role)] > ROLE_RANK[Role(current[1])]:
                wanted[rule.tenant_id] = (rule.tenant, rule.role)
    existing = {
        m.tenant_id: m for m in Membership.objects.filter(user=user).select_related("tenant")
    }
    for tenant_id, (tenant, role) in wanted.items():
        membership = existing.get(tenant_id)
        if membership is not None and (
            membership.granted_by != provider_id or membership.role == role
        ):
            continue  # hand-made, another provider's, or already right
        membership_write(tenant=tenant, user=user, role=role, granted_by=provider_id)
        _audit_membership(user, tenant, "membership.grant", provider_id, role)
    for tenant_id, membership in existing.items():
        if membership.granted_by == provider_id and tenant_id not in wanted:
            membership.delete()
            _audit_membership(user, membership.tenant, "membership.revoke", provider_id, "")


def _audit_membership(user: Any, tenant: Any, action: str, provider_id: str, role: str) -> None:
    audit_record(
        actor=None,
        actor_kind="rule",
        actor_id=f"provider:{provider_id}",
        action=action,
        outcome=AuditEvent.Outcome.SUCCESS,
        tenant=tenant,
        target_type="user",
        target_id=str(user.pk),
        details={"username": user.get_username(), "role": role, "provider": provider_id},
    )
