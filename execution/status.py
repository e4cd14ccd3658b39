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
from workspaces.runtime import get_driver
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
        }


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ""


def _engine_status() -> EngineStatus:
    try:
        return EngineStatus(reachable=True, info=get_driver().engine_info())
    except DevBenchError as exc:
        return EngineStatus(reachable=False, error={"code": exc.code, "message": exc.message})


def _counts_by_status(rows: Any) -> dict[str, int]:
    counts = {row["status"]: row["n"] for row in rows.values("status").annotate(n=Count("id"))}
    counts["total"] = sum(counts.values())
    return counts


def system_status_get(*, actor: Principal) -> SystemStatus:
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
    )
