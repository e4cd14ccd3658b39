"""Periodic upkeep: make the engine match the database, collect garbage, expire.

Run by Celery beat in production and by the in-process scheduler in the
embedded mode (``devbench_site.scheduler``), and on demand by tenant admins.
Only engine objects labelled with this installation's ``devbench.instance``
are ever touched, so several installations (or test sessions) can share an
engine. Every step is safe to run twice or concurrently: state changes apply
only to rows still in the state that was seen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from core.errors import DevBenchError
from tenants.audit import audit_record, audited
from tenants.models import AuditEvent, Tenant
from tenants.principal import Principal, system_principal
from usage.services import usage_run_sync
from workspaces.models import LIVE_STATUSES, Node, NodeState, Workspace, WorkspaceStatus
from workspaces.nodes import (
    node_driver,
    node_is_local,
    node_restore_workspaces,
    nodes_serving,
    workspace_driver,
)
from workspaces.provisioning import workspace_provision_enqueue, workspace_teardown
from workspaces.runtime.base import LABEL_INSTANCE, LABEL_TENANT, LABEL_WORKSPACE, ContainerInfo
from workspaces.services import STOPPED_ON_REQUEST, workspace_kill

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcileAction:
    workspace_id: str
    tenant: str
    action: str  # restarted | reprovisioned | marked_stopped | marked_running | marked_error ...
    detail: str = ""


@dataclass
class ReconcileReport:
    node: str
    checked: int = 0
    actions: list[ReconcileAction] = field(default_factory=list)


@dataclass
class GcReport:
    node: str
    containers_removed: list[str] = field(default_factory=list)  # workspace ids (or names)
    volumes_removed: list[str] = field(default_factory=list)


def _instance_labels(tenant: Tenant | None) -> dict[str, str]:
    labels = {LABEL_INSTANCE: settings.DEVBENCH_INSTANCE}
    if tenant is not None:
        labels[LABEL_TENANT] = tenant.slug
    return labels


def _record(report: ReconcileReport, workspace: Workspace, action: str, detail: str = "") -> None:
    report.actions.append(
        ReconcileAction(
            workspace_id=workspace.public_id,
            tenant=workspace.tenant.slug,
            action=action,
            detail=detail,
        )
    )
    audit_record(
        actor=system_principal(workspace.tenant),
        action="workspace.reconcile",
        outcome=AuditEvent.Outcome.SUCCESS,
        target_type="workspace",
        target_id=workspace.public_id,
        details={"action": action, "detail": detail},
    )


def _transition(workspace: Workspace, **changes: object) -> bool:
    """Apply changes only if the row is still as reconciliation saw it."""
    rows = Workspace.all_objects.filter(pk=workspace.pk, status=workspace.status)
    now = timezone.now()
    changed = bool(rows.update(updated_at=now, **changes))
    if changed:
        usage_run_sync(workspace=workspace, at=now)
    return changed


def _reconcile_missing(workspace: Workspace, report: ReconcileReport) -> None:
    """The row wants a container but the engine has none."""
    if workspace.persistent:
        # Its data lives on in the volume: build a new container around it.
        if _transition(workspace, status=WorkspaceStatus.CREATING, container_id=""):
            workspace_provision_enqueue(workspace=workspace)
            _record(report, workspace, "reprovisioned", "container missing; volume kept")
        return
    if _transition(
        workspace,
        status=WorkspaceStatus.ERROR,
        container_id="",
        error_code="container_gone",
        status_message="The container disappeared from the engine; kill the workspace.",
    ):
        _record(report, workspace, "marked_error", "container missing")


def _reconcile_present(
    workspace: Workspace, container: ContainerInfo, report: ReconcileReport
) -> None:
    driver = workspace_driver(workspace)
    if container.status == "paused":
        # Frozen (idle pause, or a pause that outlived a platform restart): the row says
        # paused, and the next operation on it resumes it.
        if workspace.status != WorkspaceStatus.PAUSED and _transition(
            workspace, status=WorkspaceStatus.PAUSED, container_id=container.id
        ):
            _record(report, workspace, "marked_paused")
        return
    if container.running:
        in_line = (
            workspace.status == WorkspaceStatus.RUNNING and workspace.container_id == container.id
        )
        if not in_line and _transition(
            workspace,
            status=WorkspaceStatus.RUNNING,
            container_id=container.id,
            error_code="",
            status_message="",
        ):
            _record(report, workspace, "marked_running")
        return
    if container.status == "restarting":
        return  # the engine's restart policy is already bringing it back
    if workspace.status == WorkspaceStatus.STOPPED and workspace.error_code == STOPPED_ON_REQUEST:
        return  # stopped on purpose: only workspace_start brings it back
    if workspace.persistent:
        # Persistent workspaces should always run: an engine or host restart, or
        # a crash the restart policy gave up on, is undone here.
        try:
            driver.start(container.id)
        except DevBenchError as exc:
            _record(report, workspace, "restart_failed", f"{exc.code}: {exc.message}")
            return
        _transition(workspace, status=WorkspaceStatus.RUNNING, container_id=container.id)
        _record(report, workspace, "restarted")
        return
    if workspace.status == WorkspaceStatus.RUNNING and _transition(
        workspace,
        status=WorkspaceStatus.STOPPED,
        error_code="container_exited",
        status_message=(
            f"The container exited (code {container.exit_code}); ephemeral workspaces are "
            "not restarted. Its files stay until it is killed or expires."
        ),
    ):
        _record(report, workspace, "marked_stopped", f"exit code {container.exit_code}")


def _rows(node: str, tenant: Tenant | None) -> QuerySet[Workspace]:
    if tenant is not None:
        # A tenant's own run reports its workspaces only: its pool members (not its
        # workspaces yet) are kept in line by the node-wide run and the pool's upkeep.
        return Workspace.objects.filter(node=node, tenant=tenant).select_related("tenant")
    return Workspace.all_objects.filter(node=node).select_related("tenant")


def reconcile_node(*, node: str | None = None, tenant: Tenant | None = None) -> ReconcileReport:
    """Bring the rows of one node in line with its engine (optionally one tenant's)."""
    node = node or settings.DEVBENCH_NODE
    report = ReconcileReport(node=node)
    # Engine first, rows second: a container seen here always has its row committed.
    containers = node_driver(node).list_by_labels(_instance_labels(tenant))
    if Node.objects.filter(name=node).exclude(state=NodeState.DOWN).exists():
        # The node is back: its workspaces get their statuses again, then the engine
        # state below decides (a container that did not survive is found missing).
        node_restore_workspaces(node=node)
    by_workspace = {c.labels.get(LABEL_WORKSPACE, ""): c for c in containers}
    stale_before = timezone.now() - timedelta(seconds=settings.DEVBENCH_SPAWN_WAIT_S)
    for workspace in _rows(node, tenant).filter(status__in=LIVE_STATUSES):
        if workspace.status == WorkspaceStatus.UNAVAILABLE:
            continue  # its node is still marked down: nothing to match yet
        report.checked += 1
        container = by_workspace.get(workspace.public_id)
        if workspace.status == WorkspaceStatus.REMOVING:
            if workspace.updated_at >= stale_before:
                continue  # a kill is probably running right now
            # A kill that was interrupted (engine down, process died): finish it.
            workspace_teardown(workspace=workspace, force=True)
            _record(report, workspace, "removed", "finished an interrupted kill")
        elif workspace.status == WorkspaceStatus.CREATING:
            if workspace.updated_at < stale_before:
                # Its task was lost: provisioning is safe to run again (it adopts).
                workspace_provision_enqueue(workspace=workspace)
                _record(report, workspace, "provision_requeued")
        elif container is None:
            _reconcile_missing(workspace, report)
        else:
            _reconcile_present(workspace, container, report)
    return report


def gc_node(*, node: str | None = None, tenant: Tenant | None = None) -> GcReport:
    """Remove this installation's containers and volumes that no live workspace owns.

    A persistent workspace's volume is kept after a kill unless the kill asked
    for its removal; every other volume goes with its workspace.
    """
    node = node or settings.DEVBENCH_NODE
    report = GcReport(node=node)
    driver = node_driver(node)
    labels = _instance_labels(tenant)
    containers = driver.list_by_labels(labels)
    live = set(
        Workspace.all_objects.filter(status__in=LIVE_STATUSES).values_list("public_id", flat=True)
    )
    for container in containers:
        workspace_id = container.labels.get(LABEL_WORKSPACE, "")
        if workspace_id not in live:
            try:
                driver.remove(container.id, force=True)
            except DevBenchError as exc:
                logger.warning("gc: cannot remove container %s: %s", container.id, exc.message)
                continue
            report.containers_removed.append(workspace_id or container.name)
    volumes = driver.volume_list_by_labels(labels)
    owners = {
        w.volume_name: w
        for w in Workspace.all_objects.filter(volume_name__in=[v.name for v in volumes])
    }
    for volume in volumes:
        owner = owners.get(volume.name)
        if owner is None or (not owner.is_live and not owner.persistent):
            try:
                driver.volume_remove(volume.name)
            except DevBenchError as exc:  # e.g. still used by a container of another run
                logger.warning("gc: cannot remove volume %s: %s", volume.name, exc.message)
                continue
            report.volumes_removed.append(volume.name)
    return report


def workspace_expire_due() -> list[str]:
    """Kill ephemeral workspaces whose time to live is over; returns their ids."""
    due = Workspace.objects.filter(
        expires_at__lte=timezone.now(),
        persistent=False,
        status__in=(
            WorkspaceStatus.RUNNING,
            WorkspaceStatus.STOPPED,
            WorkspaceStatus.ERROR,
            WorkspaceStatus.PAUSED,
        ),
    ).select_related("tenant")
    expired = []
    for workspace in due:
        try:
            workspace_kill(
                actor=system_principal(workspace.tenant),
                workspace=workspace,
                force=True,
                reason="ttl_expired",
            )
        except DevBenchError:
            continue  # audited by the kill; the next run or reconciliation finishes it
        expired.append(workspace.public_id)
    return expired


def idempotency_keys_expire() -> int:
    """Release idempotency keys past their window, so they can make new workspaces."""
    return Workspace.all_objects.filter(
        idempotency_key__isnull=False, idempotency_expires_at__lte=timezone.now()
    ).update(idempotency_key=None)


def _tenant_nodes(tenant: Tenant) -> list[str]:
    """Nodes up now that hold (or held) the tenant's workspaces, plus this process's own."""
    used = set(Workspace.all_objects.filter(tenant=tenant).values_list("node", flat=True))
    return [name for name in nodes_serving() if name in used or node_is_local(name)]


def workspace_reconcile(*, actor: Principal) -> ReconcileReport:
    """Reconcile the actor's tenant's workspaces on every node that is up, now (tenant
    admins). A node down is skipped: its worker reconciles when it returns."""
    actor.require_scope("admin")
    with audited(actor=actor, action="workspace.reconcile_run", target_type="tenant") as audit:
        audit.target_id = actor.tenant.slug
        report = ReconcileReport(node=",".join(_tenant_nodes(actor.tenant)))
        for name in _tenant_nodes(actor.tenant):
            one = reconcile_node(node=name, tenant=actor.tenant)
            report.checked += one.checked
            report.actions += one.actions
        audit.details["actions"] = len(report.actions)
    return report


def workspace_gc(*, actor: Principal) -> GcReport:
    """Collect the actor's tenant's orphaned containers and volumes on every node up, now."""
    actor.require_scope("admin")
    with audited(actor=actor, action="workspace.gc_run", target_type="tenant") as audit:
        audit.target_id = actor.tenant.slug
        report = GcReport(node=",".join(_tenant_nodes(actor.tenant)))
        for name in _tenant_nodes(actor.tenant):
            one = gc_node(node=name, tenant=actor.tenant)
            report.containers_removed += one.containers_removed
            report.volumes_removed += one.volumes_removed
        audit.details.update(
            containers=len(report.containers_removed), volumes=len(report.volumes_removed)
        )
    return report
