"""Status transitions of an exec, each a conditional UPDATE.

Whoever's UPDATE matches first wins (runner, cancel, reconciliation), so an
exec ends in exactly one terminal state. Transitions that free or take a
slot lock the workspace row first (always workspace, then exec: no deadlock)
so the count of active execs is exact across processes.

Transitions that queue a task (admitting an exec sends its runner; losing one
sends a kill) take the ``Senders`` from their caller: this module never imports
the tasks, whose module imports the code that calls this one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from core import metrics
from core.model_sql import column_assignments
from core.prepared import PreparedGet
from core.queues import node_queue
from execution import notify
from execution.models import (
    SLOT_STATUSES,
    TERMINAL_STATUSES,
    Exec,
    ExecChunk,
    ExecStatus,
)
from execution.persist import chunk_rows, insert_chunks
from execution.runner_row import runner_row
from execution.validation import redact_env
from usage.services import usage_exec_record, usage_exec_record_sql
from workspaces.models import Workspace, WorkspaceStatus

logger = logging.getLogger(__name__)

NON_TERMINAL = (ExecStatus.QUEUED, ExecStatus.STARTING, ExecStatus.RUNNING)


# Queues one task about an exec: (exec pk, the queue of the exec's node).
Sender = Callable[[int, str], object]


class RunSender(Protocol):
    """Sends an exec's runner: (exec pk, its node's queue, the exec as the runner loads
    it when the sender has it: ``execution.runner_row``)."""

    def __call__(self, exec_pk: int, queue: str, row: dict[str, Any] | None = None) -> object: ...


@dataclass(frozen=True)
class Senders:
    """How the exec tasks are queued (``execution.tasks.SENDERS``; tests may record)."""

    run: RunSender
    kill: Sender


def dispatch(exec_: Exec, *, senders: Senders) -> None:
    """Send the runner task to the workspace's node once the current transaction commits
    (with the exec's rows when they are loaded: the runner need not read them again)."""
    pk, queue, row = exec_.pk, node_queue(exec_.node), runner_row(exec_)
    transaction.on_commit(lambda: senders.run(pk, queue, row))


def send_kill(exec_: Exec, *, senders: Senders) -> None:
    """Send the kill task (process tree of the exec) to its node once the transaction commits."""
    pk, queue = exec_.pk, node_queue(exec_.node)
    transaction.on_commit(lambda: senders.kill(pk, queue))


def lock_workspace(workspace_id: int) -> Workspace:
    # The tenant and its policy come along in the same query (read fresh, under the
    # lock: ``slot_limit``) but are not locked.
    workspace = LOCKED.get(id=workspace_id)
    if workspace is None:
        raise Workspace.DoesNotExist(f"No workspace {workspace_id}.")
    return workspace


# Taken by every exec's start and by every end that admits a queued one: compiled once.
LOCKED = PreparedGet(
    Workspace,
    "id",
    refine=lambda qs: qs.select_related("tenant", "tenant__policy").select_for_update(of=("self",)),
)


def admit_waiting(workspace: Workspace, *, senders: Senders) -> list[Exec]:
    """Start queued execs, oldest first, while slots are free. The workspace row must be locked.

    Queued execs of a workspace that is no longer running fail instead.
    """
    if workspace.status != WorkspaceStatus.RUNNING:
        for exec_ in Exec.objects.filter(workspace=workspace, status=ExecStatus.QUEUED):
            values = _terminal_values(
                exec_,
                ExecStatus.FAILED,
                exit_code=None,
                error_code="workspace_not_running",
                error=f"The workspace is {workspace.status}, not running.",
                finished_at=timezone.now(),
                fields=None,
                last_seq=_stored_last_seq(exec_),
            )
            _finish_locked(exec_, values, from_statuses=(ExecStatus.QUEUED,))
        return []
    waiting = Exec.objects.filter(workspace=workspace, status=ExecStatus.QUEUED)
    # The common case (nobody waiting) costs one query, not a count.
    if not waiting.exists():
        return []
    limit = slot_limit(workspace)
    active = Exec.objects.filter(workspace=workspace, status__in=SLOT_STATUSES).count()
    if active >= limit:
        return []
    admitted = []
    now = timezone.now()
    waiting = waiting.order_by("created_at", "id")[: limit - active]
    for exec_ in waiting:
        if Exec.objects.filter(pk=exec_.pk, status=ExecStatus.QUEUED).update(
            status=ExecStatus.STARTING, dispatched_at=now
        ):
            exec_.status, exec_.dispatched_at = ExecStatus.STARTING, now
            dispatch(exec_, senders=senders)
            _publish_on_commit(exec_)
            admitted.append(exec_)
    return admitted


def slot_limit(workspace: Workspace) -> int:
    """How many execs may run at once in a workspace locked by :func:`lock_workspace`."""
    return int(workspace.tenant.policy.max_concurrent_execs)


def claim(exec_: Exec, *, worker: str) -> bool:
    """starting -> running for exactly one runner; a re-delivered task gets False."""
    now = timezone.now()
    at = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_SQL,
            [str(ExecStatus.RUNNING), at, at, worker, exec_.pk, str(ExecStatus.STARTING)],
        )
        claimed = cursor.rowcount
    if claimed:
        exec_.status, exec_.started_at, exec_.heartbeat_at, exec_.worker = (
            ExecStatus.RUNNING,
            now,
            now,
            worker,
        )
        notify.publish(exec_.public_id, last_seq=exec_.last_seq, status=exec_.status)
    return bool(claimed)


