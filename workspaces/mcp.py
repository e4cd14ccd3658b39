"""MCP tools for workspaces: parse, call one service or selector, format.

spawn, attach, kill, list_containers, container_stats (agents), reconcile and
garbage_collect (tenant admins). ``container_id`` is always the workspace id
(``ws_…``) or its alias: the engine's own ids never leave DevBench.
"""

from __future__ import annotations

from core.mcp.tools import ADD, READ, REPEATABLE_CHANGE, REPEATABLE_DESTROY, ToolCall, ToolSet
from core.pagination import Page
from core.schemas import NoArguments
from tenants.principal import Principal
from workspaces import reconcile, selectors, services
from workspaces.models import Workspace
from workspaces.schemas import (
    GcOut,
    ReconcileOut,
    WorkspaceAttachIn,
    WorkspaceAttachOut,
    WorkspaceKillIn,
    WorkspaceListOut,
    WorkspaceListQuery,
    WorkspaceOut,
    WorkspacePauseIn,
    WorkspaceResumeIn,
    WorkspaceSpawnIn,
    WorkspaceStatsIn,
    WorkspaceStatsOut,
)

tools = ToolSet()


@tools.tool(
    input=WorkspaceSpawnIn,
    output=WorkspaceOut,
    title="Spawn a workspace",
    hints=ADD,
)
def spawn(call: ToolCall[Principal], args: WorkspaceSpawnIn) -> Workspace:
    """Create an isolated Linux workspace: a container with a persistent /workspace volume.

    Use it when you need somewhere to run commands or keep files; reuse a
    workspace you already have (list_containers, attach) rather than spawning
    many. Returns the workspace; pass its "id" (ws_...) or its alias as
    container_id to the exec_* and fs_* tools. By default it answers once the
    workspace runs (about a second); with wait=false it answers at once with
    status "creating" (while its image is pulled onto its node, "progress" shows
    layers and bytes; list_containers shows it too). Send an idempotency_key if
    you may retry: the same key returns the same workspace. The tenant policy
    decides the allowed images (default image if you give none), memory/CPU/pids
    ceilings (ask for less with limits), how many live workspaces you may have (quota_exceeded) and
    the TTL: ephemeral workspaces expire (ttl_s), persistent ones do not and
    keep their volume after a kill. Commands run as uid 1000 with no network
    unless the policy allows it. snapshot=sn_... (instead of image) restores a
    snapshot's image and /workspace files; template=<name> (see template_list)
    uses a prepared environment. The answer's "warm" is true when the workspace
    came at once from the tenant's pool of started workspaces. Needs the "write" scope.
    """
    return services.workspace_spawn(
        actor=call.principal,
        image=args.image,
        snapshot=args.snapshot,
        template=args.template,
        alias=args.alias,
        persistent=args.persistent,
        ttl_s=args.ttl_s,
        idempotency_key=args.idempotency_key,
        limits=args.limits.model_dump() if args.limits else None,
        node_labels=args.node_labels,
        wait=args.wait,
    )


@tools.tool(
    input=WorkspaceAttachIn,
    output=WorkspaceAttachOut,
    title="Attach to a workspace",
    hints=ADD,
)
def attach(call: ToolCall[Principal], args: WorkspaceAttachIn) -> WorkspaceAttachOut:
    """Start working in an existing, running workspace (found by id or alias).

    Use it to resume work in a workspace spawned earlier (by you or a
    teammate of the same tenant). Records your client_name/session_id on the
    workspace and returns its container_id and its roots (["/workspace"]:
    where your files live). A workspace that is not running answers
    workspace_not_running; an unknown one workspace_not_found. Needs "read".
    """
    result = services.workspace_attach(
        actor=call.principal,
        target=args.target,
        client_name=args.client_name,
        session_id=args.session_id,
    )
    return WorkspaceAttachOut.from_result(result)


@tools.tool(
    input=WorkspaceKillIn,
    output=WorkspaceOut,
    title="Kill a workspace",
    hints=REPEATABLE_DESTROY,
)
def kill(call: ToolCall[Principal], args: WorkspaceKillIn) -> Workspace:
    """Stop and remove a workspace and its running commands.

    Use it when you are done: it frees the tenant's quota. The /workspace
    volume is deleted too unless the workspace is persistent (remove_volume
    overrides that). force=true kills at once instead of a graceful stop.
    Killing an already removed workspace changes nothing. Needs "write".
    """
    workspace = selectors.workspace_get(actor=call.principal, ref=args.container_id)
    return services.workspace_kill(
        actor=call.principal,
        workspace=workspace,
        force=args.force,
        remove_volume=args.remove_volume,
    )


