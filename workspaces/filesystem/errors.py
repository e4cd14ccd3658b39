"""Errors of the filesystem service; each has a stable code clients branch on."""

from __future__ import annotations

from core.errors import (
    Conflict,
    DevBenchError,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ValidationFailed,
)


class InvalidPath(ValidationFailed):
    default_code = "invalid_path"
    default_message = "The path is not valid."


class PathOutsideWorkspace(PermissionDenied):
    """A path (or a symlink on the way) that leads outside /workspace: audited as a denial."""

    default_code = "path_outside_workspace"
    default_message = "The path leads outside the workspace."


class PathNotFound(NotFound):
    default_code = "not_found"
    default_message = "No such file or directory in the workspace."


class IsADirectory(Conflict):
    default_code = "is_a_directory"
    default_message = "The path is a directory."


class NotADirectory(Conflict):
    default_code = "not_a_directory"
    default_message = "A component of the path is not a directory."


class AlreadyExists(Conflict):
    default_code = "already_exists"
    default_message = "The path already exists."


class DirectoryNotEmpty(Conflict):
    default_code = "directory_not_empty"
    default_message = "The directory is not empty; delete it recursively."


class PathLocked(Conflict):
    default_code = "path_locked"
    default_message = "Another change to this path is in progress; retry."


class EtagMismatch(PreconditionFailed):
    default_code = "precondition_failed"
    default_message = "The file changed: its ETag no longer matches if_match_etag."


class FileTooLarge(DevBenchError):
    default_code = "file_too_large"
    default_status = 413
    default_message = "The file is larger than the tenant policy allows."


class InvalidArchive(ValidationFailed):
    default_code = "invalid_archive"
    default_message = "The archive cannot be extracted safely."


class NotUtf8(ValidationFailed):
    default_code = "not_utf8"
    default_message = "The content is not valid UTF-8; read it with encoding=base64."
