"""Tenant-scoped reads of snapshots: another tenant's snapshot is ``snapshot_not_found``."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet, Sum

from core.validation import escape_unstorable, is_line
from tenants.principal import Principal
from tenants.selectors import tenant_ids_managed_by
from workspaces.models import Snapshot, SnapshotStatus
from workspaces.snapshots.errors import SnapshotNotFound, SnapshotNotReady


def snapshot_list(*, actor: Principal, workspace: str | None = None) -> QuerySet[Snapshot]:
    """The tenant's snapshots, newest first (``workspace``: of that source workspace id)."""
    actor.require_scope("read")
    qs = Snapshot.objects.filter(tenant=actor.tenant).select_related("tenant")
    if workspace is not None:
        qs = qs.filter(source_workspace_public_id=workspace)
    return qs


def snapshot_get(*, actor: Principal, ref: str) -> Snapshot:
    """By public id (``sn_…``) inside the actor's tenant."""
    actor.require_scope("read")
    snapshot = (
        Snapshot.objects.filter(tenant=actor.tenant, public_id=ref).select_related("tenant").first()
        if is_line(ref, max_length=32)  # else no snapshot has such an id (from a web URL, say)
        else None
    )
    if snapshot is None:
        shown = escape_unstorable(ref)
        raise SnapshotNotFound(f"Snapshot '{shown}' not found.", extra={"snapshot_id": shown})
    return snapshot


def snapshot_get_ready(*, actor: Principal, ref: str) -> Snapshot:
    snapshot = snapshot_get(actor=actor, ref=ref)
    if snapshot.status != SnapshotStatus.READY:
        raise SnapshotNotReady(
            f"Snapshot '{ref}' is still being captured.", extra={"snapshot_id": ref}
        )
    return snapshot


def snapshot_usage(*, tenant_id: int) -> tuple[int, int]:
    """(count, total bytes) of a tenant's snapshots, those being captured included."""
    qs = Snapshot.objects.filter(tenant_id=tenant_id)
    total = qs.aggregate(total=Sum("size_bytes"))["total"] or 0
    return qs.count(), int(total)


def snapshot_list_managed(*, user: Any) -> QuerySet[Snapshot]:
    """For the admin: snapshots of the tenants the user administers (all for superusers)."""
    ids = tenant_ids_managed_by(user=user)
    qs = Snapshot.objects.select_related("tenant", "created_by")
    return qs if ids is None else qs.filter(tenant_id__in=ids)