# Every runner's start, beside the engine's creation of its exec (both want the GIL):
# plain SQL, PostgreSQL and SQLite alike.
_CLAIM_SQL = (
    f"UPDATE {Exec._meta.db_table} SET status = %s, started_at = %s, heartbeat_at = %s, "  # noqa: S608
    "worker = %s WHERE id = %s AND status = %s"
)


def finish(
    exec_: Exec,
    status: ExecStatus,
    *,
    from_statuses: Iterable[str] = NON_TERMINAL,
    extra: Q | None = None,
    exit_code: int | None = None,
    error_code: str = "",
    error: str = "",
    finished_at: datetime | None = None,
    fields: dict[str, Any] | None = None,
    senders: Senders,
) -> bool:
    """Move the exec to a terminal status unless another actor already did; frees its slot
    (admitting the next queued exec, whose runner ``senders`` sends).

    ``extra`` narrows the conditional UPDATE further (e.g. "heartbeat still stale");
    ``fields`` are more columns that UPDATE sets (the runner's output accounting).
    """
    with transaction.atomic():
        workspace = lock_workspace(exec_.workspace_id)
        values = _terminal_values(
            exec_,
            status,
            exit_code=exit_code,
            error_code=error_code,
            error=error,
            finished_at=finished_at or timezone.now(),
            fields=fields,
            last_seq=_stored_last_seq(exec_),
        )
        done = _finish_locked(exec_, values, from_statuses=from_statuses, extra=extra)
        if done:
            admit_waiting(workspace, senders=senders)
    return done


