"""Inputs and outputs of the workspace operations, shared by REST and MCP.

Field names follow the MCP tools of the roadmap: ``spawn`` (image, alias,
persistent, ttl_s, idempotency_key), ``attach`` (target, client_name,
session_id → container_id, alias, roots), ``kill`` (container_id, force),
``container_stats`` (container_id). ``container_id`` is the workspace id
(``ws_…``); the engine's own container id is never exposed.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import StringConstraints

from core.pagination import PageOut, PageQuery
from core.validation import LINE_PATTERN, MAX_INT32, InputModel, Line
from workspaces.models import Workspace
from workspaces.runtime.base import ContainerStats

if TYPE_CHECKING:
    from workspaces.services import AttachResult

# A workspace id (ws_…) or alias, in a path or an argument.
WorkspaceRef = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=LINE_PATTERN)]
# The alias rule of workspaces.models.ALIAS_VALIDATOR; 'ws_' names ids.
# Spelled without look-ahead (the Rust engine has none): one character, or a name not
# starting with 'w', or 'w' + not 's', or 'ws' + not '_'.
Alias = Annotated[
    str,
    StringConstraints(
        pattern=r"^(?:[a-z0-9]|[a-vx-z0-9][a-z0-9_.-]{0,61}[a-z0-9]"
        r"|w(?:[a-z0-9]|[a-rt-z0-9_.-][a-z0-9_.-]{0,60}[a-z0-9]"
        r"|s(?:[a-z0-9]|[a-z0-9.-][a-z0-9_.-]{0,59}[a-z0-9])))$"
    ),
]
# Snapshot ids (sn_…) and template references (a name, or a tp_… id): the name
# rule (workspaces.models.TEMPLATE_NAME_VALIDATOR) also admits every tp_ id.
SnapshotId = Annotated[str, StringConstraints(pattern=r"^sn_[a-z0-9]{1,29}$")]
TemplateRef = Annotated[str, StringConstraints(pattern=r"^[a-z0-9](?:[a-z0-9_.-]{0,61}[a-z0-9])?$")]
# Every WorkspaceStatus (a filter on a status that exists must not be refused).
WorkspaceStatusName = Literal[
    "creating", "running", "paused", "stopped", "removing", "removed", "error", "unavailable"
]
# Ten years: beyond any policy's max_ttl_s, within what a date can hold.
MAX_TTL_S = 10 * 365 * 86400


class LimitsIn(InputModel):
    memory_mb: int | None = Field(
        None, ge=1, le=MAX_INT32, description="Memory limit in MiB (no swap)."
    )
    cpus: float | None = Field(None, gt=0, le=1024, description="CPU limit, 1.0 = one CPU.")
    pids: int | None = Field(
        None, ge=1, le=MAX_INT32, description="Most processes/threads at once."
    )


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


class WorkspaceSpawnIn(InputModel):
    image: Line | None = Field(
        None,
        min_length=1,
        max_length=512,
        description="Image reference, e.g. devbench/busybox:latest or name@sha256:…; "
        "default: the tenant policy's default image.",
    )
    snapshot: SnapshotId | None = Field(
        None,
        description="Spawn from this snapshot (sn_…) instead of an image: its image and its "
        "/workspace files, restored exactly.",
    )
    template: TemplateRef | None = Field(
        None,
        description="Spawn from this template (its name: the newest ready version; or tp_…) "
        "instead of an image.",
    )
    alias: Alias | None = Field(
        None,
        description="A name unique among live ones: 1-63 lowercase letters, digits, '.', "
        "'_' or '-', starting and ending with a letter or digit, not starting with 'ws_'.",
    )
    persistent: bool = Field(
        False, description="Survives restarts and keeps its volume after a kill; never expires."
    )
    ttl_s: int | None = Field(
        None,
        ge=1,
        le=MAX_TTL_S,
        description="Seconds until it expires (ephemeral only); at most the policy's max_ttl_s.",
    )
    idempotency_key: Line | None = Field(
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


class WorkspaceListQuery(PageQuery):
    """REST query and MCP list_containers arguments alike: filters plus the page."""

    status: WorkspaceStatusName | None = Field(None, description="Only workspaces in this status.")
    alias: Line | None = Field(None, max_length=63)
    include_removed: bool = False


class WorkspaceAttachBody(InputModel):
    client_name: Line = Field("", max_length=200)
    session_id: Line = Field("", max_length=200)


class WorkspaceAttachIn(WorkspaceAttachBody):
    target: WorkspaceRef = Field(description="Workspace id (ws_…) or alias.")


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


class WorkspaceKillIn(InputModel):
    container_id: WorkspaceRef = Field(description="Workspace id (ws_…) or alias.")
    force: bool = Field(False, description="Kill at once instead of stopping gracefully.")
    remove_volume: bool | None = Field(
        None, description="Default: remove it unless the workspace is persistent."
    )


class WorkspaceStatsIn(InputModel):
    container_id: WorkspaceRef = Field(description="Workspace id (ws_…) or alias.")


class WorkspacePauseIn(InputModel):
    container_id: WorkspaceRef = Field(description="Workspace id (ws_…) or alias.")


class WorkspaceResumeIn(InputModel):
    container_id: WorkspaceRef = Field(description="Workspace id (ws_…) or alias.")


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


class WorkspaceListOut(PageOut[WorkspaceOut]):
    """A page of workspaces, newest first (REST workspace_list, MCP list_containers)."""
