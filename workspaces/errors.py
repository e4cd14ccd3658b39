"""Errors of workspaces, their policy and images (codes are part of the API)."""

from __future__ import annotations

from core.errors import (
    Conflict,
    EngineTimeout,
    EngineUnavailable,
    NotFound,
    PolicyDenied,
    QuotaExceeded,
    ValidationFailed,
    present,
)


class WorkspaceNotFound(NotFound):
    """Also what another tenant's workspace answers (no existence leak)."""

    code = "workspace_not_found"
    default_message = "Workspace not found."

    def __init__(self, ref: object = None) -> None:
        super().__init__(f"Workspace '{ref}' not found." if ref else None)


class WorkspaceNotRunning(Conflict):
    code = "workspace_not_running"

    def __init__(self, message: str, *, workspace_id: str, status: str) -> None:
        super().__init__(message, extra={"workspace_id": workspace_id, "status": status})


class WorkspaceNotStopped(Conflict):
    code = "workspace_not_stopped"

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message, extra={"status": status})


class WorkspaceQuotaExceeded(QuotaExceeded):
    code = "workspace_quota_exceeded"

    def __init__(self, message: str, *, limit: str, max: int, live: int) -> None:
        super().__init__(message, extra={"limit": limit, "max": max, "live": live})


class SpawnTimeout(EngineTimeout):
    code = "spawn_timeout"

    def __init__(self, message: str, *, workspace_id: str) -> None:
        super().__init__(message, extra={"workspace_id": workspace_id})


class InvalidAlias(ValidationFailed):
    code = "invalid_alias"


class AliasInUse(Conflict):
    code = "alias_in_use"
    default_message = "The alias already names a workspace."

    def __init__(self, message: str | None = None, *, alias: str | None = None) -> None:
        super().__init__(message, extra=present(alias=alias))


class PolicyLimitExceeded(PolicyDenied):
    """A requested limit above what the tenant policy allows."""

    code = "policy_denied"

    def __init__(self, message: str, *, limit: str, requested: object, max: object) -> None:
        super().__init__(message, extra={"limit": limit, "requested": requested, "max": max})


class InvalidLimits(ValidationFailed):
    code = "invalid_limits"

    def __init__(
        self,
        message: str,
        *,
        limit: str | None = None,
        min: object = None,
        unknown: list[str] | None = None,
    ) -> None:
        super().__init__(message, extra=present(limit=limit, min=min, unknown=unknown))


class InvalidTtl(ValidationFailed):
    code = "invalid_ttl"


class TtlWithPersistent(ValidationFailed):
    code = "ttl_with_persistent"


class InvalidImageReference(ValidationFailed):
    code = "invalid_image_reference"

    def __init__(self, message: str, *, image: str) -> None:
        super().__init__(message, extra={"image": image})


class ImageNotAllowed(PolicyDenied):
    code = "image_not_allowed"

    def __init__(self, message: str, *, image: str, allowed_images: list[str]) -> None:
        super().__init__(message, extra={"image": image, "allowed_images": allowed_images})


class DigestRequired(PolicyDenied):
    code = "digest_required"

    def __init__(self, message: str, *, image: str) -> None:
        super().__init__(message, extra={"image": image})


class ImageAndSnapshot(ValidationFailed):
    code = "image_and_snapshot"
    default_message = (
        "Give either an image or a snapshot, not both: a snapshot brings its own image."
    )


class ImageAndTemplate(ValidationFailed):
    code = "image_and_template"
    default_message = "Give one of image, snapshot or template: a template brings its own image."


class WorkspaceNotPaused(Conflict):
    code = "workspace_not_paused"

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message, extra={"status": status})


class WorkspaceResumeFailed(EngineUnavailable):
    """A paused workspace whose container cannot be thawed (node down, container gone)."""

    code = "workspace_resume_failed"

    def __init__(self, message: str, *, workspace_id: str, cause: str) -> None:
        super().__init__(message, extra={"workspace_id": workspace_id, "cause": cause})


class ImageNotScanned(PolicyDenied):
    """The policy only allows scanned images and this one has no report."""

    code = "image_not_scanned"

    def __init__(self, message: str, *, image: str, image_id: str, block_severity: str) -> None:
        super().__init__(
            message,
            extra={"image": image, "image_id": image_id, "block_severity": block_severity},
        )


class ImageVulnerable(PolicyDenied):
    """The image's scan report has findings at or above the policy's blocking severity."""

    code = "image_vulnerable"

    def __init__(
        self,
        message: str,
        *,
        image: str,
        image_id: str,
        block_severity: str,
        counts: dict[str, int],
        findings: list[str],
    ) -> None:
        super().__init__(
            message,
            extra={
                "image": image,
                "image_id": image_id,
                "block_severity": block_severity,
                "counts": counts,
                "findings": findings,
            },
        )
