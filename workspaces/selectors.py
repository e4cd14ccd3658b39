"""Tenant-scoped reads of workspaces. Another tenant's workspace is NotFound."""

from __future__ import annotations

from django.db.models import QuerySet

from devbench_site.errors import NotFound
from tenants.principal import Principal
from workspaces.models import Workspace, WorkspaceStatus


def workspace_list(*, actor: Principal, include_removed: bool = False) -> QuerySet[Workspace]:
    qs = Workspace.objects.filter(tenant=actor.tenant)
    if not include_removed:
        qs = qs.exclude(status=WorkspaceStatus.REMOVED)
    return qs


def workspace_get(*, actor: Principal, ref: str) -> Workspace:
    """By public id (``ws_…``) or by alias of a live workspace, inside the actor's tenant."""
    qs = Workspace.objects.filter(tenant=actor.tenant)
    if ref.startswith("ws_"):
        workspace = qs.filter(public_id=ref).first()
    else:
        workspace = qs.filter(alias=ref).exclude(status=WorkspaceStatus.REMOVED).first()
    if workspace is None:
        raise NotFound(f"Workspace '{ref}' not found.", code="workspace_not_found")
    return workspace