def end_run(
    exec_: Exec,
    status: ExecStatus,
    *,
    last_seq: int,
    unless_cancel_requested: bool = False,
    exit_code: int | None = None,
    error_code: str = "",
    error: str = "",
    fields: dict[str, Any] | None = None,
    output: tuple[bytes, bytes] | None = None,
    chunks: list[tuple[int, int, bytes]] | None = None,
    senders: Senders,
) -> bool:
    """The runner's own end of its exec, which it has stored up to ``last_seq``: like
    :func:`finish`, with the caller waiting for the exec told first, and told all it
    needs (:func:`final_state`; ``output`` is the whole stored output, if the runner kept
    it) so it does not read the row or the output again. ``unless_cancel_requested``:
    only if nobody has asked to cancel the exec. ``chunks``: output not stored yet
    (``OutputStore.take_held``), stored by the same statement, whether or not it ends
    the exec.

    The terminal UPDATE and the tenant's usage commit together (on PostgreSQL in one
    statement) without the workspace lock, and the listeners hear of it then; the freed
    slot goes to the next queued exec after that, under the lock, if any is queued. An
    exec created meanwhile counted this one as active under the lock, so it was refused,
    as it would have been a moment earlier, or it queued: then either this look finds
    it, or its insert was not visible yet and its creator looks again once it is
    (:func:`admit_after_queueing`). Locks are taken in the same order as everywhere else
    (this exec, then the usage row; never the workspace while holding them).
    """
    values = _terminal_values(
        exec_,
        status,
        exit_code=exit_code,
        error_code=error_code,
        error=error,
        finished_at=timezone.now(),
        fields=fields,
        last_seq=last_seq,
    )
    if connection.vendor == "postgresql":
        done = _end_in_one_statement(
            exec_, values, unless_cancel_requested=unless_cancel_requested, chunks=chunks or []
        )
        if done:
            _ended(exec_, values, final=lambda: final_state(exec_, output))
    else:
        with transaction.atomic():
            if chunks:
                insert_chunks(chunk_rows(exec_.pk, chunks))
            done = _finish_locked(
                exec_,
                values,
                from_statuses=NON_TERMINAL,
                extra=Q(cancel_requested_at__isnull=True) if unless_cancel_requested else None,
                final=lambda: final_state(exec_, output),
            )
    if done and _any_queued(exec_.workspace_id):
        with transaction.atomic():
            admit_waiting(lock_workspace(exec_.workspace_id), senders=senders)
    return done


def _end_in_one_statement(
    exec_: Exec,
    values: dict[str, Any],
    *,
    unless_cancel_requested: bool,
    chunks: list[tuple[int, int, bytes]],
) -> bool:
    """The terminal UPDATE of a non-terminal exec and its usage, with the insert of
    ``chunks``, in one statement: one round trip, atomic without a transaction around it
    (PostgreSQL). The chunks are inserted whether or not the UPDATE matches (a
    data-modifying WITH query always runs)."""
    meta = Exec._meta
    columns, params = _assignments(values)
    condition = "cancel_requested_at IS NULL" if unless_cancel_requested else "TRUE"
    seconds = _run_seconds(exec_.started_at, values["finished_at"])
    stored, stored_params = _chunks_insert(exec_.pk, chunks)
    sql = (
        f"WITH {stored}ended AS (UPDATE {meta.db_table} SET {', '.join(columns)} "  # noqa: S608
        f"WHERE id = %s AND status = ANY(%s) AND {condition} "
        "RETURNING tenant_id, %s::date AS day, %s::float8 AS seconds) "
        + usage_exec_record_sql("ended")
        + " RETURNING 1"
    )
    params = [
        *stored_params,
        *params,
        exec_.pk,
        [str(s) for s in NON_TERMINAL],
        values["finished_at"].date(),
        seconds,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None


def _assignments(values: dict[str, Any]) -> tuple[list[str], list[Any]]:
    """``column = %s`` for each of the exec's fields in ``values``, and their parameters."""
    return column_assignments(Exec, values)


def heartbeat(exec_pk: int, values: dict[str, Any]) -> bool:
    """Touch a running exec's heartbeat, with ``values`` (its runner's accounting), in one
    statement; True when its runner must stop its processes: a cancel was requested, or
    it no longer runs (someone else ended it, e.g. marked it lost after a long stall)."""
    columns, params = _assignments({"heartbeat_at": timezone.now(), **values})
    sql = (
        f"UPDATE {Exec._meta.db_table} SET {', '.join(columns)} "  # noqa: S608
        # The column itself: SQLite (3.40) evaluates `IS NOT NULL` in RETURNING wrongly.
        "WHERE id = %s AND status = %s RETURNING cancel_requested_at"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, exec_pk, str(ExecStatus.RUNNING)])
        row = cursor.fetchone()
    return row is None or row[0] is not None


