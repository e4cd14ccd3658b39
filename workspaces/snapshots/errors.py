"""The stable errors of snapshots (one class per code)."""

from __future__ import annotations

from core.errors import Conflict, NotFound, QuotaExceeded, ValidationFailed


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
