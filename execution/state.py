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
from typing import Any

from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from core import metrics
from core.queues import node_queue
from execution import notify
from execution.models import (
    SLOT_STATUSES,
    TERMINAL_STATUSES,
    Exec,
    ExecChunk,
    ExecStatus,
)
from execution.validation import redact_env
from usage.services import usage_exec_record
from workspaces.models import Workspace, WorkspaceStatus

logger = logging.getLogger(__name__)

NON_TERMINAL = (ExecStatus.QUEUED, ExecStatus.STARTING, ExecStatus.RUNNING)


# Queues one task about an exec: (exec pk, the queue of the exec's node).
Sender = Callable[[int, str], object]


@dataclass(frozen=True)
class Senders:
    """How the exec tasks are queued (``execution.tasks.SENDERS``; tests may record)."""

    run: Sender
    kill: Sender


def dispatch(exec_: Exec, *, senders: Senders) -> None:
    """Send the runner task to the workspace's node once the current transaction commits."""
    pk, queue = exec_.pk, node_queue(exec_.node)
    transaction.on_commit(lambda: senders.run(pk, queue))


def send_kill(exec_: Exec, *, senders: Senders) -> None:
    """Send the kill task (process tree of the exec) to its node once the transaction commits."""
    pk, queue = exec_.pk, node_queue(exec_.node)
    transaction.on_commit(lambda: senders.kill(pk, queue))


def lock_workspace(workspace_id: int) -> Workspace:
    # The tenant and its policy come along in the same query (read fresh, under the
    # lock: ``slot_limit``) but are not locked.
    return (
        Workspace.objects.select_related("tenant", "tenant__policy")
        .select_for_update(of=("self",))
        .get(pk=workspace_id)
    )


def admit_waiting(workspace: Workspace, *, senders: Senders) -> list[Exec]:
    """Start queued execs, oldest first, while slots are free. The workspace row must be locked.

    Queued execs of a workspace that is no longer running fail instead.
    """
    if workspace.status != WorkspaceStatus.RUNNING:
        for exec_ in Exec.objects.filter(workspace=workspace, status=ExecStatus.QUEUED):
            _finish_locked(
                exec_,
                ExecStatus.FAILED,
                from_statuses=(ExecStatus.QUEUED,),
                error_code="workspace_not_running",
                error=f"The workspace is {workspace.status}, not running.",
            )
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
    claimed = Exec.objects.filter(pk=exec_.pk, status=ExecStatus.STARTING).update(
        status=ExecStatus.RUNNING, started_at=now, heartbeat_at=now, worker=worker
    )
    if claimed:
        exec_.status, exec_.started_at, exec_.heartbeat_at, exec_.worker = (
            ExecStatus.RUNNING,
            now,
            now,
            worker,
        )
        notify.publish(exec_.public_id, last_seq=exec_.last_seq, status=exec_.status)
    return bool(claimed)


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
        done = _finish_locked(
            exec_,
            status,
            from_statuses=from_statuses,
            extra=extra,
            exit_code=exit_code,
            error_code=error_code,
            error=error,
            finished_at=finished_at,
            fields=fields,
        )
        if done:
            admit_waiting(workspace, senders=senders)
    return done


def end_run(
    exec_: Exec,
    status: ExecStatus,
    *,
    last_seq: int,
    extra: Q | None = None,
    exit_code: int | None = None,
    error_code: str = "",
    error: str = "",
    fields: dict[str, Any] | None = None,
    output: tuple[bytes, bytes] | None = None,
    senders: Senders,
) -> bool:
    """The runner's own end of its exec, which it has stored up to ``last_seq``: like
    :func:`finish`, with the caller waiting for the exec told first, and told all it
    needs (:func:`final_state`; ``output`` is the whole stored output, if the runner kept
    it) so it does not read the row or the output again.

    The terminal UPDATE (and the tenant's usage) commit without the workspace lock, and
    the listeners hear of it then; the freed slot goes to the next queued exec after
    that, under the lock, if any is queued. An exec created meanwhile counted this one
    as active under the lock, so it was refused, as it would have been a moment earlier,
    or it queued: then either this look finds it, or its insert was not visible yet and
    its creator looks again once it is (:func:`admit_after_queueing`). Locks are taken
    in the same order as everywhere else (this exec, then the usage row; never the
    workspace while holding them).
    """
    with transaction.atomic():
        done = _finish_locked(
            exec_,
            status,
            from_statuses=NON_TERMINAL,
            extra=extra,
            exit_code=exit_code,
            error_code=error_code,
            error=error,
            fields=fields,
            last_seq=last_seq,
            announce=lambda: final_state(exec_, output),
        )
    if (
        done
        and Exec.objects.filter(workspace_id=exec_.workspace_id, status=ExecStatus.QUEUED).exists()
    ):
        with transaction.atomic():
            admit_waiting(lock_workspace(exec_.workspace_id), senders=senders)
    return done


def admit_after_queueing(exec_: Exec, *, senders: Senders) -> None:
    """After queueing ``exec_`` (committed): admit it if a slot freed meanwhile.

    The exec that held the slot may have ended between this exec's count and its commit,
    and looked for queued execs before this one was visible (:func:`end_run`)."""
    with transaction.atomic():
        admitted = admit_waiting(lock_workspace(exec_.workspace_id), senders=senders)
    for other in admitted:
        if other.pk == exec_.pk:
            exec_.status, exec_.dispatched_at = other.status, other.dispatched_at


def _finish_locked(
    exec_: Exec,
    status: ExecStatus,
    *,
    from_statuses: Iterable[str],
    extra: Q | None = None,
    exit_code: int | None = None,
    error_code: str = "",
    error: str = "",
    finished_at: datetime | None = None,
    fields: dict[str, Any] | None = None,
    last_seq: int | None = None,
    announce: Callable[[], dict[str, Any]] | None = None,
) -> bool:
    assert status in TERMINAL_STATUSES
    now = finished_at or timezone.now()
    error = error[:10_000]
    env = redact_env(exec_.env or {})
    qs = Exec.objects.filter(pk=exec_.pk, status__in=list(from_statuses))
    if extra is not None:
        qs = qs.filter(extra)
    if last_seq is None:
        # The stored output is final now; a runner that died had not reported its last seqs.
        last_seq = ExecChunk.objects.filter(exec_id=exec_.pk).aggregate(m=Max("seq"))["m"] or 0
    done = qs.update(
        **{
            **(fields or {}),
            "last_seq": last_seq,
            "status": status,
            "exit_code": exit_code,
            "error_code": error_code,
            "error": error,
            "finished_at": now,
            "env": env,
        }
    )
    if done:
        for name, value in (fields or {}).items():
            setattr(exec_, name, value)
        exec_.status, exec_.exit_code, exec_.error_code, exec_.error = (
            status,
            exit_code,
            error_code,
            error,
        )
        exec_.finished_at, exec_.env, exec_.last_seq = now, env, last_seq
        _publish_on_commit(exec_, final=announce() if announce else None)
        started = exec_.started_at
        usage_exec_record(tenant_id=exec_.tenant_id, started_at=started, finished_at=now)
        metrics.EXEC_SECONDS.labels(status=str(status), tenant=metrics.tenant_label(exec_)).observe(
            max(0.0, (now - started).total_seconds()) if started else 0.0
        )
    return bool(done)


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
