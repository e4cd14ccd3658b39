"""What an agent or operator needs to know before starting work: system_status.

A read-only, tenant-scoped selector: engine reachability and versions, the
caller's tenant, scopes, workspace counts and policy. It never raises for an
unreachable engine; it reports it.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

import django
from django.conf import settings
from django.db.models import Count

from core.errors import DevBenchError
from core.version import VERSION
from execution.models import Exec
from tenants.models import TenantPolicy
from tenants.principal import Principal
from tenants.selectors import tenant_policy_get
from workspaces.models import Node
from workspaces.nodes import node_driver
from workspaces.placement import node_loads
from workspaces.pool import pool_states
from workspaces.runtime.base import EngineInfo
from workspaces.selectors import workspace_list


@dataclass(frozen=True)
class EngineStatus:
    reachable: bool
    info: EngineInfo | None = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class SystemStatus:
    principal: Principal
    engine: EngineStatus
    versions: dict[str, str]
    mode: str
    node: str
    workspaces: dict[str, int]
    policy: TenantPolicy
    execs: dict[str, int] = field(default_factory=dict)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    pool: list[dict[str, Any]] = field(default_factory=list)

    def as_payload(self) -> dict[str, Any]:
        """The shape of ``SystemStatusOut``, shared by REST and MCP."""
        return {
            "tenant": self.principal.tenant,
            "principal_kind": self.principal.kind,
            "scopes": sorted(self.principal.scopes),
            "engine": {
                "reachable": self.engine.reachable,
                **(asdict(self.engine.info) if self.engine.info else {}),
                "error": self.engine.error,
            },
            "versions": self.versions,
            "mode": self.mode,
            "node": self.node,
            "workspaces": self.workspaces,
            "execs": self.execs,
            "policy": self.policy,
            "nodes": self.nodes,
            "pool": self.pool,
        }


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ""


def _engine_status() -> EngineStatus:
    """This process's node's engine (through its agent unless this process serves it)."""
    try:
        return EngineStatus(reachable=True, info=node_driver(settings.DEVBENCH_NODE).engine_info())
    except DevBenchError as exc:
        return EngineStatus(reachable=False, error={"code": exc.code, "message": exc.message})


def _counts_by_status(rows: Any) -> dict[str, int]:
    counts = {row["status"]: row["n"] for row in rows.values("status").annotate(n=Count("id"))}
    counts["total"] = sum(counts.values())
    return counts


def _nodes_status() -> list[dict[str, Any]]:
    return [
        {
            "name": load.node.name,
            "state": load.node.state,
            "labels": load.node.labels,
            "heartbeat_at": load.node.heartbeat_at.isoformat() if load.node.heartbeat_at else None,
            "version": load.node.version,
            "max_workspaces": load.node.max_workspaces,
            "memory_bytes": load.node.memory_bytes,
            "cpus": float(load.node.cpus),
            "workspaces": load.workspaces,
            "memory_reserved_bytes": load.memory_bytes,
            "cpus_reserved": load.cpus,
        }
        for load in node_loads(Node.objects.all())
    ]


def system_status_get(*, actor: Principal) -> SystemStatus:
    """Nodes (capacity and load, no endpoints) are listed for admin-scoped callers only."""
    actor.require_scope("read")
    return SystemStatus(
        principal=actor,
        engine=_engine_status(),
        versions={
            "devbench": VERSION,
            "python": platform.python_version(),
            "django": django.get_version(),
            "mcp": _package_version("mcp"),
        },
        mode="embedded" if settings.EMBEDDED else "production",
        node=settings.DEVBENCH_NODE,
        workspaces=_counts_by_status(workspace_list(actor=actor).order_by()),
        execs=_counts_by_status(Exec.objects.filter(tenant=actor.tenant).order_by()),
        policy=tenant_policy_get(tenant=actor.tenant),
        nodes=_nodes_status() if actor.has_scope("admin") else [],
        pool=[asdict(state) for state in pool_states(tenants=[actor.tenant])[actor.tenant.slug]],
    )
