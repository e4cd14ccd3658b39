"""What the workers do with execs: run one, kill what is left of one, reconcile.

The Celery tasks (``execution.tasks``) call these and hand in the ``Senders``
the state transitions need to queue follow-up tasks. Callers' actions (start,
poll, cancel, run) are in ``execution.services``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.prepared import PreparedGet
from execution import state
from execution.models import Exec, ExecStatus
from execution.proctree import kill_process_tree
from execution.runner import exec_user, run_exec
from execution.runner_row import runner_exec
from execution.state import Senders
from workspaces.nodes import workspace_driver


def exec_execute(
    *, exec_pk: int, senders: Senders, worker: str = "", row: dict[str, Any] | None = None
) -> None:
    """Run an admitted exec to its end (the runner task). Safe to call twice: only the
    call that moves it from starting to running runs it. ``row``: the exec as its
    starter had it (``execution.runner_row``), instead of reading it again."""
    exec_ = runner_exec(row, exec_pk=exec_pk) if row is not None else None
    if exec_ is None:
        exec_ = _WITH_POLICY.get(id=exec_pk)
    if exec_ is None or exec_.status != ExecStatus.STARTING:
        return
    run_exec(exec_, senders=senders, worker=worker)


# The runner's load, one per exec: compiled once.
_WITH_POLICY = PreparedGet(
    Exec, "id", refine=lambda qs: qs.select_related("workspace", "tenant", "tenant__policy")
)


def exec_kill_processes(*, exec_pk: int) -> None:
    """Kill what is left of an exec in its container (cancel, or a lost runner's exec)."""
    exec_ = Exec.objects.select_related("workspace").filter(pk=exec_pk).first()
    if exec_ is None or not exec_.workspace.container_id:
        return
    if exec_.status not in (ExecStatus.RUNNING, ExecStatus.LOST):
        return
    kill_process_tree(
        driver=workspace_driver(exec_.workspace),
        container_id=exec_.workspace.container_id,
        exec_public_id=exec_.public_id,
        user=exec_user(exec_),
    )


def exec_lose_node(*, node: str, senders: Senders) -> list[str]:
    """The node went down: its running (and claimed) execs end ``lost`` at once; the
    output stored until then stays readable. Queued ones fail when admitted."""
    lost = []
    for exec_ in Exec.objects.filter(
        node=node, status__in=(ExecStatus.STARTING, ExecStatus.RUNNING)
    ):
        if state.finish(
            exec_,
            ExecStatus.LOST,
            from_statuses=(ExecStatus.STARTING, ExecStatus.RUNNING),
            error_code="node_unavailable",
            error=f"Node '{node}' went down while this exec ran; output stored until then is kept.",
            senders=senders,
        ):
            lost.append(exec_.public_id)
    return lost


@dataclass(frozen=True)
class ReconcileReport:
    lost: list[str]
    redispatched: list[str]
    admitted: list[str]


def exec_reconcile(*, senders: Senders, stale_after_s: float | None = None) -> ReconcileReport:
    """Periodic repair: running execs without a heartbeat become ``lost``; starting ones no
    worker claimed get their task again; queued ones are admitted where slots are free."""
    stale = float(
        stale_after_s if stale_after_s is not None else settings.DEVBENCH_EXEC_STALE_AFTER_S
    )
    now = timezone.now()
    lost: list[str] = []
    for exec_ in Exec.objects.filter(
        status=ExecStatus.RUNNING, heartbeat_at__lt=now - timedelta(seconds=stale)
    ):
        if state.mark_lost(exec_, stale_after_s=stale, senders=senders):
            lost.append(exec_.public_id)
    redispatched: list[str] = []
    redispatch_cutoff = now - timedelta(seconds=settings.DEVBENCH_EXEC_REDISPATCH_AFTER_S)
    for exec_ in Exec.objects.filter(
        status=ExecStatus.STARTING, dispatched_at__lt=redispatch_cutoff
    ):
        with transaction.atomic():
            if Exec.objects.filter(pk=exec_.pk, status=ExecStatus.STARTING).update(
                dispatched_at=now
            ):
                state.dispatch(exec_, senders=senders)
                redispatched.append(exec_.public_id)
    admitted: list[str] = []
    workspace_ids = set(
        Exec.objects.filter(status=ExecStatus.QUEUED).values_list("workspace_id", flat=True)
    )
    for workspace_id in workspace_ids:
        with transaction.atomic():
            locked = state.lock_workspace(workspace_id)
            admitted += [e.public_id for e in state.admit_waiting(locked, senders=senders)]
    return ReconcileReport(lost=lost, redispatched=redispatched, admitted=admitted)