def _chunks_insert(exec_pk: int, chunks: list[tuple[int, int, bytes]]) -> tuple[str, list[Any]]:
    """The WITH query inserting ``chunks`` (ending in a comma) and its parameters; none
    for no chunks."""
    if not chunks:
        return "", []
    meta = ExecChunk._meta
    column = {field.name: str(field.column) for field in meta.concrete_fields}
    names = ", ".join(column[name] for name in ("exec", "seq", "stream", "data"))
    rows = ", ".join(["(%s, %s, %s, %s)"] * len(chunks))
    params = [value for seq, stream, data in chunks for value in (exec_pk, seq, stream, data)]
    return f"stored AS (INSERT INTO {meta.db_table} ({names}) VALUES {rows}), ", params  # noqa: S608


def _any_queued(workspace_id: int) -> bool:
    """Whether an exec of the workspace waits for a slot (asked after every runner's end,
    while its end message is on its way: plain SQL, little time holding the GIL)."""
    with connection.cursor() as cursor:
        cursor.execute(_ANY_QUEUED_SQL, [workspace_id, str(ExecStatus.QUEUED)])
        return cursor.fetchone() is not None


_ANY_QUEUED_SQL = (
    f"SELECT 1 FROM {Exec._meta.db_table} WHERE workspace_id = %s AND status = %s LIMIT 1"  # noqa: S608
)


def _run_seconds(started_at: datetime | None, finished_at: datetime) -> float:
    return max(0.0, (finished_at - started_at).total_seconds()) if started_at else 0.0


def admit_after_queueing(exec_: Exec, *, senders: Senders) -> None:
    """After queueing ``exec_`` (committed): admit it if a slot freed meanwhile.

    The exec that held the slot may have ended between this exec's count and its commit,
    and looked for queued execs before this one was visible (:func:`end_run`)."""
    with transaction.atomic():
        admitted = admit_waiting(lock_workspace(exec_.workspace_id), senders=senders)
    for other in admitted:
        if other.pk == exec_.pk:
            exec_.status, exec_.dispatched_at = other.status, other.dispatched_at


def _terminal_values(
    exec_: Exec,
    status: ExecStatus,
    *,
    exit_code: int | None,
    error_code: str,
    error: str,
    finished_at: datetime,
    fields: dict[str, Any] | None,
    last_seq: int,
) -> dict[str, Any]:
    """The columns a terminal UPDATE sets (``fields``: more of them)."""
    assert status in TERMINAL_STATUSES
    return {
        **(fields or {}),
        "last_seq": last_seq,
        "status": status,
        "exit_code": exit_code,
        "error_code": error_code,
        "error": error[:10_000],
        "finished_at": finished_at,
        "env": redact_env(exec_.env or {}),
    }


def _finish_locked(
    exec_: Exec,
    values: dict[str, Any],
    *,
    from_statuses: Iterable[str],
    extra: Q | None = None,
    final: Callable[[], dict[str, Any]] | None = None,
) -> bool:
    """The terminal UPDATE (``values``) and the usage it adds, in the caller's transaction."""
    qs = Exec.objects.filter(pk=exec_.pk, status__in=list(from_statuses))
    if extra is not None:
        qs = qs.filter(extra)
    done = qs.update(**values)
    if done:
        _ended(exec_, values, final=final)
        usage_exec_record(
            tenant_id=exec_.tenant_id,
            started_at=exec_.started_at,
            finished_at=values["finished_at"],
        )
    return bool(done)