@tools.tool(
    input=WorkspaceListQuery,
    output=WorkspaceListOut,
    title="List workspaces",
    hints=READ,
)
def list_containers(call: ToolCall[Principal], args: WorkspaceListQuery) -> Page[Workspace]:
    """List the tenant's workspaces, newest first: id, alias, image, status, TTL, limits.

    Use it to find a workspace to reuse before spawning a new one. Removed
    workspaces are left out unless include_removed=true; filter by status
    (creating, running, stopped, removing, removed, error) or alias. Answers a
    page: "items", and while "has_more" call again with cursor=next_cursor
    (limit: page size, default 50, at most 500). Needs "read".
    """
    return selectors.workspace_page(
        actor=call.principal,
        page=args,
        status=args.status,
        alias=args.alias,
        include_removed=args.include_removed,
    )


@tools.tool(
    input=WorkspaceStatsIn,
    output=WorkspaceStatsOut,
    title="Workspace resource use",
    hints=READ,
)
def container_stats(call: ToolCall[Principal], args: WorkspaceStatsIn) -> WorkspaceStatsOut:
    """One reading of a running workspace's resource use (takes about one second).

    CPU percent (100 = one full CPU), memory used and its limit (MiB, %),
    number of processes, network and block I/O bytes. Use it to check
    whether a command is busy or the workspace is near its memory limit.
    Needs "read"; a workspace that is not running answers workspace_not_running.
    """
    workspace = selectors.workspace_get(actor=call.principal, ref=args.container_id)
    stats = services.workspace_stats(actor=call.principal, workspace=workspace)
    return WorkspaceStatsOut.from_stats(workspace, stats)


@tools.tool(
    input=WorkspacePauseIn,
    output=WorkspaceOut,
    title="Pause a workspace",
    hints=REPEATABLE_CHANGE,
)
def pause(call: ToolCall[Principal], args: WorkspacePauseIn) -> Workspace:
    """Freeze a running workspace: its processes stop where they are, keeping their
    memory, and its files stay; it uses no CPU while paused.

    Workspaces idle past the tenant's idle timeout are paused automatically. Any
    later exec_*, fs_*, attach or container_stats call on it resumes it first, so
    pausing is safe whenever you step away. Its TTL still runs. Pausing a paused
    workspace changes nothing. Needs "write".
    """
    workspace = selectors.workspace_get(actor=call.principal, ref=args.container_id)
    return services.workspace_pause(actor=call.principal, workspace=workspace)


@tools.tool(
    input=WorkspaceResumeIn,
    output=WorkspaceOut,
    title="Resume a workspace",
    hints=REPEATABLE_CHANGE,
)
def resume(call: ToolCall[Principal], args: WorkspaceResumeIn) -> Workspace:
    """Thaw a paused workspace: its processes continue where they stopped.

    Rarely needed (any operation on a paused workspace resumes it). A running
    workspace answers as it is; any other status answers workspace_not_paused;
    workspace_resume_failed when its container cannot be thawed (node down,
    container gone). Needs "write".
    """
    workspace = selectors.workspace_get(actor=call.principal, ref=args.container_id)
    return services.workspace_resume(actor=call.principal, workspace=workspace)


@tools.tool(
    input=NoArguments,
    output=ReconcileOut,
    title="Reconcile workspaces",
    name="reconcile",
    hints=REPEATABLE_CHANGE,
)
def reconcile_workspaces(call: ToolCall[Principal], args: NoArguments) -> reconcile.ReconcileReport:
    """Bring the tenant's workspace records in line with the container engine, now.

    For administrators after an engine restart or crash (it also runs
    periodically): restarts or marks workspaces whose containers stopped or
    vanished and lists every action taken. Needs the "admin" scope.
    """
    return reconcile.workspace_reconcile(actor=call.principal)


@tools.tool(
    input=NoArguments,
    output=GcOut,
    title="Collect garbage",
    hints=REPEATABLE_DESTROY,
)
def garbage_collect(call: ToolCall[Principal], args: NoArguments) -> reconcile.GcReport:
    """Remove the tenant's containers and volumes that no live workspace owns, now.

    For administrators (it also runs periodically): deletes leftovers of
    failed or interrupted operations and lists what was removed. Live
    workspaces are never touched. Needs the "admin" scope.
    """
    return reconcile.workspace_gc(actor=call.principal)
