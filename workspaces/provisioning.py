"""Engine side of the workspace lifecycle, run by workers and reconciliation.

These functions take rows, not principals: the public actions in
``workspaces.services`` check scopes, tenancy and audit before calling them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core import metrics
from core.errors import (
    ContainerGone,
    DevBenchError,
    EngineConflict,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
)
from core.model_sql import column_assignments
from core.queues import node_queue
from execution import notify
from tenants.audit import audit_record
from tenants.models import AuditEvent, TenantPolicy
from tenants.principal import system_principal
from usage.services import usage_run_opened_sql, usage_run_sync
from workspaces.models import Attachment, Workspace, WorkspaceStatus
from workspaces.nodes import node_hand_off, workspace_driver
from workspaces.provision_row import provision_row, provision_workspace
from workspaces.runtime.base import LABEL_INSTANCE, LABEL_WORKSPACE, ContainerInfo, PullProgress
from workspaces.spec import container_spec, engine_name

logger = logging.getLogger(__name__)


# A kill and a provisioning of one workspace may work on the engine at once (a kill
# right after a spawn that did not wait): the engine answers 409 while the other side
# still uses the volume or removes the container. Each side then looks again.
CONFLICT_RETRY_S = 30.0
CONFLICT_PAUSE_S = 0.2


def _retry_conflicts(step: Callable[[], None]) -> None:
    deadline = time.monotonic() + CONFLICT_RETRY_S
    while True:
        try:
            step()
            return
        except EngineError as exc:
            if not isinstance(exc, EngineConflict) or time.monotonic() > deadline:
                raise
            time.sleep(CONFLICT_PAUSE_S)


def _remove_everything(*, workspace: Workspace, known_id: str, force: bool, volume: bool) -> None:
    """Remove the workspace's containers (the known one and any found by label), then its
    volume. Finding by label catches a container created after the caller looked."""
    driver = workspace_driver(workspace)
    ids = {c.id for c in workspace_containers(workspace=workspace)}
    if known_id:
        ids.add(known_id)
    for container_id in sorted(ids):
        if not force:
            with contextlib.suppress(ContainerGone):
                driver.stop(container_id, timeout_s=settings.DEVBENCH_STOP_TIMEOUT_S)
        driver.remove(container_id, force=True)
    if volume and workspace.volume_name:
        driver.volume_remove(workspace.volume_name)


def _discard_engine_objects(*, workspace: Workspace, container_id: str, volume: bool) -> None:
    """What a provisioning built for a row that is no longer ``creating`` (or failed)."""
    try:
        _retry_conflicts(
            lambda: _remove_everything(
                workspace=workspace, known_id=container_id, force=True, volume=volume
            )
        )
    except EngineError as exc:  # the kill or reconciliation removes what is left
        logger.warning("could not discard the engine objects of %s: %s", workspace, exc)


def workspace_containers(*, workspace: Workspace) -> list[ContainerInfo]:
    """The engine's containers of a workspace, found by label (not by the id on the row)."""
    return workspace_driver(workspace).list_by_labels(
        {LABEL_WORKSPACE: workspace.public_id, LABEL_INSTANCE: settings.DEVBENCH_INSTANCE}
    )


def _create_or_adopt_container(workspace: Workspace, policy: TenantPolicy) -> ContainerInfo:
    try:
        return workspace_driver(workspace).create(container_spec(workspace, policy))
    except EngineError as exc:
        if exc.code != "engine_conflict":
            raise
        # A re-delivered task: the container of the first attempt already exists.
        found = workspace_containers(workspace=workspace)
        if not found:
            raise
        return found[0]


# How often a pull's progress is written to the row (and so seen by its watchers).
PROGRESS_EVERY_S = 0.5


def _pull_image(workspace: Workspace, policy: TenantPolicy) -> None:
    """Pull the workspace's image onto its node (the spawn found it missing), its progress
    on the row while it runs; then the row names the image id it runs."""
    from workspaces.sources import pulling, workspace_image_id

    rows = Workspace.all_objects.filter(pk=workspace.pk, status=WorkspaceStatus.CREATING)
    written = 0.0

    def report(progress: PullProgress) -> None:
        nonlocal written
        now = time.monotonic()
        if now - written >= PROGRESS_EVERY_S or progress.finished:
            written = now
            rows.update(progress=pulling(progress))

    image_id = workspace_image_id(
        policy=policy,
        node=workspace.node,
        image=None if workspace.snapshot_id or workspace.template_id else workspace.image_ref,
        snapshot=workspace.snapshot,
        template=workspace.template,
        progress=report,
    )
    workspace.image_id = image_id
    rows.update(image_id=image_id)


