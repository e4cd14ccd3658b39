"""An exec that can start at once, admitted in one round trip to the database.

Admitting an exec (``execution.services``) locks its workspace's row, counts the
execs holding or waiting for a slot, inserts the exec and commits: five round
trips to PostgreSQL from the web process (BEGIN, the lock, the count, the
insert, COMMIT), 4 to 5 ms of an exec's round trip before its runner hears of it
(bench/README.md). In the common case (the workspace runs, a slot is free,
nobody waits for one) the same work goes as two statements pipelined in one
implicit transaction (PostgreSQL commits it at the pipeline's Sync): the
workspace's lock, then an ``INSERT … SELECT`` whose conditions are the
admission's rules. Under READ COMMITTED each statement reads a snapshot taken
when it starts, so the count in the second one, taken under the lock, sees
every exec committed before it, exactly like the count of the general path.
When a condition fails nothing is written and the caller takes the general path,
which decides (queues, refuses, resumes a paused workspace, reports why).

Only on PostgreSQL, outside any transaction of the caller's (its commit must be
the pipeline's own), and without an idempotency key (whose unique constraint the
general path handles). The two statements go on the connection's own psycopg
cursors, as ``execution.persist.insert_chunks`` does: Django's cursor has no
pipeline, so they are not in Django's query log.
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.db import connection

from execution import state
from execution.models import SLOT_STATUSES, Exec, ExecStatus
from tenants.models import TenantPolicy
from workspaces.models import Workspace, WorkspaceStatus


def exec_start_now(exec_: Exec, *, workspace: Workspace) -> bool:
    """Insert ``exec_`` (unsaved, ``starting``) if it can start at once in ``workspace``;
    True if it was (``exec_`` is then saved, with its workspace, tenant and policy as
    read under the lock); False if nothing was written."""
    if (
        connection.vendor != "postgresql"
        or not connection.get_autocommit()
        or exec_.idempotency_key is not None
        or workspace.status != WorkspaceStatus.RUNNING
        or not psycopg.Pipeline.is_supported()
    ):
        return False
    lock_sql, lock_params = state.LOCKED.statement(id=workspace.pk)
    insert_sql, insert_params = _insert(exec_, workspace_id=workspace.pk)
    with connection.wrap_database_errors:
        connection.ensure_connection()
        raw = connection.connection
        with psycopg.Cursor(raw) as locking, psycopg.Cursor(raw) as inserting:
            with raw.pipeline():
                locking.execute(lock_sql, lock_params)
                inserting.execute(insert_sql, insert_params)
            # Synced: both statements ran and their implicit transaction committed.
            locked_rows = locking.fetchall()
            inserted = inserting.fetchone()
    if inserted is None or not locked_rows:
        return False
    locked = state.LOCKED.built(locked_rows)[0]
    exec_.pk, exec_.node = inserted[0], locked.node
    exec_._state.adding, exec_._state.db = False, connection.alias
    Exec.workspace.field.set_cached_value(exec_, locked)
    Exec.tenant.field.set_cached_value(exec_, locked.tenant)
    return True


def _insert(exec_: Exec, *, workspace_id: int) -> tuple[str, list[Any]]:
    """The ``INSERT … SELECT`` of ``exec_`` that inserts nothing unless the workspace
    runs, nobody waits for a slot and one is free; the exec's node is the workspace's."""
    quote = connection.ops.quote_name
    columns, values, params = [], [], []
    for field in Exec._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(quote(str(field.column)))
        if field.attname == "node":
            values.append("w.node")
            continue
        values.append("%s")
        params.append(field.get_db_prep_save(field.pre_save(exec_, add=True), connection))
    exec_table, ws_table = quote(Exec._meta.db_table), quote(Workspace._meta.db_table)
    policy_table = quote(TenantPolicy._meta.db_table)
    slots = ", ".join(["%s"] * len(SLOT_STATUSES))
    sql = (
        f"INSERT INTO {exec_table} ({', '.join(columns)}) "  # noqa: S608
        f"SELECT {', '.join(values)} FROM {ws_table} w "
        "WHERE w.id = %s AND w.status = %s AND w.container_id <> '' "
        f"AND NOT EXISTS (SELECT 1 FROM {exec_table} q "
        "WHERE q.workspace_id = w.id AND q.status = %s) "
        f"AND (SELECT count(*) FROM {exec_table} a "
        f"WHERE a.workspace_id = w.id AND a.status IN ({slots})) "
        f"< (SELECT p.max_concurrent_execs FROM {policy_table} p WHERE p.tenant_id = w.tenant_id) "
        "RETURNING id"
    )
    params += [
        workspace_id,
        str(WorkspaceStatus.RUNNING),
        str(ExecStatus.QUEUED),
        *(str(status) for status in SLOT_STATUSES),
    ]
    return sql, params
