"""Inputs and outputs of the workspace operations, shared by REST and MCP.

Field names follow the MCP tools of the roadmap: ``spawn`` (image, alias,
persistent, ttl_s, idempotency_key), ``attach`` (target, client_name,
session_id → container_id, alias, roots), ``kill`` (container_id, force),
``container_stats`` (container_id). ``container_id`` is the workspace id
(``ws_…``); the engine's own container id is never exposed.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from ninja import Field, Schema

from workspaces.models import Workspace
from workspaces.runtime.base import ContainerStats

if TYPE_CHECKING:
    from workspaces.services import AttachResult


class LimitsIn(Schema):
    memory_mb: int | None = Field(None, ge=1, description="Memory limit in MiB (no swap).")
    cpus: float | None = Field(None, gt=0, description="CPU limit, 1.0 = one CPU.")
    pids: int | None = Field(None, ge=1, description="Most processes/threads at once.")


class LimitsOut(Schema):
    memory_mb: int
    cpus: float
    pids: int


class WorkspaceProgressOut(Schema):
    phase: str = Field(description="pulling: its image is being pulled onto its node.")
    image: str = Field(description="The image (or registry copy) being pulled.")
    layers_total: int = Field(description="Layers the engine has named so far.")
    layers_done: int = Field(description="Layers pulled or already on the node.")
    bytes_total: int = Field(
        description="Size of the layers whose download has started (grows as more start)."
    )
    bytes_done: int = Field(description="Bytes of those layers downloaded so far.")


class WorkspaceSpawnIn(Schema):
    image: str | None = Field(
        None,
        max_length=512,
        description="Image reference, e.g. devbench/busybox:latest or name@sha256:…; "
        "default: the tenant policy's default image.",
    )
    snapshot: str | None = Field(
        None,
        max_length=32,
        description="Spawn from this snapshot (sn_…) instead of an image: its image and its "
        "/workspace files, restored exactly.",
    )
    template: str | None = Field(
        None,
        max_length=63,
        description="Spawn from this template (its name: the newest ready version; or tp_…) "
        "instead of an image.",
    )
    alias: str | None = Field(None, max_length=63, description="A name unique among live ones.")
    persistent: bool = Field(
        False, description="Survives restarts and keeps its volume after a kill; never expires."
    )
    ttl_s: int | None = Field(None, ge=1, description="Seconds until it expires (ephemeral only).")
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Repeat a spawn safely: the same key returns the same workspace.",
    )
    limits: LimitsIn | None = Field(None, description="Ask for less than the policy's ceilings.")
    node_labels: dict[str, str] | None = Field(
        None,
        max_length=16,
        description='Labels the node must carry (besides the policy\'s), e.g. {"disk": "ssd"}.',
    )
    wait: bool = Field(
        True,
        description="true: answer once it runs (201); false: answer at once with status "
        "creating (202) and poll it.",
    )


class WorkspaceOut(Schema):
    id: str = Field(description="The workspace id (ws_…).")
    container_id: str = Field(description="Same as id: the name the MCP tools use.")
    alias: str | None
    image: str
    image_id: str
    status: str = Field(
        description="creating, running, paused (frozen after its idle timeout or on request; "
        "any operation on it resumes it), stopped, removing, removed, error, or unavailable "
        "(its node is down; it returns with its node)."
    )
    warm: bool = Field(
        description="true: served at once from the tenant's warm pool of started workspaces; "
        "false: created for this spawn."
    )
    error_code: str = Field(description="Why it is in error or stopped; empty otherwise.")
    status_message: str
    persistent: bool
    ttl_s: int | None
    expires_at: datetime | None
    node: str
    limits: LimitsOut | None
    progress: WorkspaceProgressOut | None = Field(
        None,
        description="While creating: what its node is doing (pulling its image, with layers "
        "and bytes); null otherwise.",
    )
    snapshot: str | None = Field(description="The snapshot it was spawned from (sn_…), if any.")
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_id(obj: Workspace) -> str:
        return obj.public_id

    @staticmethod
    def resolve_snapshot(obj: Workspace) -> str | None:
        return obj.snapshot.public_id if obj.snapshot_id and obj.snapshot else None

    @staticmethod
    def resolve_warm(obj: Workspace) -> bool:
        return bool(obj.warm)

    @staticmethod
    def resolve_container_id(obj: Workspace) -> str:
        return obj.public_id

    @staticmethod
    def resolve_image(obj: Workspace) -> str:
        return obj.image_ref

    @staticmethod
    def resolve_limits(obj: Workspace) -> dict[str, Any] | None:
        return obj.limits or None

    @staticmethod
    def resolve_progress(obj: Workspace) -> dict[str, Any] | None:
        return obj.progress or None


class WorkspaceListQuery(Schema):
    status: str | None = Field(None, description="Only workspaces in this status.")
    alias: str | None = None
    include_removed: bool = False


class WorkspaceAttachBody(Schema):
    client_name: str = Field("", max_length=200)
    session_id: str = Field("", max_length=200)


class WorkspaceAttachIn(WorkspaceAttachBody):
    target: str = Field(description="Workspace id (ws_…) or alias.", min_length=1, max_length=63)


class WorkspaceAttachOut(Schema):
    container_id: str
    alias: str | None
    roots: list[str]
    attachment_id: int
    status: str

    @classmethod
    def from_result(cls, result: AttachResult) -> WorkspaceAttachOut:
        return cls(
            container_id=result.workspace.public_id,
            alias=result.workspace.alias,
            roots=list(result.roots),
            attachment_id=result.attachment.pk,
            status=result.workspace.status,
        )


class WorkspaceKillIn(Schema):
    container_id: str = Field(description="Workspace id (ws_…) or alias.", min_length=1)
    force: bool = Field(False, description="Kill at once instead of stopping gracefully.")
    remove_volume: bool | None = Field(
        None, description="Default: remove it unless the workspace is persistent."
    )


class WorkspaceStatsIn(Schema):
    container_id: str = Field(description="Workspace id (ws_…) or alias.", min_length=1)


class WorkspacePauseIn(Schema):
    container_id: str = Field(description="Workspace id (ws_…) or alias.", min_length=1)


class WorkspaceResumeIn(Schema):
    container_id: str = Field(description="Workspace id (ws_…) or alias.", min_length=1)


class WorkspaceStatsOut(Schema):
    container_id: str
    cpu_percent: float = Field(description="100 = one full CPU, over the last second.")
    memory_usage_mb: float
    memory_limit_mb: float
    memory_percent: float
    network_rx_bytes: int
    network_tx_bytes: int
    block_read_bytes: int
    block_write_bytes: int
    pids: int
    timestamp: str

    @classmethod
    def from_stats(cls, workspace: Workspace, stats: ContainerStats) -> WorkspaceStatsOut:
        mib = 1024 * 1024
        return cls(
            container_id=workspace.public_id,
            cpu_percent=stats.cpu_percent,
            memory_usage_mb=round(stats.memory_used_bytes / mib, 3),
            memory_limit_mb=round(stats.memory_limit_bytes / mib, 3),
            memory_percent=round(stats.memory_percent, 2),
            network_rx_bytes=stats.network_rx_bytes,
            network_tx_bytes=stats.network_tx_bytes,
            block_read_bytes=stats.block_read_bytes,
            block_write_bytes=stats.block_write_bytes,
            pids=stats.pids,
            timestamp=stats.read_at,
        )


class ReconcileActionOut(Schema):
    workspace_id: str
    action: str
    detail: str


class ReconcileOut(Schema):
    node: str
    checked: int
    actions: list[ReconcileActionOut]


class GcOut(Schema):
    node: str
    containers_removed: list[str]
    volumes_removed: list[str]


class WorkspaceListIn(WorkspaceListQuery):
    """MCP list_containers: the REST list filters plus a size bound (MCP has no pagination)."""

    limit: int = Field(50, ge=1, le=500, description="At most this many, newest first.")


class WorkspaceListOut(Schema):
    workspaces: list[WorkspaceOut]
    truncated: bool = Field(description="More workspaces match than limit.")
