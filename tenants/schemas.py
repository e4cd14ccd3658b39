from __future__ import annotations

from ninja import Schema

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
