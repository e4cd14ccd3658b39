"""The stable errors of snapshots (one class per code)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.errors import Conflict, NotFound, QuotaExceeded, ValidationFailed

if TYPE_CHECKING:
    from workspaces.models import Snapshot


class SnapshotNotFound(NotFound):
    code = "snapshot_not_found"
    http_status = 404
    default_message = "Snapshot not found."


class SnapshotNotReady(Conflict):
    code = "snapshot_not_ready"
    http_status = 409
    default_message = "The snapshot is still being captured."


class SnapshotInUse(Conflict):
    code = "snapshot_in_use"
    http_status = 409
    default_message = "A live workspace was spawned from this snapshot; kill it first."

    @classmethod
    def spawned_from(cls, snapshot: Snapshot, workspaces: list[str]) -> SnapshotInUse:
        return cls(
            f"Workspaces {', '.join(workspaces)} were spawned from snapshot "
            f"'{snapshot.public_id}'; kill them first.",
            extra={"snapshot_id": snapshot.public_id, "workspaces": workspaces},
        )


class SnapshotQuotaExceeded(QuotaExceeded):
    code = "snapshot_quota_exceeded"
    http_status = 429
    default_message = "The tenant has as many snapshots as its policy allows."


class SnapshotStorageQuotaExceeded(QuotaExceeded):
    code = "snapshot_storage_quota_exceeded"
    http_status = 429
    default_message = "The tenant's snapshots use all the storage its policy allows."


class SnapshotInvalid(ValidationFailed):
    code = "invalid_snapshot"
    http_status = 422
    default_message = "The snapshot's name or description is not valid."
