"""The one list contract of REST and MCP: ``limit`` + opaque ``cursor`` in, one page out.

Request (a REST query string, or MCP tool arguments — the same names):

* ``limit``: at most this many items (default :data:`DEFAULT_LIMIT`, at most
  :data:`MAX_LIMIT`; directory listings allow more, see ``workspaces.filesystem``).
* ``cursor``: the ``next_cursor`` of the previous page; absent for the first page.

Response: ``{"items": [...], "next_cursor": "..." | null, "has_more": bool}``
(a list may add fields of its own, such as the listed ``path``). ``has_more``
is true exactly when ``next_cursor`` is set.

Rows are listed newest first and paged by keyset on ``(created_at, id)``: a page
starts strictly after the last row of the previous one, so rows created while a
client walks the pages never shift, repeat or hide the rows it has yet to see.

A cursor is signed (``SECRET_KEY``) and bound to the list it came from — the
tenant and, where a list belongs to a workspace, that workspace. Any other
cursor, tampered, truncated or another tenant's, answers ``invalid_cursor``
(422) and reveals nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from django.core import signing
from django.db.models import Model, Q, QuerySet
from ninja import Field, Schema
from pydantic import ValidationError

from core.errors import InvalidCursor, InvalidLimit
from core.validation import Line, QueryModel

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# Signed cursors are short; anything longer is not one of ours.
MAX_CURSOR_LENGTH = 1000

LIMIT_HELP = f"At most this many items (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})."
CURSOR_HELP = (
    "The next_cursor of the previous page, to continue a listing; omit it for the first page."
)

T = TypeVar("T")
M = TypeVar("M", bound=Model)


def limit_check(limit: int, *, max_limit: int = MAX_LIMIT) -> None:
    if not 1 <= limit <= max_limit:
        raise InvalidLimit(
            f"limit must be between 1 and {max_limit}.", extra={"min": 1, "max": max_limit}
        )


class PageQuery(QueryModel):
    """The request half of the contract: a REST query string or MCP tool arguments."""

    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=LIMIT_HELP)
    cursor: Line | None = Field(
        None, min_length=1, max_length=MAX_CURSOR_LENGTH, description=CURSOR_HELP
    )


def page_from_query(params: Mapping[str, str], *, limit: int = DEFAULT_LIMIT) -> PageQuery:
    """The page a web page's query string asks for (``?cursor=``): a malformed cursor is
    ``invalid_cursor``, as on the API, never a 500."""
    try:
        return PageQuery(limit=limit, cursor=params.get("cursor") or None)
    except ValidationError:
        raise InvalidCursor() from None


class PageOut(Schema, Generic[T]):
    """The response half: one envelope for every list. A list names its own subclass
    (``WorkspaceListOut(PageOut[WorkspaceOut])``) so schemas read well."""

    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as cursor to get the next page; null on the last page."
    )
    has_more: bool = Field(description="More items follow (next_cursor is set).")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


def cursor_encode(position: Sequence[Any], *, scope: str) -> str:
    """An opaque, signed cursor for ``position`` that only ``scope`` accepts."""
    return signing.Signer(salt=f"devbench.cursor:{scope}").sign_object(list(position))


def cursor_decode(cursor: str, *, scope: str) -> list[Any]:
    """The position signed into ``cursor`` for ``scope``, or :class:`InvalidCursor`."""
    try:
        position = signing.Signer(salt=f"devbench.cursor:{scope}").unsign_object(cursor)
    except (signing.BadSignature, ValueError, UnicodeError):
        raise InvalidCursor() from None
    if not isinstance(position, list):
        raise InvalidCursor()
    return position


def paginate(qs: QuerySet[M], *, page: PageQuery, scope: str) -> Page[M]:
    """One page of ``qs``, newest first, keyset on ``(created_at, pk)``.

    ``scope`` names the list and everything that bounds it (the tenant, the
    workspace): a cursor is only accepted by the list it came from.
    """

    def fetch(after: tuple[datetime, int] | None, count: int) -> list[M]:
        return list(newest_first(qs, after=after)[:count])

    return paginate_with(fetch, page=page, scope=scope)


def newest_first(qs: QuerySet[M], *, after: tuple[Any, Any] | None) -> QuerySet[M]:
    """``qs`` in list order, strictly after the ``(created_at, pk)`` position if given."""
    if after is not None:
        created, pk = after
        qs = qs.filter(Q(created_at__lt=created) | Q(created_at=created, pk__lt=pk))
    return qs.order_by("-created_at", "-pk")


def paginate_with(
    fetch: Callable[[tuple[datetime, int] | None, int], list[M]], *, page: PageQuery, scope: str
) -> Page[M]:
    """:func:`paginate` with the query left to ``fetch(after, count)``: at most ``count``
    rows newest first (``-created_at, -pk``), strictly after ``(created_at, pk)`` when
    ``after`` is given. For lists whose query is compiled once (``core.prepared``)."""
    after = None if page.cursor is None else _keyset(cursor_decode(page.cursor, scope=scope))
    rows = fetch(after, page.limit + 1)
    if len(rows) <= page.limit:
        return Page(rows, None)
    last = rows[page.limit - 1]
    position = [last.created_at.isoformat(), last.pk]  # type: ignore[attr-defined]
    return Page(rows[: page.limit], cursor_encode(position, scope=scope))


def page_map(page: Page[M], build: Callable[[M], T]) -> Page[T]:
    """The same page with each row turned into its output (``ExecOut.from_exec``)."""
    return Page([build(row) for row in page.items], page.next_cursor)


def _keyset(position: list[Any]) -> tuple[datetime, int]:
    # Signed by us, so well-formed unless the format changed between releases.
    try:
        created, pk = position
        return datetime.fromisoformat(created), int(pk)
    except (TypeError, ValueError):
        raise InvalidCursor() from None
