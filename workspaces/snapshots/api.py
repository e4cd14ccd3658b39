"""REST face of snapshots: parse, call one service or selector, shape the answer."""

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router
from ninja.pagination import paginate
from ninja.responses import Status

from core.rest import BoundedLimitOffset
from tenants.api import principal_of
from workspaces.models import Snapshot, Workspace, WorkspaceStatus
from workspaces.schemas import SnapshotId, WorkspaceOut, WorkspaceRef
from workspaces.selectors import workspace_get
from workspaces.snapshots import selectors, services
from workspaces.snapshots.schemas import (
    ForkBody,
    SnapshotCreateBody,
    SnapshotListQuery,
    SnapshotOut,
)

router = Router(tags=["snapshots"])


@router.post(
    "/workspaces/{ref}/snapshots", response={201: SnapshotOut}, operation_id="snapshot_create"
)
def snapshot_create(
    request: HttpRequest, ref: WorkspaceRef, payload: SnapshotCreateBody
) -> Status[Snapshot]:
    """Capture a running workspace: its image and every file under /workspace (owners,
    modes, links). The workspace is paused while its files are copied, then continues.
    Quotas: `snapshot_quota_exceeded`, `snapshot_storage_quota_exceeded` (429)."""
    actor = principal_of(request)
    workspace = workspace_get(actor=actor, ref=ref)
    return Status(
        201,
        services.snapshot_create(
            actor=actor, workspace=workspace, name=payload.name, description=payload.description
        ),
    )


@router.get("/snapshots", response=list[SnapshotOut], operation_id="snapshot_list")
@paginate(BoundedLimitOffset)
def snapshot_list(request: HttpRequest, filters: Query[SnapshotListQuery]) -> Any:
    """The tenant's snapshots, newest first."""
    return selectors.snapshot_list(actor=principal_of(request), workspace=filters.workspace)


@router.get("/snapshots/{ref}", response=SnapshotOut, operation_id="snapshot_get")
def snapshot_get(request: HttpRequest, ref: SnapshotId) -> Snapshot:
    """One snapshot by id (`sn_…`)."""
    return selectors.snapshot_get(actor=principal_of(request), ref=ref)


@router.delete("/snapshots/{ref}", response={204: None}, operation_id="snapshot_delete")
def snapshot_delete(request: HttpRequest, ref: SnapshotId) -> Status[None]:
    """Delete a snapshot and its image (`snapshot_in_use`, 409, while a live workspace was
    spawned from it)."""
    actor = principal_of(request)
    services.snapshot_delete(actor=actor, snapshot=selectors.snapshot_get(actor=actor, ref=ref))
    return Status(204, None)


_SPAWN_STATUS: dict[str, int] = {WorkspaceStatus.RUNNING: 201, WorkspaceStatus.CREATING: 202}


@router.post(
    "/workspaces/{ref}/fork",
    response={201: WorkspaceOut, 202: WorkspaceOut},
    operation_id="workspace_fork",
)
def workspace_fork(request: HttpRequest, ref: WorkspaceRef, payload: ForkBody) -> Status[Workspace]:
    """Snapshot a workspace and spawn an independent copy of it in one call (the snapshot
    stays, listed under /snapshots, until deleted)."""
    actor = principal_of(request)
    workspace, _ = services.workspace_fork(
        actor=actor,
        workspace=workspace_get(actor=actor, ref=ref),
        alias=payload.alias,
        name=payload.name,
        persistent=payload.persistent,
        ttl_s=payload.ttl_s,
        limits=payload.limits.model_dump() if payload.limits else None,
        wait=payload.wait,
    )
    return Status(_SPAWN_STATUS.get(workspace.status, 201), workspace)
