"""Tenant-scoped reads of execs and their output. Another tenant's exec is NotFound."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from core.pagination import Page, PageQuery, paginate
from core.prepared import PreparedGet
from core.validation import escape_unstorable, is_line
from execution.coalesce import encode
from execution.errors import ExecNotFound
from execution.models import Exec, ExecChunk, Stream
from tenants.principal import Principal
from tenants.selectors import tenant_ids_managed_by
from workspaces.models import Workspace
from workspaces.selectors import workspace_require_own

# One poll/websocket batch carries at most this much output (the client asks again).
MAX_BATCH_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ExecMessage:
    seq: int
    stream: str  # "stdout" | "stderr"
    data: str
    encoding: str  # "utf-8" | "base64"


def exec_message(*, seq: int, stream: int, data: bytes) -> ExecMessage:
    text, encoding = encode(data)
    return ExecMessage(seq, Stream(stream).label, text, encoding)


def exec_get(*, actor: Principal, exec_id: str, with_workspace: bool = True) -> Exec:
    """The actor's tenant's exec; ``with_workspace=False`` for callers that never read its
    workspace (the poll): no join, no workspace row built (``exec_.workspace`` would
    then cost a query)."""
    if not is_line(exec_id, max_length=64):  # no exec has such an id
        raise ExecNotFound(f"Exec '{escape_unstorable(exec_id)}' not found.")
    # Polled many times a second: the lookup is compiled once (core.prepared).
    lookup = _BY_PUBLIC_ID if with_workspace else _BY_PUBLIC_ID_ALONE
    exec_ = lookup.get(tenant_id=actor.tenant.pk, public_id=exec_id)
    if exec_ is None:
        raise ExecNotFound(f"Exec '{exec_id}' not found.")
    exec_.tenant = actor.tenant  # the lookup proved it; no join for it
    return exec_


_BY_PUBLIC_ID = PreparedGet(
    Exec, "tenant_id", "public_id", refine=lambda qs: qs.select_related("workspace")
)
_BY_PUBLIC_ID_ALONE = PreparedGet(Exec, "tenant_id", "public_id")


def exec_list(*, actor: Principal, workspace: Workspace) -> QuerySet[Exec]:
    workspace_require_own(actor=actor, workspace=workspace)
    return Exec.objects.select_related("workspace").filter(tenant=actor.tenant, workspace=workspace)


def exec_page(*, actor: Principal, workspace: Workspace, page: PageQuery) -> Page[Exec]:
    """One page of the workspace's execs, newest first (``core.pagination``)."""
    qs = exec_list(actor=actor, workspace=workspace)
    return paginate(qs, page=page, scope=f"exec_list:{actor.tenant.pk}:{workspace.pk}")


def exec_list_managed(*, user: Any) -> QuerySet[Exec]:
    """Execs of the tenants the user administers (the admin site); superusers see all."""
    qs = Exec.objects.select_related("workspace", "tenant")
    ids = tenant_ids_managed_by(user=user)
    return qs if ids is None else qs.filter(tenant_id__in=ids)


def exec_messages_after(
    *, exec_pk: int, after_seq: int, max_bytes: int = MAX_BATCH_BYTES
) -> list[ExecMessage]:
    """Stored chunks with seq > ``after_seq`` in order, up to ``max_bytes`` (at least one)."""
    messages: list[ExecMessage] = []
    total = 0
    cursor = after_seq
    rows_at_most = _FIRST_ROWS
    while True:
        rows = _chunks_within(
            exec_pk, cursor, budget=max_bytes - total, rows_at_most=rows_at_most, first=not messages
        )
        for seq, stream, data in rows:
            raw = bytes(data)
            messages.append(exec_message(seq=seq, stream=stream, data=raw))
            total += len(raw)
            cursor = seq
        if len(rows) < rows_at_most:
            return messages  # the budget is spent, or the output
        # All of them fit: output in small chunks (lines). Larger steps from now on.
        rows_at_most = min(rows_at_most * 4, _MAX_ROWS)


# A query of chunks looks at this many rows first, then four times as many at each step.
_FIRST_ROWS = 64
_MAX_ROWS = 4096


def _chunks_within(
    exec_pk: int, after_seq: int, *, budget: int, rows_at_most: int, first: bool
) -> list[tuple[int, int, bytes]]:
    """``(seq, stream, data)`` of the chunks after ``after_seq``, in order, among the next
    ``rows_at_most``, while their sizes add up to at most ``budget`` (``first``: the first
    chunk whatever its size). The database adds the sizes up (a chunk's length is known
    without reading its data): no chunk is fetched only to be left out, as a fixed number
    of rows was, up to four times what a batch holds."""
    table = connection.ops.quote_name(ExecChunk._meta.db_table)
    sql = (
        "SELECT seq, stream, data FROM ("  # noqa: S608 (the table's name, quoted)
        "SELECT seq, stream, data, SUM(LENGTH(data)) OVER (ORDER BY seq) AS upto, "
        "ROW_NUMBER() OVER (ORDER BY seq) AS n "
        f"FROM {table} WHERE exec_id = %s AND seq > %s ORDER BY seq LIMIT %s"
        ") AS next_chunks WHERE upto <= %s OR (n = 1 AND %s) ORDER BY seq"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [exec_pk, after_seq, rows_at_most, budget, first])
        return [(int(seq), int(stream), data) for seq, stream, data in cursor.fetchall()]


def exec_output(*, exec_pk: int) -> tuple[bytes, bytes]:
    """All stored output of an exec, per stream, joined (exec_run's result)."""
    out, err = bytearray(), bytearray()
    for stream, data in (
        ExecChunk.objects.filter(exec_id=exec_pk).order_by("seq").values_list("stream", "data")
    ).iterator(chunk_size=64):
        (err if stream == Stream.STDERR else out).extend(data)
    return bytes(out), bytes(err)
