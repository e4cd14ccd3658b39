"""Errors of tenants, members, tokens and authentication (codes are part of the API)."""

from __future__ import annotations

from core.errors import (
    AuthenticationFailed,
    Conflict,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)


class TenantNotFound(NotFound):
    """Also what another tenant answers: a tenant the caller may not see does not exist."""

    code = "tenant_not_found"
    default_message = "Tenant not found."


class TenantInactive(PermissionDenied):
    code = "tenant_inactive"
    default_message = "The tenant is deactivated."


class TenantExists(Conflict):
    code = "tenant_exists"


class ScopeRequired(PermissionDenied):
    code = "scope_required"

    def __init__(self, *, required_scope: str, granted_scopes: list[str]) -> None:
        super().__init__(
            f"This action needs the '{required_scope}' scope.",
            extra={"required_scope": required_scope, "granted_scopes": granted_scopes},
        )


class TokenMalformed(AuthenticationFailed):
    code = "token_malformed"
    default_message = "The token is not valid."


class TokenInvalid(AuthenticationFailed):
    code = "token_invalid"
    default_message = "The token is not valid."


class TokenRevoked(AuthenticationFailed):
    code = "token_revoked"
    default_message = "The token has been revoked."


class TokenExpired(AuthenticationFailed):
    code = "token_expired"
    default_message = "The token has expired."


class TokenAudience(AuthenticationFailed):
    code = "token_audience"
    default_message = "The token is not meant for this service (audience)."


class MemberNotFound(NotFound):
    code = "member_not_found"
    default_message = "Member not found."


class TokenNotFound(NotFound):
    code = "token_not_found"
    default_message = "Token not found."


class LastOwner(Conflict):
    """A tenant always keeps one owner."""

    code = "last_owner"
    default_message = "This is the tenant's only owner; make someone else owner first."


class ScopeEscalation(PermissionDenied):
    """Nobody grants a scope they lack."""

    code = "scope_escalation"

    def __init__(self, *, scopes: list[str]) -> None:
        super().__init__(
            f"A token cannot get scopes its creator lacks: {scopes}.", extra={"scopes": scopes}
        )


class UnknownPolicyField(ValidationFailed):
    code = "unknown_policy_field"

    def __init__(self, *, fields: list[str]) -> None:
        super().__init__(
            f"Not policy fields: {', '.join(fields)}.",
            extra={"fields": {name: ["Not a policy field."] for name in fields}},
        )


class InvalidTime(ValidationFailed):
    code = "invalid_time"

    def __init__(self, *, field: str) -> None:
        super().__init__(f"{field} must be a date or a date and time.")


class InvalidOutcome(ValidationFailed):
    code = "invalid_outcome"
    default_message = "outcome is success, denied or error."


class InvalidScopes(ValidationFailed):
    code = "invalid_scopes"


class NotAMember(ValidationFailed):
    code = "not_a_member"


class InvalidFields(ValidationFailed):
    """A row's field validation failed (admin and command-line input): per-field messages."""

    code = "validation_failed"

    def __init__(self, *, fields: dict[str, list[str]]) -> None:
        super().__init__(
            "; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items()), extra={"fields": fields}
        )


class InvalidRole(ValidationFailed):
    code = "validation_failed"

    def __init__(self, *, role: str, allowed: list[str]) -> None:
        super().__init__(f"Unknown role '{role}'.", extra={"allowed": allowed})
