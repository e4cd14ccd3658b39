"""The stable errors of snapshots (one class per code)."""

from __future__ import annotations

from core.errors import Conflict, NotFound, QuotaExceeded, ValidationFailed


class SnapshotNotFound(NotFound):
    default_code = "snapshot_not_found"
    default_status = 404
    default_message = "Snapshot not found."


class SnapshotNotReady(Conflict):
    default_code = "snapshot_not_ready"
    default_status = 409
    default_message = "The snapshot is still being captured."


class SnapshotInUse(Conflict):
    default_code = "snapshot_in_use"
    default_status = 409
    default_message = "A live workspace was spawned from this snapshot; kill it first."


class SnapshotQuotaExceeded(QuotaExceeded):
    default_code = "snapshot_quota_exceeded"
    default_status = 429
    default_message = "The tenant has as many snapshots as its policy allows."


class SnapshotStorageQuotaExceeded(QuotaExceeded):
    default_code = "snapshot_storage_quota_exceeded"
    default_status = 429
    default_message = "The tenant's snapshots use all the storage its policy allows."


class SnapshotInvalid(ValidationFailed):
    default_code = "invalid_snapshot"
    default_status = 422
    default_message = "The snapshot's name or description is not valid."
