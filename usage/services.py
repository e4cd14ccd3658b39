"""Recording usage: workspace runs, exec totals, sampled CPU time and storage.

Workspace lifecycle code calls :func:`usage_run_sync` right after it changes a
workspace's status; the periodic meter (:func:`usage_meter_node`, per node)
calls it for every workspace too, so a transition made elsewhere (e.g. by
reconciliation or a crash) is recorded at its ``updated_at`` at the latest.
Snapshot storage is read from the database (:func:`usage_meter_snapshots`), once
per meter round for every node.
"""

from __future__ import annotations

import logging
from datetime import date, datetime

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from core.errors import DevBenchError
from usage.models import RunState, UsageDay, WorkspaceRun
from workspaces.models import Snapshot, SnapshotStatus, Workspace, WorkspaceStatus

logger = logging.getLogger(__name__)

# Workspace statuses that are metered, each in its own kind of run.
_RUN_STATE: dict[str, RunState] = {
    WorkspaceStatus.RUNNING: RunState.RUNNING,
    WorkspaceStatus.PAUSED: RunState.PAUSED,
}


def usage_run_sync(*, workspace: Workspace, at: datetime | None = None) -> None:
    """Make the workspace's open run match its status: open one, close one, or both."""
    row = Workspace.objects.filter(pk=workspace.pk).values("status", "updated_at").first()
    if row is None:
        return
    when = at or timezone.now()
    wanted = _RUN_STATE.get(row["status"])
    with transaction.atomic():
        current = (
            WorkspaceRun.objects.select_for_update()
            .filter(workspace_id=workspace.pk, ended_at__isnull=True)
            .first()
        )
        if current is not None and current.state == wanted:
            return
        if current is not None:
            current.ended_at = max(when if at else row["updated_at"], current.started_at)
            current.save(update_fields=["ended_at"])
        if wanted is not None:
            try:
                with transaction.atomic():
                    WorkspaceRun.objects.create(
                        tenant_id=workspace.tenant_id,
                        workspace_id=workspace.pk,
                        state=wanted,
                        started_at=when if at else row["updated_at"],
                    )
            except IntegrityError:
                pass  # another process opened it at the same moment


def usage_run_opened_sql(changed: str, status: str) -> str:
    """PostgreSQL: two CTEs (``run_closed``, ``run_opened``, to follow the caller's, each
    returning a row per run it wrote) that do what :func:`usage_run_sync` does for each
    workspace of ``changed`` (a CTE with ``id``, ``tenant_id`` and ``at``) that has just
    been set to ``status``, in the statement that set it: any open run of another state
    closed at ``at``, one of the status's state opened unless it is.

    One statement cannot do both to one workspace: the run the first closes is still
    open to the second (one snapshot), whose insert then meets it in the unique index of
    open runs and does nothing. So a workspace that had a run of another state open (a
    row re-provisioned, never a new one) ends with none: the caller then calls
    usage_run_sync. A run opened at the same moment by another process is a conflict
    nothing is done about, as usage_run_sync's IntegrityError."""
    state = _RUN_STATE[status]
    table = connection.ops.quote_name(WorkspaceRun._meta.db_table)
    wanted = f"'{state.value}'"  # one of the enumeration's own values, not input
    return (
        f"run_closed AS (UPDATE {table} SET ended_at = GREATEST(c.at, {table}.started_at) "  # noqa: S608
        f"FROM {changed} c WHERE {table}.workspace_id = c.id AND {table}.ended_at IS NULL "
        f"AND {table}.state <> {wanted} RETURNING 1), "
        f"run_opened AS (INSERT INTO {table} (tenant_id, workspace_id, state, started_at) "
        f"SELECT c.tenant_id, c.id, {wanted}, c.at FROM {changed} c WHERE NOT EXISTS "
        f"(SELECT 1 FROM {table} o WHERE o.workspace_id = c.id AND o.ended_at IS NULL "
        f"AND o.state = {wanted}) ON CONFLICT DO NOTHING RETURNING 1)"
    )


def _add(tenant_id: int, day: date, **increments: float) -> None:
    """Add to a tenant's day, creating the row on first use (race-free)."""
    updates = {name: F(name) + value for name, value in increments.items()}
    if UsageDay.objects.filter(tenant_id=tenant_id, day=day).update(**updates):
        return
    try:
        with transaction.atomic():
            UsageDay.objects.create(tenant_id=tenant_id, day=day, **increments)
    except IntegrityError:
        UsageDay.objects.filter(tenant_id=tenant_id, day=day).update(**updates)


