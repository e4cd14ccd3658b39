"""Input and output models of the file operations, shared by REST and MCP.

Field names follow the MCP roadmap (path, content, encoding, if_match_etag,
offset/length, recursive, limit/cursor). ``encoding`` is ``utf-8`` (alias
``text``) or ``base64``. Outputs are built from the services' results with
``Out.from_orm(result)``.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Annotated, Literal

from ninja import Field, Schema
from pydantic import AfterValidator, GetJsonSchemaHandler, StringConstraints, field_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from core.fastjson import dumps
from core.pagination import PageOut, PageQuery
from core.validation import MAX_SAFE_INT, InputModel, Line, QueryModel, Text
from workspaces.filesystem.errors import InvalidBase64, InvalidContent, NotUtf8
from workspaces.filesystem.paths import PATH_MAX, ROOT
from workspaces.filesystem.reads import DEFAULT_LIST_ENTRIES, MAX_LIST_ENTRIES
from workspaces.filesystem.results import DirListing, FileContent
from workspaces.schemas import WorkspaceRef

Encoding = Literal["utf-8", "text", "base64"]

# A path in the workspace (the service normalises it and keeps it under the root).
FsPath = Annotated[Text, StringConstraints(min_length=1, max_length=PATH_MAX)]
# What normalises to the workspace root itself (which cannot be deleted or moved).
ROOT_SPELLINGS = r"^(/workspace)?(/|/?\.)*/?$"
_ROOT_RE = re.compile(ROOT_SPELLINGS[1:-1])


def _not_root(path: str) -> str:
    if _ROOT_RE.fullmatch(path):
        raise ValueError(f"The workspace root ({ROOT}) itself cannot be deleted or moved")
    return path


class _NotRootSchema:
    """The same rule in the published schema: ``not`` one of the root's spellings."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["not"] = {"pattern": ROOT_SPELLINGS}
        return schema


FsMutablePath = Annotated[FsPath, AfterValidator(_not_root), _NotRootSchema()]
Etag = Annotated[Line, StringConstraints(min_length=1, max_length=200)]
# Permission bits as an octal string: '644', '0644' or '0o644'.
OctalMode = Annotated[str, StringConstraints(pattern=r"^(0[oO]?)?[0-7]{1,3}$")]

PATH_HELP = f"Path in the workspace: absolute under {ROOT}, or relative to it."
ROOT_HELP = f"Not the workspace root ({ROOT}) itself."
ETAG_HELP = (
    "Only act if the file's current ETag (sha256 of its content, from fs_read/fs_stat) "
    "is this one; '*' means 'any existing file'. A mismatch is precondition_failed (412)."
)


def encode_content(data: bytes, encoding: Encoding) -> str:
    if encoding == "base64":
        return base64.b64encode(data).decode("ascii")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotUtf8(offset=exc.start) from exc


def decode_content(content: str, encoding: Encoding) -> bytes:
    if encoding == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidBase64("content is not valid base64.") from exc
    try:
        return content.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidContent(
            "content holds text that is not valid Unicode; send it as base64."
        ) from exc


def parse_mode(value: int | str | None) -> int | None:
    """Permission bits as an int (420) or an octal string ('644', '0644', '0o644')."""
    if value is None or isinstance(value, int):
        result = value
    else:
        text = value.strip().lower().removeprefix("0o")
        try:
            result = int(text, 8)
        except ValueError as exc:
            raise ValueError("mode must be octal permission bits such as '0644'") from exc
    if result is not None and not 0 <= result <= 0o777:
        raise ValueError("mode must be between 0 and 0o777 (no setuid/setgid/sticky bits)")
    return result


class FsReadQuery(QueryModel):
    encoding: Encoding = Field(
        "utf-8", description="How content is returned: utf-8 text or base64."
    )
    offset: int = Field(0, ge=0, le=MAX_SAFE_INT, description="First byte to return.")
    length: int | None = Field(
        None, ge=0, le=MAX_SAFE_INT, description="Bytes to return (default: to the end)."
    )


