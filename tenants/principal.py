"""Who is acting: the result of authentication, passed to every service."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from tenants.errors import ScopeRequired
from tenants.models import Role, Scope

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from tenants.models import Tenant

PrincipalKind = Literal["token", "oidc", "session", "system", "cli"]

# A scope grants itself and every scope below it.
_SCOPE_RANK = {Scope.READ: 1, Scope.WRITE: 2, Scope.ADMIN: 3}

ROLE_SCOPES: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset({Scope.READ, Scope.WRITE, Scope.ADMIN}),
    Role.ADMIN: frozenset({Scope.READ, Scope.WRITE, Scope.ADMIN}),
    Role.MEMBER: frozenset({Scope.READ, Scope.WRITE}),
    Role.VIEWER: frozenset({Scope.READ}),
}


@dataclass(frozen=True)
class Principal:
    user: AbstractBaseUser | None
    tenant: Tenant
    scopes: frozenset[str]
    kind: PrincipalKind
    actor_id: str = ""
    token_id: int | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    def has_scope(self, scope: str) -> bool:
        needed = _SCOPE_RANK.get(Scope(scope), 99)
        return any(_SCOPE_RANK.get(Scope(s), 0) >= needed for s in self.scopes)

    def require_scope(self, scope: str) -> None:
        """Raise ``scope_required`` (403), recording the refusal in the audit log."""
        if not self.has_scope(scope):
            from tenants.audit import audit_record

            audit_record(
                actor=self,
                action="scope.denied",
                outcome="denied",
                error_code="scope_required",
                details={"required_scope": scope, "granted_scopes": sorted(self.scopes)},
            )
            raise ScopeRequired(
                required_scope=scope,
                granted_scopes=sorted(self.scopes),
            )

    @property
    def user_id(self) -> int | None:
        return self.user.pk if self.user is not None else None


def system_principal(tenant: Tenant) -> Principal:
    """For periodic jobs and reconciliation: acts inside one tenant, every scope."""
    return Principal(
        user=None,
        tenant=tenant,
        scopes=frozenset({Scope.READ, Scope.WRITE, Scope.ADMIN}),
        kind="system",
        actor_id="system",
    )


def operator_principal(tenant: Tenant, *, name: str = "") -> Principal:
    """Someone with shell access on the server (management commands): every scope.

    ``name`` (default: the OS user) is recorded as the actor of what they do.
    """
    import getpass

    who = name or getpass.getuser()
    return Principal(
        user=None,
        tenant=tenant,
        scopes=frozenset({Scope.READ, Scope.WRITE, Scope.ADMIN}),
        kind="cli",
        actor_id=f"cli:{who}"[:200],
    )
