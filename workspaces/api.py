"""REST face of the workspace services: parse, call one service, shape the answer."""

from typing import Any

from django.http import HttpRequest
from ninja import Header, Query, Router
from ninja.responses import Status

from core.errors import InvalidIdempotencyKey
from core.validation import IdempotencyKey
from tenants.api import principal_of
from workspaces import reconcile, selectors, services
from workspaces.models import Workspace, WorkspaceStatus
from workspaces.schemas import (
    GcOut,
    ReconcileOut,
    WorkspaceAttachBody,
    WorkspaceAttachOut,
    WorkspaceListOut,
    WorkspaceListQuery,
    WorkspaceOut,
    WorkspaceRef,
    WorkspaceSpawnIn,
    WorkspaceStatsOut,
)

router = Router(tags=["workspaces"])

IDEMPOTENCY_HEADER = Header(
    None, alias="Idempotency-Key", description="The same as the idempotency_key field."
)


_SPAWN_STATUS: dict[str, int] = {WorkspaceStatus.RUNNING: 201, WorkspaceStatus.CREATING: 202}


@router.post(
    "/workspaces",
    response={200: WorkspaceOut, 201: WorkspaceOut, 202: WorkspaceOut},
    operation_id="workspace_spawn",
)
def workspace_spawn(
    request: HttpRequest,
    payload: WorkspaceSpawnIn,
    header_key: IdempotencyKey | None = IDEMPOTENCY_HEADER,
) -> Status[Workspace]:
    """Spawn a workspace: 201 once it runs, or 202 while it is created (`wait: false`).

    An `idempotency_key` (or the `Idempotency-Key` header) makes retries safe:
    the same key returns the same workspace.
    """
    if header_key and payload.idempotency_key and header_key != payload.idempotency_key:
        raise InvalidIdempotencyKey(
            "The Idempotency-Key header and the idempotency_key field differ."
        )
    workspace = services.workspace_spawn(
        actor=principal_of(request),
        image=payload.image,
        snapshot=payload.snapshot,
        template=payload.template,
        alias=payload.alias,
        persistent=payload.persistent,
        ttl_s=payload.ttl_s,
        idempotency_key=payload.idempotency_key or header_key,
        limits=payload.limits.model_dump() if payload.limits else None,
        node_labels=payload.node_labels,
        wait=payload.wait,
    )
    return Status(_SPAWN_STATUS.get(workspace.status, 200), workspace)


@router.get("/workspaces", response=WorkspaceListOut, operation_id="workspace_list")
def workspace_list(request: HttpRequest, filters: Query[WorkspaceListQuery]) -> Any:
    """The tenant's workspaces, newest first (removed ones only with `include_removed`),
    a page at a time: `limit`, and `cursor` = the previous page's `next_cursor`."""
    return selectors.workspace_page(
        actor=principal_of(request),
        page=filters,
        status=filters.status,
        alias=filters.alias,
        include_removed=filters.include_removed,
    )


@router.get("/workspaces/{ref}", response=WorkspaceOut, operation_id="workspace_get")
def workspace_get(request: HttpRequest, ref: WorkspaceRef) -> Workspace:
    """One workspace by id (`ws_…`) or alias."""
    return selectors.workspace_get(actor=principal_of(request), ref=ref)


@router.delete("/workspaces/{ref}", response=WorkspaceOut, operation_id="workspace_kill")
def workspace_kill(
    request: HttpRequest, ref: WorkspaceRef, force: bool = False, remove_volume: bool | None = None
) -> Workspace:
    """Stop and remove a workspace; a persistent one keeps its volume unless `remove_volume`."""
    actor = principal_of(request)
    workspace = selectors.workspace_get(actor=actor, ref=ref)
    return services.workspace_kill(
        actor=actor, workspace=workspace, force=force, remove_volume=remove_volume
    )


@router.post(
    "/workspaces/{ref}/attach", response={201: WorkspaceAttachOut}, operation_id="workspace_attach"
)
def workspace_attach(
    request: HttpRequest, ref: WorkspaceRef, payload: WorkspaceAttachBody
) -> Status[WorkspaceAttachOut]:
    """Register a client working in a running workspace; answers its roots."""
    result = services.workspace_attach(
        actor=principal_of(request),
        target=ref,
        client_name=payload.client_name,
        session_id=payload.session_id,
    )
    return Status(201, WorkspaceAttachOut.from_result(result))


@router.post("/workspaces/{ref}/stop", response=WorkspaceOut, operation_id="workspace_stop")
def workspace_stop(request: HttpRequest, ref: WorkspaceRef) -> Workspace:
    """Stop a running workspace; its container and files stay for a later start.

    Commands still running end with it. Reconciliation leaves it stopped, and it
    still expires at its TTL. Stopping a stopped workspace changes nothing.
    """
    actor = principal_of(request)
    workspace = selectors.workspace_get(actor=actor, ref=ref)
    return services.workspace_stop(actor=actor, workspace=workspace)


@router.post("/workspaces/{ref}/start", response=WorkspaceOut, operation_id="workspace_start")
def workspace_start(request: HttpRequest, ref: WorkspaceRef) -> Workspace:
    """Start a stopped workspace again, with the files it had (`workspace_not_stopped` for
    a workspace that is neither stopped nor running)."""
    actor = principal_of(request)
    workspace = selectors.workspace_get(actor=actor, ref=ref)
    return services.workspace_start(actor=actor, workspace=workspace)


@router.post("/workspaces/{ref}/pause", response=WorkspaceOut, operation_id="workspace_pause")
def workspace_pause(request: HttpRequest, ref: WorkspaceRef) -> Workspace:
    """Freeze a running workspace now: its processes stop where they are and keep their
    memory, its files stay. Any later operation on it (or `resume`) thaws it. Pausing a
    paused workspace changes nothing; its TTL still runs."""
    actor = principal_of(request)
    workspace = selectors.workspace_get(actor=actor, ref=ref)
    return services.workspace_pause(actor=actor, workspace=workspace)


@router.post("/workspaces/{ref}/resume", response=WorkspaceOut, operation_id="workspace_resume")
def workspace_resume(request: HttpRequest, ref: WorkspaceRef) -> Workspace:
    """Thaw a paused workspace (`workspace_not_paused` unless paused or running;
    `workspace_resume_failed` when its container cannot be thawed)."""
    actor = principal_of(request)
    workspace = selectors.workspace_get(actor=actor, ref=ref)
    return services.workspace_resume(actor=actor, workspace=workspace)


@router.get("/workspaces/{ref}/stats", response=WorkspaceStatsOut, operation_id="workspace_stats")
def workspace_stats(request: HttpRequest, ref: WorkspaceRef) -> WorkspaceStatsOut:
    """CPU, memory, processes, network and block I/O of a running workspace (~1 s)."""
    actor = principal_of(request)
    workspace = selectors.workspace_get(actor=actor, ref=ref)
    return WorkspaceStatsOut.from_stats(
        workspace, services.workspace_stats(actor=actor, workspace=workspace)
    )


@router.post("/maintenance/reconcile", response=ReconcileOut, operation_id="reconcile")
def reconcile_run(request: HttpRequest) -> reconcile.ReconcileReport:
    """Bring the tenant's workspaces in line with the engine now (admin scope)."""
    return reconcile.workspace_reconcile(actor=principal_of(request))


@router.post("/maintenance/gc", response=GcOut, operation_id="garbage_collect")
def garbage_collect(request: HttpRequest) -> reconcile.GcReport:
    """Remove the tenant's containers and volumes that no live workspace owns (admin scope)."""
    return reconcile.workspace_gc(actor=principal_of(request))