def workspace_group(public_id: str) -> str:
    """The channel-layer group of those waiting for a workspace to leave ``creating``."""
    return f"workspace.{public_id}"


def workspace_changed(
    workspace: Workspace,
    *,
    status: str,
    row: dict[str, Any] | None = None,
    updated_at: datetime | None = None,
) -> None:
    """Wake the spawns waiting on ``workspace``: call only once the change to ``status`` is
    committed (a waiter takes the message for the row's state); a lost message only
    costs them latency: they re-read the row every second. ``row``: the other fields that
    change wrote (with ``updated_at``), which a waiter then needs not read."""
    message: dict[str, Any] = {"type": "workspace.event", "status": status}
    if row is not None and updated_at is not None:
        message["row"] = {**row, "updated_at": updated_at.isoformat()}
    notify.publish_group(workspace_group(workspace.public_id), message)


def workspace_provision_enqueue(
    *, workspace: Workspace, policy: TenantPolicy | None = None
) -> None:
    """Have the workspace's node provision it (call once the row is committed): handed to
    its worker directly through its agent, without the broker's round trip, or, when the
    worker does not take it, queued as a task on the node's queue.

    Provisioning is safe to run twice, and a row left ``creating`` by a worker that died
    is provisioned again by reconciliation, as after a lost task. With the tenant's
    ``policy`` (as the spawn read it), the worker is handed the rows it would load
    (``provision_row``)."""
    from workspaces.tasks import PROVISION, workspace_provision_task

    args: dict[str, Any] = {"workspace_pk": workspace.pk}
    row = provision_row(workspace, policy) if policy is not None else None
    if row is not None:
        args["row"] = row
    if node_hand_off(workspace.node, PROVISION, args):
        return
    workspace_provision_task.apply_async(args=[workspace.pk], queue=node_queue(workspace.node))


