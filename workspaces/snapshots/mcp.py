"""MCP tools for snapshots: snapshot_create, snapshot_list, snapshot_delete, fork."""

from __future__ import annotations

from core.mcp.tools import ADD, DESTROY, READ, ToolCall, ToolSet
from core.pagination import Page
from tenants.principal import Principal
from workspaces.models import Snapshot, Workspace
from workspaces.schemas import WorkspaceOut
from workspaces.selectors import workspace_get
from workspaces.snapshots import selectors, services
from workspaces.snapshots.schemas import (
    ForkIn,
    SnapshotCreateIn,
    SnapshotDeleteIn,
    SnapshotDeleteOut,
    SnapshotListOut,
    SnapshotListQuery,
    SnapshotOut,
)

tools = ToolSet()


@tools.tool(
    input=SnapshotCreateIn,
    output=SnapshotOut,
    title="Snapshot a workspace",
    hints=ADD,
)
def snapshot_create(call: ToolCall[Principal], args: SnapshotCreateIn) -> Snapshot:
    """Save a running workspace: its image and every file under /workspace.

    Use it before a risky change (restore by spawning with snapshot=<id>) or to
    hand a prepared environment to others of your tenant. The workspace is
    paused for the copy (a moment per hundred MB) and then continues; commands
    that were running carry on. Returns the snapshot (id sn_...). The tenant
    policy limits how many snapshots and how many bytes you may keep
    (snapshot_quota_exceeded, snapshot_storage_quota_exceeded). Needs "write".
    """
    workspace = workspace_get(actor=call.principal, ref=args.container_id)
    return services.snapshot_create(
        actor=call.principal, workspace=workspace, name=args.name, description=args.description
    )


@tools.tool(
    input=SnapshotListQuery,
    output=SnapshotListOut,
    title="List snapshots",
    hints=READ,
)
def snapshot_list(call: ToolCall[Principal], args: SnapshotListQuery) -> Page[Snapshot]:
    """List the tenant's snapshots, newest first: id, name, source workspace, size.

    Filter by the workspace they were taken of (workspace=ws_...). Answers a
    page: "items", and while "has_more" call again with cursor=next_cursor
    (limit: page size, default 50, at most 500). Needs "read".
    """
    return selectors.snapshot_page(actor=call.principal, page=args, workspace=args.workspace)


@tools.tool(
    input=SnapshotDeleteIn,
    output=SnapshotDeleteOut,
    title="Delete a snapshot",
    hints=DESTROY,
)
def snapshot_delete(call: ToolCall[Principal], args: SnapshotDeleteIn) -> SnapshotDeleteOut:
    """Delete a snapshot and free its quota.

    Refused with snapshot_in_use while a live workspace was spawned (or
    forked) from it: kill those first. Needs "write".
    """
    snapshot = selectors.snapshot_get(actor=call.principal, ref=args.snapshot_id)
    services.snapshot_delete(actor=call.principal, snapshot=snapshot)
    return SnapshotDeleteOut(snapshot_id=args.snapshot_id, deleted=True)


@tools.tool(
    input=ForkIn,
    output=WorkspaceOut,
    title="Fork a workspace",
    hints=ADD,
)
def fork(call: ToolCall[Principal], args: ForkIn) -> Workspace:
    """Copy a running workspace into a new, independent one (snapshot + spawn).

    Use it to try something without disturbing the original: the copy starts
    with the same image and /workspace files, and nothing done in either one
    reaches the other. The snapshot it makes is kept (see snapshot_list) and
    counts towards the tenant's snapshot quota; delete it once the fork is
    gone. Returns the new workspace. Needs "write".
    """
    workspace, _ = services.workspace_fork(
        actor=call.principal,
        workspace=workspace_get(actor=call.principal, ref=args.container_id),
        alias=args.alias,
        name=args.name,
        persistent=args.persistent,
        ttl_s=args.ttl_s,
        limits=args.limits.model_dump() if args.limits else None,
        wait=args.wait,
    )
    return workspace
