"""Errors of the filesystem service; each has a stable code clients branch on."""

from __future__ import annotations

from core.errors import (
    Conflict,
    DevBenchError,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ValidationFailed,
    present,
)


class InvalidPath(ValidationFailed):
    code = "invalid_path"
    default_message = "The path is not valid."

    def __init__(
        self, message: str | None = None, *, path: str | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message, extra=present(path=path, reason=reason))


class PathOutsideWorkspace(PermissionDenied):
    """A path (or a symlink on the way) that leads outside /workspace: audited as a denial."""

    code = "path_outside_workspace"
    default_message = "The path leads outside the workspace."

    def __init__(
        self,
        message: str | None = None,
        *,
        path: str | None = None,
        symlink: str | None = None,
        target: str | None = None,
    ) -> None:
        super().__init__(message, extra=present(path=path, symlink=symlink, target=target))


class PathNotFound(NotFound):
    code = "not_found"
    default_message = "No such file or directory in the workspace."

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message, extra={"path": path})


class IsADirectory(Conflict):
    code = "is_a_directory"
    default_message = "The path is a directory."

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message, extra={"path": path})


class NotADirectory(Conflict):
    code = "not_a_directory"
    default_message = "A component of the path is not a directory."

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message, extra={"path": path})


class AlreadyExists(Conflict):
    code = "already_exists"
    default_message = "The path already exists."

    def __init__(self, message: str, *, path: str, kind: str) -> None:
        super().__init__(message, extra={"path": path, "kind": kind})


class DirectoryNotEmpty(Conflict):
    code = "directory_not_empty"
    default_message = "The directory is not empty; delete it recursively."

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message, extra={"path": path})


class PathLocked(Conflict):
    code = "path_locked"
    default_message = "Another change to this path is in progress; retry."

    def __init__(self, *, paths: list[str] | None = None) -> None:
        super().__init__(extra=present(paths=paths))


class EtagMismatch(PreconditionFailed):
    code = "precondition_failed"
    default_message = "The file changed: its ETag no longer matches if_match_etag."

    def __init__(self, message: str | None = None, *, path: str, current_etag: str | None) -> None:
        super().__init__(message, extra={"path": path, "current_etag": current_etag})


class FileTooLarge(DevBenchError):
    code = "file_too_large"
    http_status = 413
    default_message = "The file is larger than the tenant policy allows."

    def __init__(
        self,
        *,
        limit_bytes: int,
        size_bytes: int | None = None,
        hint: str | None = None,
        reason: str | None = None,
        member: str | None = None,
    ) -> None:
        super().__init__(
            f"The content is larger than the tenant's limit of {limit_bytes} bytes.",
            extra=present(
                limit_bytes=limit_bytes,
                hint=hint,
                reason=reason,
                member=member,
                size_bytes=size_bytes,
            ),
        )


class InvalidArchive(ValidationFailed):
    code = "invalid_archive"
    default_message = "The archive cannot be extracted safely."

    def __init__(self, message: str, *, reason: str, member: str | None = None) -> None:
        super().__init__(message, extra=present(member=member, reason=reason))


class NotUtf8(ValidationFailed):
    code = "not_utf8"
    default_message = "The content is not valid UTF-8; read it with encoding=base64."

    def __init__(self, *, offset: int) -> None:
        super().__init__(extra={"offset": offset})


class InvalidMode(ValidationFailed):
    code = "invalid_mode"


class InvalidRange(ValidationFailed):
    code = "invalid_range"


class InvalidContent(ValidationFailed):
    code = "invalid_content"


class InvalidBase64(ValidationFailed):
    code = "invalid_base64"
    default_message = "content is not valid base64."


class FileRequired(ValidationFailed):
    code = "file_required"


class FormPathNotFound(DevBenchError):
    """A path typed into a form that does not exist: a message on the form's page.

    Not a ``NotFound``: web views answer those with a 404 page, which is right only
    for what the URL names (tenant, workspace).
    """

    code = PathNotFound.code
    http_status = PathNotFound.http_status

    def __init__(self, missing: PathNotFound) -> None:
        super().__init__(missing.message, extra=missing.extra)