class _FsReadArgs(FsReadQuery):
    path: FsPath = Field(..., description=PATH_HELP)


class FsReadOut(Schema):
    path: str
    content: str
    encoding: Literal["utf-8", "base64"]
    etag: str = Field(..., description="sha256 of the whole file's content.")
    size: int = Field(..., description="Size of the whole file in bytes.")
    offset: int
    length: int = Field(..., description="Bytes returned in content.")
    mime_type: str | None

    @classmethod
    def build(cls, result: FileContent, encoding: Encoding) -> FsReadOut:
        wire: Literal["utf-8", "base64"] = "base64" if encoding == "base64" else "utf-8"
        return cls(
            path=result.path,
            content=encode_content(result.content, wire),
            encoding=wire,
            etag=result.etag,
            size=result.size,
            offset=result.offset,
            length=result.length,
            mime_type=result.mime_type,
        )


class FsWriteBody(InputModel):
    content: str = Field(
        ...,
        description="The whole new content, in `encoding` (utf-8 text may hold any "
        "character, NUL included; it is file content, never stored elsewhere).",
    )
    encoding: Encoding = "utf-8"
    if_match_etag: Etag | None = Field(None, description=ETAG_HELP)
    mode: Annotated[int, Field(ge=0, le=0o777)] | OctalMode | None = Field(
        None,
        description="Permission bits, e.g. '0644' or 420; default: keep the file's (new: 0644).",
    )
    create_parents: bool = Field(True, description="Create missing parent directories.")

    @field_validator("mode")
    @classmethod
    def _check_mode(cls, value: int | str | None) -> int | None:
        return parse_mode(value)

    def content_bytes(self) -> bytes:
        return decode_content(self.content, self.encoding)

    def mode_bits(self) -> int | None:
        return parse_mode(self.mode)


class _FsWriteArgs(FsWriteBody):
    path: FsPath = Field(..., description=PATH_HELP)


class FsWriteOut(Schema):
    path: str
    etag: str
    size: int
    mode: int
    created: bool


class _FsPathArgs(InputModel):
    path: FsPath = Field(..., description=PATH_HELP)


class FsStatOut(Schema):
    path: str
    name: str
    kind: Literal["file", "dir", "symlink", "other"]
    is_dir: bool
    size: int
    permissions: str = Field(..., description="Octal permission bits, e.g. '0644'.")
    mtime: datetime | None
    link_target: str | None = Field(None, description="A symlink's text (it is not followed).")
    etag: str | None = Field(None, description="Files only: sha256 of the content.")
    mime_type: str | None = None


class FsListQuery(PageQuery):
    recursive: bool = Field(False, description="List the whole tree, not just direct entries.")
    # Entries are small and each page re-reads the tree's names: larger pages than rows.
    limit: int = Field(
        DEFAULT_LIST_ENTRIES,
        ge=1,
        le=MAX_LIST_ENTRIES,
        description=f"At most this many entries (default {DEFAULT_LIST_ENTRIES}, "
        f"at most {MAX_LIST_ENTRIES}).",
    )


class _FsListArgs(FsListQuery):
    path: FsPath = Field(ROOT, description=PATH_HELP)


class FsEntryOut(Schema):
    name: str
    path: str
    kind: Literal["file", "dir", "symlink", "other"]
    is_dir: bool
    size: int
    permissions: str
    mtime: datetime | None
    link_target: str | None = None


class FsListOut(PageOut[FsEntryOut]):
    """A page of a directory's entries in path order (REST and MCP fs_list)."""

    path: str = Field(description="The listed directory (symlinks resolved).")

    @classmethod
    def of(cls, listing: DirListing) -> FsListOut:
        """The page built from the service's own typed values, without validating each
        entry again: validation took ~16 ms of a 1,000-entry page (bench/README.md).
        tests/filesystem/test_fs_api.py checks it equals the validated page."""
        entry = FsEntryOut.model_construct
        return cls.model_construct(
            path=listing.path,
            next_cursor=listing.next_cursor,
            has_more=listing.has_more,
            items=[
                entry(
                    name=e.name,
                    path=e.path,
                    kind=e.kind,
                    is_dir=e.is_dir,
                    size=e.size,
                    permissions=e.permissions,
                    mtime=e.mtime,
                    link_target=e.link_target,
                )
                for e in listing.items
            ],
        )


