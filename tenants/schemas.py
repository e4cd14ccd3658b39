from __future__ import annotations

from datetime import datetime
from typing import Literal

from ninja import Schema
from pydantic import ConfigDict, Field

from core.pagination import PageOut, PageQuery
from core.schemas import ErrorOut


class UserOut(Schema):
    id: int | None
    username: str | None
    email: str | None


class TenantOut(Schema):
    slug: str
    name: str


class PrincipalOut(Schema):
    kind: str
    user: UserOut
    tenant: TenantOut
    scopes: list[str]


class TenantPolicyOut(Schema):
    allowed_images: list[str]
    require_digest: bool
    default_image: str
    memory_limit_mb: int
    cpu_limit: float
    pids_limit: int
    network_mode: str
    max_workspaces: int
    max_concurrent_execs: int
    default_ttl_s: int
    max_ttl_s: int
    max_file_size_bytes: int
    exec_output_cap_bytes: int
    max_snapshots: int
    max_snapshot_bytes: int
    warm_pool_size: int
    warm_pool_max_age_s: int
    idle_timeout_s: int
    exec_retention_days: int
    image_scan_block_severity: str


class TenantDetailOut(TenantOut):
    policy: TenantPolicyOut


class EngineStatusOut(Schema):
    reachable: bool
    name: str | None = None
    version: str | None = None
    api_version: str | None = None
    os: str | None = None
    arch: str | None = None
    error: ErrorOut | None = None


class NodeStatusOut(Schema):
    """A node's capacity and what live workspaces reserve of it (admin scope only)."""

    name: str
    state: str
    labels: dict[str, str]
    heartbeat_at: str | None
    version: str
    max_workspaces: int
    memory_bytes: int
    cpus: float
    workspaces: int
    memory_reserved_bytes: int
    cpus_reserved: float


class PoolStatusOut(Schema):
    """The tenant's warm pool on one node; hits and misses count the tenant's spawns."""

    node: str
    image: str
    size: int
    ready: int
    creating: int
    hits: int
    misses: int
    refill_latency_s: float | None


class SystemStatusOut(Schema):
    tenant: TenantOut
    principal_kind: str
    scopes: list[str]
    engine: EngineStatusOut
    versions: dict[str, str]
    mode: str
    node: str
    workspaces: dict[str, int]
    execs: dict[str, int]
    policy: TenantPolicyOut
    nodes: list[NodeStatusOut] = []
    pool: list[PoolStatusOut] = []


# --- Tenant administration (REST: /tenants/{slug}/members, /tokens, /policy) ---------

RoleName = Literal["owner", "admin", "member", "viewer"]
ScopeName = Literal["read", "write", "admin"]


def _default_scopes() -> list[ScopeName]:
    return ["read", "write"]


class MemberOut(Schema):
    user_id: int
    username: str
    email: str
    role: str
    granted_by: str
    created_at: datetime


class MemberInviteIn(Schema):
    """Add a person by email (an account is made, and an invitation mailed, if needed)."""

    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    role: RoleName = "member"


class MemberUpdateIn(Schema):
    model_config = ConfigDict(extra="forbid")
    role: RoleName


class ApiTokenOut(Schema):
    prefix: str
    name: str
    user_id: int
    username: str
    scopes: list[str]
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime


class ApiTokenCreatedOut(ApiTokenOut):
    token: str = Field(description="The full secret: shown only in this answer, never again.")


class ApiTokenCreateIn(Schema):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    user_id: int | None = Field(
        default=None, description="A member of the tenant; default: the caller's user."
    )
    scopes: list[ScopeName] = Field(default_factory=_default_scopes, min_length=1)
    expires_at: datetime | None = None


class ApiTokenListQuery(PageQuery):
    prefix: str | None = Field(
        default=None, max_length=16, description="Tokens whose prefix starts so."
    )
    include_revoked: bool = False


class TenantPolicyUpdateIn(Schema):
    """Only the fields sent are changed; each is validated like in the admin."""

    model_config = ConfigDict(extra="forbid")
    allowed_images: list[str] | None = None
    require_digest: bool | None = None
    default_image: str | None = Field(default=None, max_length=255)
    memory_limit_mb: int | None = None
    cpu_limit: float | None = None
    pids_limit: int | None = None
    network_mode: Literal["none", "bridge"] | None = None
    max_workspaces: int | None = None
    max_concurrent_execs: int | None = None
    default_ttl_s: int | None = None
    max_ttl_s: int | None = None
    max_file_size_bytes: int | None = None
    exec_output_cap_bytes: int | None = None
    exec_retention_days: int | None = None
    image_scan_block_severity: Literal["", "LOW", "MEDIUM", "HIGH", "CRITICAL"] | None = None
    warm_pool_size: int | None = None
    warm_pool_max_age_s: int | None = None
    idle_timeout_s: int | None = None


# --- Audit (REST: /audit, /audit/export) -----------------------------------------------


class AuditEventOut(Schema):
    id: int
    created_at: datetime
    actor_kind: str
    actor_id: str
    action: str
    target_type: str
    target_id: str
    outcome: str
    error_code: str
    ip: str | None
    user_agent: str
    request_id: str
    details: dict[str, object]


class AuditFilterQuery(Schema):
    """The filters of the audit list and of its export."""

    actor: str | None = Field(default=None, description="Exact actor id, e.g. `token:ab12cd34`.")
    action: str | None = Field(
        default=None, description="An action (`workspace.spawn`) or a family (`fs.*`)."
    )
    outcome: Literal["success", "denied", "error"] | None = None
    since: datetime | None = Field(default=None, description="From this time (inclusive).")
    until: datetime | None = Field(default=None, description="Before this time.")
    target_type: str | None = None
    target_id: str | None = Field(default=None, description="The object, e.g. a workspace id.")
    request_id: str | None = None


class AuditListQuery(AuditFilterQuery, PageQuery):
    """REST audit_event_list: the filters plus the page."""


class AuditEventListOut(PageOut[AuditEventOut]):
    """A page of the tenant's audit events, newest first."""


class MemberListOut(PageOut[MemberOut]):
    """A page of the tenant's members, newest first."""


class ApiTokenListOut(PageOut[ApiTokenOut]):
    """A page of the tenant's API tokens, newest first."""
