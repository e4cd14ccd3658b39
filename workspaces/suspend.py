"""Pause on idle, resume on use.

Pausing freezes the container (``docker pause``, the cgroup freezer): its
processes stay in memory, stopped where they were, and its files stay on its
volume. Resuming thaws it; nothing restarts. Every operation on a workspace
(exec, files, shell, attach, stats, snapshot, stop) passes through
:func:`workspace_ready`, which resumes a paused workspace transparently and
records the activity that idle pausing counts from.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.errors import DevBenchError
from tenants.audit import audit_record, audited
from tenants.models import AuditEvent, TenantPolicy
from tenants.principal import Principal, system_principal
from usage.services import usage_run_sync
from workspaces.errors import WorkspaceNotPaused, WorkspaceResumeFailed
from workspaces.models import Workspace, WorkspaceStatus
from workspaces.nodes import workspace_driver
from workspaces.selectors import workspace_require_own, workspace_require_running

# Activity is written at most this often per workspace (operations may come in bursts).
ACTIVITY_RESOLUTION_S = 5


def _lock(workspace: Workspace) -> Workspace:
    return Workspace.objects.select_for_update(of=("self",)).get(pk=workspace.pk)


def _pause_row(row: Workspace) -> None:
    workspace_driver(row).pause(row.container_id)
    row.status, row.paused_at = WorkspaceStatus.PAUSED, timezone.now()
    row.save(update_fields=["status", "paused_at", "updated_at"])
    usage_run_sync(workspace=row, at=row.updated_at)  # paused time is not running time


def _resume_row(row: Workspace) -> None:
    try:
        workspace_driver(row).unpause(row.container_id)
    except DevBenchError as exc:
        raise WorkspaceResumeFailed(
            f"Workspace '{row}' is paused and cannot be resumed: {exc.message}",
            workspace_id=row.public_id,
            cause=exc.code,
        ) from exc
    now = timezone.now()
    row.status, row.paused_at, row.last_active_at = WorkspaceStatus.RUNNING, None, now
    row.save(update_fields=["status", "paused_at", "last_active_at", "updated_at"])
    usage_run_sync(workspace=row, at=row.updated_at)


def workspace_pause(*, actor: Principal, workspace: Workspace) -> Workspace:
    """Freeze a running workspace now (processes and files kept); pausing a paused one
    changes nothing. Its TTL still runs."""
    actor.require_scope("write")
    with (
        audited(actor=actor, action="workspace.pause", target_type="workspace",
                target_id=workspace.public_id),
        transaction.atomic(),
    ):  # fmt: skip
        workspace_require_own(actor=actor, workspace=workspace)
        row = _lock(workspace)
        if row.status != WorkspaceStatus.PAUSED:
            workspace_require_running(workspace=row)
            _pause_row(row)
    return row


def workspace_resume(*, actor: Principal, workspace: Workspace) -> Workspace:
    """Thaw a paused workspace (``workspace_not_paused`` unless paused or running)."""
    actor.require_scope("write")
    with (
        audited(actor=actor, action="workspace.resume", target_type="workspace",
                target_id=workspace.public_id),
        transaction.atomic(),
    ):  # fmt: skip
        workspace_require_own(actor=actor, workspace=workspace)
        row = _lock(workspace)
        if row.status == WorkspaceStatus.PAUSED:
            _resume_row(row)
        elif row.status != WorkspaceStatus.RUNNING:
            raise WorkspaceNotPaused(
                f"Workspace {row.public_id} is {row.status}; only a paused workspace can be "
                "resumed.",
                status=row.status,
            )
    return row


def workspace_ready(*, workspace: Workspace) -> None:
    """The gate every operation on a workspace passes: resume it if paused, then require
    it running, and note the activity. Updates ``workspace`` in place."""
    if workspace.status == WorkspaceStatus.PAUSED:
        with transaction.atomic():
            row = _lock(workspace)
            if row.status == WorkspaceStatus.PAUSED:
                _resume_row(row)
                audit_record(
                    actor=system_principal(row.tenant),
                    action="workspace.resume",
                    outcome=AuditEvent.Outcome.SUCCESS,
                    target_type="workspace",
                    target_id=row.public_id,
                    details={"reason": "activity"},
                )
        for name in ("status", "paused_at", "last_active_at", "container_id"):
            setattr(workspace, name, getattr(row, name))
    workspace_require_running(workspace=workspace)
    workspace_touch(workspace=workspace)


def workspace_touch(*, workspace: Workspace) -> None:
    """Record activity (at most every few seconds: one conditional UPDATE)."""
    now = timezone.now()
    last = workspace.last_active_at
    if last is not None and now - last < timedelta(seconds=ACTIVITY_RESOLUTION_S):
        return
    Workspace.objects.filter(pk=workspace.pk).filter(
        Q(last_active_at__isnull=True)
        | Q(last_active_at__lt=now - timedelta(seconds=ACTIVITY_RESOLUTION_S))
    ).update(last_active_at=now)
    workspace.last_active_at = now


def workspace_touch_open(*, public_id: str) -> None:
    """Activity of a long-lived session (an interactive shell's input), from a worker
    thread: one conditional UPDATE, then the thread's connection is given back."""
    now = timezone.now()
    try:
        Workspace.objects.filter(public_id=public_id).filter(
            Q(last_active_at__isnull=True)
            | Q(last_active_at__lt=now - timedelta(seconds=ACTIVITY_RESOLUTION_S))
        ).update(last_active_at=now)
    finally:
        if not connection.in_atomic_block:
            connection.close()


def idle_pause_due() -> list[str]:
    """Pause running workspaces idle past their policy's ``idle_timeout_s`` (no activity,
    no exec starting, running or queued); returns their ids."""
    from execution.models import ACTIVE_STATUSES, Exec

    now = timezone.now()
    paused = []
    busy = Exec.objects.filter(workspace=OuterRef("pk"), status__in=ACTIVE_STATUSES)
    for policy in TenantPolicy.objects.filter(idle_timeout_s__gt=0):
        cutoff = now - timedelta(seconds=policy.idle_timeout_s)
        due = (
            Workspace.objects.filter(tenant_id=policy.tenant_id, status=WorkspaceStatus.RUNNING)
            .annotate(active_at=Coalesce(F("last_active_at"), F("created_at")), busy=Exists(busy))
            .filter(active_at__lt=cutoff, busy=False)
            .exclude(container_id="")
            .select_related("tenant")
        )
        for workspace in due:
            if _pause_if_idle(workspace, cutoff=cutoff):
                paused.append(workspace.public_id)
    return paused


def _pause_if_idle(workspace: Workspace, *, cutoff: object) -> bool:
    from execution.models import ACTIVE_STATUSES, Exec

    try:
        with transaction.atomic():
            row = _lock(workspace)
            active_at = row.last_active_at or row.created_at
            if (
                row.status != WorkspaceStatus.RUNNING
                or active_at >= cutoff  # type: ignore[operator]
                or Exec.objects.filter(workspace=row, status__in=ACTIVE_STATUSES).exists()
            ):
                return False
            _pause_row(row)
    except DevBenchError:
        return False  # reconciliation sorts out a workspace whose engine did not answer
    audit_record(
        actor=system_principal(workspace.tenant),
        action="workspace.pause",
        outcome=AuditEvent.Outcome.SUCCESS,
        target_type="workspace",
        target_id=workspace.public_id,
        details={"reason": "idle"},
    )
    return True