def _mark_running(workspace: Workspace, *, container_id: str, now: datetime) -> bool:
    """Mark the row running (if it is still creating) with its open usage run; False if
    it was not creating any more. The run opens with the status, before anyone can see
    the row running: a pause that follows at once (its caller is woken next) would
    otherwise open its paused run first, and the running time before it would go
    unmetered. On PostgreSQL one statement (one round trip, not ten)."""
    values: dict[str, Any] = {
        "status": WorkspaceStatus.RUNNING,
        "progress": {},
        "container_id": container_id,
        "error_code": "",
        "status_message": "",
        "ready_s": (now - workspace.created_at).total_seconds(),
        "updated_at": now,
    }
    rows = Workspace.all_objects.filter(pk=workspace.pk, status=WorkspaceStatus.CREATING)
    if connection.vendor != "postgresql":
        with transaction.atomic():
            running = bool(rows.update(**values))
            if running:
                usage_run_sync(workspace=workspace, at=now)
        return running
    columns, params = column_assignments(Workspace, values)
    sql = (
        f"WITH changed AS (UPDATE {connection.ops.quote_name(Workspace._meta.db_table)} "  # noqa: S608
        f"SET {', '.join(columns)} WHERE id = %s AND status = %s "
        "RETURNING id, tenant_id, %s::timestamptz AS at), "
        + usage_run_opened_sql("changed", WorkspaceStatus.RUNNING)
        + " SELECT (SELECT count(*) FROM changed), (SELECT count(*) FROM run_closed), "
        "(SELECT count(*) FROM run_opened)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, workspace.pk, WorkspaceStatus.CREATING, now])
        marked, closed, opened = cursor.fetchone() or (0, 0, 0)
    if marked and closed and not opened:
        usage_run_sync(workspace=workspace, at=now)  # the run it closed kept it from opening
    return bool(marked)


def _provision_load(workspace_id: int, row: dict[str, Any] | None) -> Workspace | None:
    """The workspace with its tenant and the policy in force: handed over, or in one read."""
    workspace = provision_workspace(row, workspace_pk=workspace_id) if row is not None else None
    if workspace is not None:
        return workspace
    return (
        Workspace.all_objects.select_related("tenant", "tenant__policy")
        .filter(pk=workspace_id)
        .first()
    )


def workspace_provision(
    *, workspace_id: int, final_attempt: bool = True, row: dict[str, Any] | None = None
) -> Workspace | None:
    """Engine work of a spawn: volume, container, start; the row ends running or error.

    Safe to run twice (tasks are acked late) and safe against a kill that lands
    while it runs: the final state change only applies to a row still
    ``creating``, and whatever was built for a row that is not is removed. ``row``:
    the rows as its spawn had them (``provision_row``), instead of reading them.
    """
    workspace = _provision_load(workspace_id, row)
    if workspace is None or workspace.status != WorkspaceStatus.CREATING:
        return workspace
    policy = workspace.tenant.policy
    driver = workspace_driver(workspace)
    rows = Workspace.all_objects.filter(pk=workspace.pk, status=WorkspaceStatus.CREATING)
    if not workspace.volume_name:  # rows made before spawns named their volume
        workspace.volume_name = f"{engine_name(workspace)}-data"
        rows.update(volume_name=workspace.volume_name)
    container_id = ""
    try:
        if not workspace.image_id:
            _pull_image(workspace, policy)
        # The volume (labelled) is made by the container's create (``container_spec``).
        container = _create_or_adopt_container(workspace, policy)
        container_id = container.id
        if not container.running:
            driver.start(container_id)
    except DevBenchError as exc:
        if not final_attempt and isinstance(exc, EngineUnavailable | EngineTimeout):
            raise  # the task retries; the row stays creating
        # A persistent workspace may be re-provisioned onto a volume with data: keep it.
        _discard_engine_objects(
            workspace=workspace, container_id=container_id, volume=not workspace.persistent
        )
        logger.warning(
            "workspace %s failed to start: %s",
            workspace.public_id,
            exc.code,
            extra={"workspace": workspace.public_id, "code": exc.code},
        )
        metrics.SPAWNS.labels(
            outcome="failed",
            code=exc.code,
            warm="false",
            tenant=metrics.tenant_label(workspace.tenant),
        ).inc()
        rows.update(
            status=WorkspaceStatus.ERROR,
            progress={},
            error_code=exc.code,
            status_message=exc.message,
            container_id="",
            updated_at=timezone.now(),
        )
        workspace_changed(workspace, status=WorkspaceStatus.ERROR)
        audit_record(
            actor=system_principal(workspace.tenant),
            action="workspace.provision",
            outcome=AuditEvent.Outcome.ERROR,
            target_type="workspace",
            target_id=workspace.public_id,
            error_code=exc.code,
        )
        workspace.refresh_from_db()
        return workspace
    now = timezone.now()
    running = _mark_running(workspace, container_id=container_id, now=now)
    if not running:
        workspace.refresh_from_db()
        if workspace.status == WorkspaceStatus.RUNNING and workspace.container_id == container_id:
            return workspace  # a duplicate run of this task finished first, same container
        # Killed while we were building it: do not leave the container behind.
        _discard_engine_objects(
            workspace=workspace, container_id=container_id, volume=not workspace.persistent
        )
        return workspace
    workspace_changed(
        workspace,
        status=WorkspaceStatus.RUNNING,
        row={
            "container_id": container_id,
            "ready_s": (now - workspace.created_at).total_seconds(),
            # Written earlier by this run (a pull, a row from before volumes were named).
            "image_id": workspace.image_id,
            "volume_name": workspace.volume_name,
        },
        updated_at=now,
    )
    workspace.refresh_from_db()
    logger.info(
        "workspace %s is running on node %s",
        workspace.public_id,
        workspace.node,
        extra={"workspace": workspace.public_id, "node": workspace.node},
    )
    # Counted once: only the run whose UPDATE moved the row to running gets here.
    metrics.SPAWNS.labels(
        outcome="success", code="", warm="false", tenant=metrics.tenant_label(workspace.tenant)
    ).inc()
    metrics.SPAWN_SECONDS.labels(warm="false").observe(
        max(0.0, (timezone.now() - workspace.created_at).total_seconds())
    )
    return workspace


def workspace_teardown(
    *, workspace: Workspace, force: bool = False, remove_volume: bool | None = None
) -> None:
    """Engine side of a kill; the row must already be ``removing``. Ends ``removed``."""
    drop_volume = (not workspace.persistent) if remove_volume is None else remove_volume
    # Killed while creating: the container may exist without its id on the row yet, or
    # be created (and the volume used) by the provisioning while this runs.
    _retry_conflicts(
        lambda: _remove_everything(
            workspace=workspace, known_id=workspace.container_id, force=force, volume=drop_volume
        )
    )
    now = timezone.now()
    Workspace.all_objects.filter(pk=workspace.pk).update(
        status=WorkspaceStatus.REMOVED, updated_at=now
    )
    Attachment.objects.filter(workspace=workspace, detached_at__isnull=True).update(detached_at=now)
    workspace.status = WorkspaceStatus.REMOVED
