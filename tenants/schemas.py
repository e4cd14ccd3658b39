from __future__ import annotations

from ninja import Schema


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


class TenantDetailOut(TenantOut):
    policy: TenantPolicyOut
