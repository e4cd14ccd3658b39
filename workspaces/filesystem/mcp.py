"""MCP tools for files in a workspace: parse, call one service, format.

Every tool takes ``container_id`` (workspace id or alias) and a ``path``,
absolute under /workspace or relative to it; paths cannot leave /workspace
(``path_outside_workspace``), symlinks included. Content travels as UTF-8
text or base64. Files carry an ETag (sha256 of the content) for safe,
conditional writes and deletes (``if_match_etag`` → ``precondition_failed``).
"""

from __future__ import annotations

from core.mcp.tools import ADD, DESTROY, READ, REPEATABLE_DESTROY, ToolCall, ToolSet
from tenants.principal import Principal
from workspaces.filesystem import services
from workspaces.filesystem.results import (
    FileDeleteResult,
    FileStat,
    FileWriteResult,
    MkdirResult,
    MoveResult,
)
from workspaces.filesystem.schemas import (
    FsDeleteIn,
    FsDeleteOut,
    FsListIn,
    FsListOut,
    FsMkdirIn,
    FsMkdirOut,
    FsMoveIn,
    FsMoveOut,
    FsReadIn,
    FsReadOut,
    FsStatIn,
    FsStatOut,
    FsWriteIn,
    FsWriteOut,
)
from workspaces.models import Workspace
from workspaces.selectors import workspace_get

tools = ToolSet()


def _workspace(call: ToolCall[Principal], ref: str) -> Workspace:
    return workspace_get(actor=call.principal, ref=ref)


@tools.tool(
    input=FsReadIn,
    output=FsReadOut,
    title="Read a file",
    hints=READ,
)
def fs_read(call: ToolCall[Principal], args: FsReadIn) -> FsReadOut:
    """Read a file of a workspace, whole or a byte range (offset, length).

    Returns the content as UTF-8 text (encoding "utf-8", the default: a file
    that is not valid UTF-8 answers not_utf8, ask again with "base64") or
    base64, plus its size, its ETag (pass it as if_match_etag to fs_write or
    fs_delete to change it only if nobody else did) and a guessed MIME type.
    Files larger than the tenant's file size limit must be read in ranges
    (file_too_large). Missing paths answer not_found, directories
    is_a_directory. Needs "read".
    """
    result = services.fs_read(
        actor=call.principal,
        workspace=_workspace(call, args.container_id),
        path=args.path,
        offset=args.offset,
        length=args.length,
    )
    return FsReadOut.build(result, args.encoding)


@tools.tool(
    input=FsWriteIn,
    output=FsWriteOut,
    title="Write a file",
    hints=REPEATABLE_DESTROY,
)
def fs_write(call: ToolCall[Principal], args: FsWriteIn) -> FileWriteResult:
    """Create or replace a whole file atomically (readers never see half a file).

    content is the complete new content, UTF-8 text or base64 (encoding).
    Missing parent directories are created unless create_parents=false; mode
    sets permission bits (e.g. "0755" for a script; default: keep the file's,
    0644 when new). With if_match_etag the write happens only if the file
    still has that ETag ("*": only if it exists), else precondition_failed.
    Bounded by the tenant's file size limit (file_too_large). Returns the new
    ETag and size and whether the file was created. Needs "write".
    """
    return services.fs_write(
        actor=call.principal,
        workspace=_workspace(call, args.container_id),
        path=args.path,
        content=args.content_bytes(),
        if_match_etag=args.if_match_etag,
        mode=args.mode_bits(),
        create_parents=args.create_parents,
    )


@tools.tool(
    input=FsStatIn,
    output=FsStatOut,
    title="Describe a path",
    hints=READ,
)
def fs_stat(call: ToolCall[Principal], args: FsStatIn) -> FileStat:
    """Tell what is at a path: kind (file, dir, symlink, other), size, permissions,
    modification time, a symlink's target (not followed) and, for files, the ETag.

    The cheap way to check that a file exists or changed before reading it.
    A missing path answers not_found. Needs "read".
    """
    return services.fs_stat(
        actor=call.principal, workspace=_workspace(call, args.container_id), path=args.path
    )


@tools.tool(
    input=FsListIn,
    output=FsListOut,
    title="List a directory",
    hints=READ,
)
def fs_list(call: ToolCall[Principal], args: FsListIn) -> FsListOut:
    """List a directory's entries (default /workspace), in path order, with kind,
    size, permissions and modification time.

    recursive=true lists the whole tree. Answers a page: "items" (at most
    limit, default 1000), and while "has_more" call again with
    cursor=next_cursor. Each page costs about as much as reading the tree's
    names: list a subdirectory rather than walking a huge tree.
    Needs "read".
    """
    listing = services.fs_list(
        actor=call.principal,
        workspace=_workspace(call, args.container_id),
        path=args.path,
        recursive=args.recursive,
        limit=args.limit,
        cursor=args.cursor,
    )
    return FsListOut.of(listing)


@tools.tool(
    input=FsDeleteIn,
    output=FsDeleteOut,
    title="Delete a path",
    hints=DESTROY,
)
def fs_delete(call: ToolCall[Principal], args: FsDeleteIn) -> FileDeleteResult:
    """Delete a file, a symlink (never its target) or a directory.

    A non-empty directory needs recursive=true (else directory_not_empty).
    With if_match_etag a file is deleted only if it still has that ETag
    (precondition_failed otherwise). /workspace itself cannot be deleted.
    A missing path answers not_found. Needs "write".
    """
    return services.fs_delete(
        actor=call.principal,
        workspace=_workspace(call, args.container_id),
        path=args.path,
        recursive=args.recursive,
        if_match_etag=args.if_match_etag,
    )


@tools.tool(
    input=FsMkdirIn,
    output=FsMkdirOut,
    title="Make a directory",
    hints=ADD,
)
def fs_mkdir(call: ToolCall[Principal], args: FsMkdirIn) -> MkdirResult:
    """Create a directory. parents=true also creates missing parents and accepts an
    existing directory (like mkdir -p); otherwise an existing path answers
    already_exists and a missing parent not_found. Needs "write".
    """
    return services.fs_mkdir(
        actor=call.principal,
        workspace=_workspace(call, args.container_id),
        path=args.path,
        parents=args.parents,
    )


@tools.tool(
    input=FsMoveIn,
    output=FsMoveOut,
    title="Move or rename",
    hints=DESTROY,
)
def fs_move(call: ToolCall[Principal], args: FsMoveIn) -> MoveResult:
    """Rename or move a file, directory or symlink atomically within the workspace.

    The destination's parent must exist. An existing destination answers
    already_exists unless overwrite=true, which replaces a file (never a
    directory). Needs "write".
    """
    return services.fs_move(
        actor=call.principal,
        workspace=_workspace(call, args.container_id),
        path=args.path,
        destination=args.destination,
        overwrite=args.overwrite,
    )
