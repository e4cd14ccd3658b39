"""REST: /api/v1/workspaces/{ref}/files and /archive. Parse, call one service, format.

Large bodies never travel whole: ``encoding=raw`` reads and the archive
download stream out; a raw (non-JSON) ``PUT .../files`` and archive uploads
are read from the request in chunks (the service spools them, unless the
server holds the whole body to its length; large ones arrive while the view
runs).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import pydantic
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse
from ninja import Query, Router
from ninja.errors import HttpError
from ninja.errors import ValidationError as NinjaValidationError

from core.errors import InvalidJson
from core.validation import MAX_SAFE_INT, json_loads_strict
from tenants.api import principal_of
from tenants.selectors import tenant_policy_get
from workspaces.filesystem import services
from workspaces.filesystem.errors import FileTooLarge, InvalidMode
from workspaces.filesystem.responses import archive_response, file_response
from workspaces.filesystem.schemas import (
    PATH_HELP,
    ArchiveUploadOut,
    Etag,
    FsDeleteOut,
    FsDeleteQuery,
    FsListOut,
    FsListQuery,
    FsMkdirBody,
    FsMkdirOut,
    FsMoveBody,
    FsMoveOut,
    FsMutablePath,
    FsPath,
    FsReadOut,
    FsReadQuery,
    FsStatOut,
    FsWriteBody,
    FsWriteOut,
    OctalMode,
    fs_list_json,
    parse_mode,
)
from workspaces.filesystem.tario import CHUNK, Received
from workspaces.models import Workspace
from workspaces.schemas import WorkspaceRef
from workspaces.selectors import workspace_get

router = Router(tags=["files"])

FILES = "/workspaces/{ref}/files"
ARCHIVE = "/workspaces/{ref}/archive"
PATH_QUERY = Query(..., description=PATH_HELP)
LIST_PATH_QUERY = Query("/workspace", description=PATH_HELP)
ETAG_QUERY = Query(None, description="For raw bodies (or use If-Match).")
MODE_QUERY = Query(None, description="For raw bodies: octal permission bits.")

_RAW_BODY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
_TAR_BODY = {
    "application/x-tar": {"schema": {"type": "string", "format": "binary"}},
    "application/gzip": {"schema": {"type": "string", "format": "binary"}},
}
_WRITE_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": FsWriteBody.model_json_schema()},
            **_RAW_BODY,
        },
    }
}


def _workspace(request: HttpRequest, ref: str) -> Workspace:
    return workspace_get(actor=principal_of(request), ref=ref)


def _body_chunks(request: HttpRequest) -> Iterator[bytes]:
    while chunk := request.read(CHUNK):
        yield chunk


def _raw_body(request: HttpRequest) -> Received | Iterator[bytes]:
    """An ASGI server holds the body to its ``Content-Length`` (stored whole before the
    view runs, or, for a large upload, arriving while it runs: core/streamed_body.py):
    the service sends it on from there instead of spooling a copy. Other bodies are
    read in chunks (and spooled)."""
    length = request.META.get("CONTENT_LENGTH", "")
    if isinstance(request, ASGIRequest) and length.isdigit():
        return Received(reader=request, size=int(length))
    return _body_chunks(request)


def _if_match(request: HttpRequest, given: str | None) -> str | None:
    return given if given is not None else request.headers.get("If-Match")


def _json_body(request: HttpRequest, *, limit: int) -> FsWriteBody:
    """A JSON body read in chunks, refused once it passes ``limit`` bytes."""
    data = bytearray()
    for chunk in _body_chunks(request):
        data += chunk
        if len(data) > limit:
            raise FileTooLarge(
                limit_bytes=limit, hint="send large files as application/octet-stream"
            )
    try:
        parsed = json_loads_strict(bytes(data))
    except (ValueError, RecursionError):
        # Answered (and audited) like every other unreadable body.
        raise HttpError(400, InvalidJson.default_message) from InvalidJson()
    try:
        return FsWriteBody.model_validate(parsed)
    except pydantic.ValidationError as exc:
        raise NinjaValidationError(
            [dict(e, loc=("body", *e["loc"])) for e in exc.errors(include_url=False)]
        ) from exc


@router.get(
    FILES,
    response=FsReadOut,
    operation_id="fs_read",
    openapi_extra={"responses": {"200": {"content": _RAW_BODY}}},
)
def fs_read(
    request: HttpRequest,
    response: HttpResponse,
    ref: WorkspaceRef,
    path: FsPath = PATH_QUERY,
    encoding: Literal["utf-8", "text", "base64", "raw"] = "utf-8",
    offset: int = Query(0, ge=0, le=MAX_SAFE_INT),
    length: int | None = Query(None, ge=0, le=MAX_SAFE_INT),
) -> Any:
    """Read a file. JSON (utf-8 or base64, within the policy's file size) or, with
    ``encoding=raw``, the bytes themselves, streamed, of any size. ``ETag`` is the
    sha256 of the whole file."""
    workspace = _workspace(request, ref)
    if encoding == "raw":
        stream = services.fs_read_stream(
            actor=principal_of(request),
            workspace=workspace,
            path=path,
            offset=offset,
            length=length,
        )
        return file_response(stream)
    query = FsReadQuery(encoding=encoding, offset=offset, length=length)
    result = services.fs_read(
        actor=principal_of(request),
        workspace=workspace,
        path=path,
        offset=query.offset,
        length=query.length,
    )
    response["ETag"] = f'"{result.etag}"'
    return FsReadOut.build(result, query.encoding)


@router.put(FILES, response=FsWriteOut, operation_id="fs_write", openapi_extra=_WRITE_DOC)
def fs_write(
    request: HttpRequest,
    response: HttpResponse,
    ref: WorkspaceRef,
    path: FsPath = PATH_QUERY,
    if_match_etag: Etag | None = ETAG_QUERY,
    mode: OctalMode | None = MODE_QUERY,
    create_parents: bool = True,
) -> Any:
    """Replace or create a file atomically: a JSON body ``{content, encoding,
    if_match_etag, mode, create_parents}``, or the raw bytes
    (``application/octet-stream``, streamed, any size within the policy)."""
    actor = principal_of(request)
    workspace = _workspace(request, ref)
    content: bytes | Iterator[bytes] | Received
    content_type = request.content_type or ""
    if content_type == "application/json" or content_type.endswith("+json"):
        limit = tenant_policy_get(tenant=actor.tenant).max_file_size_bytes * 4 // 3 + 65536
        body = _json_body(request, limit=limit)
        content, etag, bits, parents = (
            body.content_bytes(),
            body.if_match_etag,
            body.mode_bits(),
            body.create_parents,
        )
    else:
        try:
            bits = parse_mode(mode)
        except ValueError as exc:
            raise InvalidMode(str(exc)) from exc
        content, etag, parents = _raw_body(request), if_match_etag, create_parents
    result = services.fs_write(
        actor=actor,
        workspace=workspace,
        path=path,
        content=content,
        if_match_etag=_if_match(request, etag),
        mode=bits,
        create_parents=parents,
    )
    response["ETag"] = f'"{result.etag}"'
    return result


@router.delete(FILES, response=FsDeleteOut, operation_id="fs_delete")
def fs_delete(
    request: HttpRequest,
    ref: WorkspaceRef,
    query: Query[FsDeleteQuery],
    path: FsMutablePath = PATH_QUERY,
) -> Any:
    """Delete a file, a symlink (not its target) or a directory (``recursive`` if not empty).
    ``if_match_etag`` (or ``If-Match``) makes it conditional."""
    return services.fs_delete(
        actor=principal_of(request),
        workspace=_workspace(request, ref),
        path=path,
        recursive=query.recursive,
        if_match_etag=_if_match(request, query.if_match_etag),
    )


@router.get(f"{FILES}/stat", response=FsStatOut, operation_id="fs_stat")
def fs_stat(
    request: HttpRequest, response: HttpResponse, ref: WorkspaceRef, path: FsPath = PATH_QUERY
) -> Any:
    """What is at a path (a final symlink is described, not followed); files carry an ETag."""
    result = services.fs_stat(
        actor=principal_of(request), workspace=_workspace(request, ref), path=path
    )
    if result.etag:
        response["ETag"] = f'"{result.etag}"'
    return result


@router.get(f"{FILES}/list", response=FsListOut, operation_id="fs_list")
def fs_list(
    request: HttpRequest,
    ref: WorkspaceRef,
    query: Query[FsListQuery],
    path: FsPath = LIST_PATH_QUERY,
) -> Any:
    """A page of a directory's entries (its whole tree with ``recursive``), in path order:
    `limit`, and `cursor` = the previous page's `next_cursor`."""
    listing = services.fs_list(
        actor=principal_of(request),
        workspace=_workspace(request, ref),
        path=path,
        recursive=query.recursive,
        limit=query.limit,
        cursor=query.cursor,
    )
    return HttpResponse(fs_list_json(listing), content_type="application/json")


@router.post(f"{FILES}/mkdir", response=FsMkdirOut, operation_id="fs_mkdir")
def fs_mkdir(request: HttpRequest, ref: WorkspaceRef, payload: FsMkdirBody) -> Any:
    """Create a directory (``parents``: also missing parents, and an existing one is fine)."""
    return services.fs_mkdir(
        actor=principal_of(request),
        workspace=_workspace(request, ref),
        path=payload.path,
        parents=payload.parents,
    )


@router.post(f"{FILES}/move", response=FsMoveOut, operation_id="fs_move")
def fs_move(request: HttpRequest, ref: WorkspaceRef, payload: FsMoveBody) -> Any:
    """Rename a file, directory or symlink atomically; ``overwrite`` replaces a file."""
    return services.fs_move(
        actor=principal_of(request),
        workspace=_workspace(request, ref),
        path=payload.path,
        destination=payload.destination,
        overwrite=payload.overwrite,
    )


@router.get(
    ARCHIVE,
    operation_id="fs_download_archive",
    openapi_extra={"responses": {"200": {"description": "A tar stream.", "content": _TAR_BODY}}},
)
def fs_download_archive(request: HttpRequest, ref: WorkspaceRef, path: FsPath = PATH_QUERY) -> Any:
    """Download a file or directory as a tar stream (names start with its base name)."""
    download = services.fs_download_archive(
        actor=principal_of(request), workspace=_workspace(request, ref), path=path
    )
    return archive_response(download)


_UPLOAD_DOC = {"requestBody": {"required": True, "content": _TAR_BODY}}


@router.put(
    ARCHIVE, response=ArchiveUploadOut, operation_id="fs_upload_archive", openapi_extra=_UPLOAD_DOC
)
def fs_upload_archive(request: HttpRequest, ref: WorkspaceRef, path: FsPath = PATH_QUERY) -> Any:
    """Extract a tar archive (plain, gzip, bzip2 or xz) into a directory, made if missing.
    The whole archive is checked first: a refused member leaves the workspace untouched."""
    return _upload(request, ref, path)


@router.post(
    ARCHIVE,
    response=ArchiveUploadOut,
    operation_id="fs_upload_archive_post",
    openapi_extra=_UPLOAD_DOC,
)
def fs_upload_archive_post(
    request: HttpRequest, ref: WorkspaceRef, path: FsPath = PATH_QUERY
) -> Any:
    """The same as ``PUT``, for clients that only POST."""
    return _upload(request, ref, path)


def _upload(request: HttpRequest, ref: str, path: str) -> Any:
    return services.fs_upload_archive(
        actor=principal_of(request),
        workspace=_workspace(request, ref),
        path=path,
        archive=_body_chunks(request),
    )