def _ended(
    exec_: Exec, values: dict[str, Any], *, final: Callable[[], dict[str, Any]] | None
) -> None:
    """Once ``exec_``'s terminal UPDATE matched: the instance takes its ``values``, the
    listeners hear of it once it is committed (``final``: what the message carries)."""
    for name, value in values.items():
        setattr(exec_, name, value)
    _publish_on_commit(exec_, final=final() if final else None)
    metrics.EXEC_SECONDS.labels(
        status=str(exec_.status), tenant=metrics.tenant_label(exec_)
    ).observe(_run_seconds(exec_.started_at, values["finished_at"]))


def _stored_last_seq(exec_: Exec) -> int:
    """The last stored seq: final once the exec ends (a runner that died had not reported
    its last seqs)."""
    return ExecChunk.objects.filter(exec_id=exec_.pk).aggregate(m=Max("seq"))["m"] or 0


def _publish_on_commit(exec_: Exec, *, final: dict[str, Any] | None = None) -> None:
    public_id, status = exec_.public_id, str(exec_.status)
    last_seq = exec_.last_seq
    transaction.on_commit(
        lambda: notify.publish(public_id, last_seq=last_seq, status=status, final=final)
    )


# The fields of an ended exec its runner announces with the end (all that an
# ``exec_run`` answer needs besides what the waiter already has), and the output if kept.
_FINAL_FIELDS = (
    *("exit_code", "error_code", "error", "worker"),
    *("stdout_bytes", "stderr_bytes", "first_seq", "truncated"),
)
_FINAL_TIMES = ("started_at", "finished_at")


def final_state(exec_: Exec, output: tuple[bytes, bytes] | None) -> dict[str, Any]:
    """What the runner's end message carries about the ended ``exec_``."""
    final: dict[str, Any] = {name: getattr(exec_, name) for name in _FINAL_FIELDS}
    for name in _FINAL_TIMES:
        when = getattr(exec_, name)
        final[name] = when.isoformat() if when is not None else None
    if output is not None:
        final["stdout"], final["stderr"] = output
    return final


def take_final_state(exec_: Exec, message: dict[str, Any]) -> bool:
    """Apply the runner's end ``message`` to ``exec_``; False (nothing applied) if the
    message is another actor's end, which carries no final state."""
    final = message.get("final")
    if not isinstance(final, dict):
        return False
    exec_.status, exec_.last_seq = message["status"], int(message["last_seq"])
    for name in _FINAL_FIELDS:
        setattr(exec_, name, final[name])
    for name in _FINAL_TIMES:
        when = final[name]
        setattr(exec_, name, datetime.fromisoformat(when) if when is not None else None)
    return True


def final_output(message: dict[str, Any]) -> tuple[bytes, bytes] | None:
    """The whole stored output a runner's end message carries (stdout, stderr), if any."""
    final = message.get("final")
    if not isinstance(final, dict) or "stdout" not in final:
        return None
    return bytes(final["stdout"]), bytes(final["stderr"])


def request_cancel(exec_: Exec) -> bool:
    """Flag a running exec for cancellation (its runner or the kill task acts on it)."""
    now = timezone.now()
    flagged = Exec.objects.filter(
        pk=exec_.pk, status__in=NON_TERMINAL, cancel_requested_at__isnull=True
    ).update(cancel_requested_at=now)
    if flagged:
        exec_.cancel_requested_at = now
    return bool(flagged)


def mark_lost(exec_: Exec, *, stale_after_s: float, senders: Senders) -> bool:
    """running -> lost if its heartbeat is still older than ``stale_after_s``; its processes
    are killed (the runner that stopped answering may still have them)."""
    cutoff = timezone.now() - timedelta(seconds=stale_after_s)
    lost = finish(
        exec_,
        ExecStatus.LOST,
        from_statuses=(ExecStatus.RUNNING,),
        extra=Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True),
        error_code="runner_lost",
        error=(
            f"The worker running this exec stopped answering (no heartbeat for "
            f"{stale_after_s:g} s); output stored until then is kept."
        ),
        senders=senders,
    )
    if lost:
        send_kill(exec_, senders=senders)
    return lost