def usage_exec_record(
    *, tenant_id: int, started_at: datetime | None, finished_at: datetime
) -> None:
    """Count an exec that just ended (its run time, on the day it ended)."""
    seconds = max(0.0, (finished_at - started_at).total_seconds()) if started_at else 0.0
    _add(tenant_id, finished_at.date(), exec_count=1, exec_seconds=seconds)


def usage_exec_record_sql(ended: str) -> str:
    """PostgreSQL: counts, like :func:`usage_exec_record`, each row of ``ended`` (a query
    or CTE name with ``tenant_id``, ``day`` and ``seconds``) in its tenant's day, in the
    same statement as whatever produced them."""
    meta = UsageDay._meta
    table = meta.db_table
    # The day's other counters start at zero (their defaults are Python's, not the table's).
    others = [str(f.column) for f in meta.concrete_fields if f.name not in _EXEC_ROW_COLUMNS]
    return (
        f"INSERT INTO {table} (tenant_id, day, exec_count, exec_seconds, {', '.join(others)}) "  # noqa: S608
        f"SELECT tenant_id, day, 1, seconds{', 0' * len(others)} FROM {ended} "
        f"ON CONFLICT (tenant_id, day) DO UPDATE SET exec_count = {table}.exec_count + 1, "
        f"exec_seconds = {table}.exec_seconds + EXCLUDED.exec_seconds"
    )


_EXEC_ROW_COLUMNS = {"id", "tenant", "day", "exec_count", "exec_seconds"}


def _storage_peak(tenant_id: int, day: date, field: str, size: int) -> None:
    """Raise the day's peak of a storage field to ``size`` (never lower it)."""
    if not UsageDay.objects.filter(tenant_id=tenant_id, day=day).exists():
        try:
            with transaction.atomic():
                UsageDay.objects.create(tenant_id=tenant_id, day=day, **{field: size})
                return
        except IntegrityError:
            pass
    UsageDay.objects.filter(tenant_id=tenant_id, day=day, **{f"{field}__lt": size}).update(
        **{field: size}
    )


def usage_meter_snapshots() -> int:
    """Record each tenant's snapshot storage (what its ready snapshots add to their base
    images, as their quotas count it) as today's peak. Returns how many tenants have some."""
    today = timezone.now().date()
    totals = (
        Snapshot.objects.filter(status=SnapshotStatus.READY)
        .values("tenant_id")
        .annotate(total=Sum("size_bytes"))
    )
    for row in totals:
        _storage_peak(row["tenant_id"], today, "storage_snapshot_bytes", row["total"])
    return len(totals)


def usage_meter_node(*, node: str) -> int:
    """Sample one node: sync every workspace's run, add CPU time since the last reading,
    record the volumes' sizes. Returns how many workspaces were read."""
    from workspaces.nodes import node_driver

    driver = node_driver(node)
    now = timezone.now()
    today = now.date()
    workspaces = list(
        Workspace.objects.filter(node=node).exclude(status=WorkspaceStatus.REMOVED)
    ) + list(
        Workspace.objects.filter(
            node=node, status=WorkspaceStatus.REMOVED, runs__ended_at__isnull=True
        )
    )
    for workspace in workspaces:
        usage_run_sync(workspace=workspace)
    read = 0
    for workspace in workspaces:
        if workspace.status != WorkspaceStatus.RUNNING or not workspace.container_id:
            continue
        try:
            cpu_ns = driver.stats(workspace.container_id).cpu_total_ns
        except DevBenchError:
            continue  # gone meanwhile: the next sync closes its run
        read += 1
        run = WorkspaceRun.objects.filter(workspace=workspace, ended_at__isnull=True).first()
        if run is None:
            continue
        # A restarted container counts from zero again.
        delta = cpu_ns - run.cpu_ns if run.cpu_ns is not None and cpu_ns >= run.cpu_ns else cpu_ns
        WorkspaceRun.objects.filter(pk=run.pk).update(cpu_ns=cpu_ns)
        if delta > 0:
            _add(workspace.tenant_id, today, cpu_seconds=delta / 1e9)
    sizes = driver.volume_sizes()
    per_tenant: dict[int, int] = {}
    for workspace in workspaces:
        if workspace.volume_name in sizes:
            per_tenant[workspace.tenant_id] = (
                per_tenant.get(workspace.tenant_id, 0) + sizes[workspace.volume_name]
            )
    for tenant_id, volume_bytes in per_tenant.items():
        _storage_peak(tenant_id, today, "storage_volume_bytes", volume_bytes)
    return read
