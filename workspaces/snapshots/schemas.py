"""Inputs and outputs of the snapshot operations, shared by REST and MCP."""

from __future__ import annotations

from datetime import datetime

from ninja import Field, Schema

from core.validation import InputModel, Line, QueryModel, Text
from workspaces.models import Snapshot
from workspaces.schemas import MAX_TTL_S, Alias, LimitsIn, SnapshotId, WorkspaceRef


class SnapshotCreateBody(InputModel):
    name: Line = Field("", max_length=100, description="Default: '<workspace> snapshot'.")
    description: Text = Field("", max_length=2000)


class SnapshotCreateIn(SnapshotCreateBody):
    container_id: WorkspaceRef = Field(description="Workspace id (ws_…) or alias.")


class SnapshotOut(Schema):
    id: str = Field(description="The snapshot id (sn_…).")
    name: str
    description: str
    status: str = Field(description="creating while it is captured, then ready.")
    source_workspace: str = Field(description="The workspace it was taken of (ws_…).")
    base_image: str = Field(description="The image that workspace ran.")
    size_bytes: int = Field(description="Bytes it adds to its base image: what quotas count.")
    node: str
    created_by: str | None
    created_at: datetime

    @staticmethod
    def resolve_id(obj: Snapshot) -> str:
        return obj.public_id

    @staticmethod
    def resolve_source_workspace(obj: Snapshot) -> str:
        return obj.source_workspace_public_id

    @staticmethod
    def resolve_base_image(obj: Snapshot) -> str:
        return obj.base_image_ref

    @staticmethod
    def resolve_created_by(obj: Snapshot) -> str | None:
        user = obj.created_by
        return user.get_username() if user is not None else None


class SnapshotListQuery(QueryModel):
    workspace: WorkspaceRef | None = Field(
        None, description="Only snapshots of this workspace (ws_…)."
    )


class SnapshotListIn(SnapshotListQuery):
    """MCP snapshot_list: the REST filter plus a size bound (MCP has no pagination)."""

    limit: int = Field(50, ge=1, le=500, description="At most this many, newest first.")


class SnapshotListOut(Schema):
    snapshots: list[SnapshotOut]
    truncated: bool = Field(description="More snapshots match than limit.")


class SnapshotDeleteIn(InputModel):
    snapshot_id: SnapshotId = Field(description="The snapshot id (sn_…).")


class SnapshotDeleteOut(Schema):
    snapshot_id: str
    deleted: bool


class ForkBody(InputModel):
    alias: Alias | None = Field(None, description="The copy's alias.")
    name: Line = Field("", max_length=100, description="Name of the snapshot the fork makes.")
    persistent: bool = False
    ttl_s: int | None = Field(None, ge=1, le=MAX_TTL_S)
    limits: LimitsIn | None = Field(None, description="Default: the source's limits.")
    wait: bool = Field(True, description="true: answer once the copy runs (201).")


class ForkIn(ForkBody):
    container_id: WorkspaceRef = Field(description="The workspace to copy: id (ws_…) or alias.")