def _iso(when: datetime | None) -> str | None:
    """A datetime as every REST answer spells it (Django's JSON encoder: milliseconds,
    ``Z`` for UTC)."""
    if when is None:
        return None
    text = when.isoformat()
    if when.microsecond:
        text = text[:23] + text[26:]
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def fs_list_json(listing: DirListing) -> bytes:
    """The REST page (``FsListOut``) encoded straight from the service's values. Building
    a model per entry, then encoding each entry's datetime through Django's encoder, was
    a quarter of a 1,000-entry listing's web CPU (bench/README.md);
    tests/filesystem/test_list_page.py checks the bytes equal the validated page's.

    The files of a tree often share their times (a checkout, an unpacked archive), and
    the service hands out one datetime per distinct time: each is spelled once."""
    spelled: dict[datetime | None, str | None] = {}

    def mtime(when: datetime | None) -> str | None:
        text = spelled.get(when)
        if text is None:
            text = spelled[when] = _iso(when)
        return text

    return dumps(
        {
            "items": [
                {
                    "name": e.name,
                    "path": e.path,
                    "kind": e.kind,
                    "is_dir": e.is_dir,
                    "size": e.size,
                    "permissions": e.permissions,
                    "mtime": mtime(e.mtime),
                    "link_target": e.link_target,
                }
                for e in listing.items
            ],
            "next_cursor": listing.next_cursor,
            "has_more": listing.has_more,
            "path": listing.path,
        }
    )


class FsDeleteQuery(QueryModel):
    recursive: bool = Field(False, description="Delete a non-empty directory and its contents.")
    if_match_etag: Etag | None = Field(None, description=ETAG_HELP)


class _FsDeleteArgs(FsDeleteQuery):
    path: FsMutablePath = Field(..., description=PATH_HELP + " " + ROOT_HELP)


class FsDeleteOut(Schema):
    path: str
    kind: str
    status: Literal["deleted"]


class FsMkdirBody(InputModel):
    path: FsPath = Field(..., description=PATH_HELP)
    parents: bool = Field(
        False, description="Create missing parents; an existing directory is fine."
    )


class FsMkdirOut(Schema):
    path: str
    created: bool


class FsMoveBody(InputModel):
    path: FsMutablePath = Field(..., description="What to move. " + PATH_HELP + " " + ROOT_HELP)
    destination: FsMutablePath = Field(
        ..., description="Its new path (the parent must exist). " + ROOT_HELP
    )
    overwrite: bool = Field(False, description="Replace an existing file (never a directory).")


class FsMoveOut(Schema):
    path: str = Field(..., description="The new path.")
    source: str
    kind: str


class ArchiveUploadOut(Schema):
    path: str
    files: int
    directories: int
    symlinks: int
    hardlinks: int
    bytes: int = Field(..., description="File content extracted, in bytes.")


# --- MCP tool arguments: the REST inputs plus the workspace they act on ---------------


class _WorkspaceArgs(InputModel):
    container_id: WorkspaceRef = Field(..., description="Workspace id (ws_…) or alias.")


class FsReadIn(_FsReadArgs, _WorkspaceArgs):
    pass


class FsWriteIn(_FsWriteArgs, _WorkspaceArgs):
    pass


class FsStatIn(_FsPathArgs, _WorkspaceArgs):
    pass


class FsListIn(_FsListArgs, _WorkspaceArgs):
    pass


class FsDeleteIn(_FsDeleteArgs, _WorkspaceArgs):
    pass


class FsMkdirIn(FsMkdirBody, _WorkspaceArgs):
    pass


class FsMoveIn(FsMoveBody, _WorkspaceArgs):
    pass
