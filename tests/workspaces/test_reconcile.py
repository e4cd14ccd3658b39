"""Reconciliation, garbage collection and expiry against the real engine and worker."""

from __future__ import annotations

import os
import signal
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from core.errors import Conflict
from devbench_site.celery import app
from tenants.models import AuditEvent
from tests.conftest import client_for
from tests.factories import WorkspaceFactory
from tests.processes import wait_for
from tests.workspaces.conftest import status_of
from workspaces import reconcile
from workspaces.models import Workspace, WorkspaceStatus
from workspaces.runtime import get_driver
from workspaces.selectors import workspace_require_running
from workspaces.services import workspace_kill, workspace_spawn
from workspaces.tasks import expire_due_task, reconcile_dispatch_task

pytestmark = [pytest.mark.docker, pytest.mark.integration]

BUSYBOX = "devbench/busybox:latest"


def _write(engine, workspace, text: str) -> None:
    result = engine.containers.get(workspace.container_id).exec_run(
        ["/bin/sh", "-c", f"echo {text} > /workspace/keep.txt"]
    )
    assert result.exit_code == 0, result.output


def _read(engine, container_id: str) -> str:
    result = engine.containers.get(container_id).exec_run(["cat", "/workspace/keep.txt"])
    assert result.exit_code == 0, result.output
    return result.output.decode().strip()


def _running(container_id: str) -> bool:
    return get_driver().inspect(container_id).running


def test_persistent_workspace_survives_a_platform_restart(
    live_worker, start_worker, actor, engine, kill_after
):
    workspace = workspace_spawn(actor=actor, image=BUSYBOX, persistent=True)
    kill_after.append(workspace)
    _write(engine, workspace, "survivor")
    # The platform goes down and its workspace with it; the row still says running.
    engine.containers.get(workspace.container_id).stop(timeout=5)
    assert not _running(workspace.container_id)

    start_worker("restarted")  # a new worker process reconciles its node when ready
    wait_for(lambda: _running(workspace.container_id), what="reconciliation to restart it")
    workspace.refresh_from_db()
    assert workspace.status == WorkspaceStatus.RUNNING
    assert _read(engine, workspace.container_id) == "survivor"
    assert AuditEvent.objects.filter(
        action="workspace.reconcile", target_id=workspace.public_id, details__action="restarted"
    ).exists()


def test_engine_restarts_a_crashed_persistent_container(live_worker, actor, engine, kill_after):
    """The restart policy (unless-stopped) at work: what brings workspaces back after the
    engine itself restarts. Killing the container's init from the host is a crash the
    engine did not ask for, so it restarts the container on its own."""
    workspace = workspace_spawn(actor=actor, image=BUSYBOX, persistent=True)
    kill_after.append(workspace)
    _write(engine, workspace, "crash-proof")
    info = get_driver().inspect(workspace.container_id)
    assert info.raw["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    os.kill(info.raw["State"]["Pid"], signal.SIGKILL)

    def restarted() -> bool:
        raw = get_driver().inspect(workspace.container_id).raw
        return raw["RestartCount"] >= 1 and raw["State"]["Status"] == "running"

    wait_for(restarted, what="the engine to restart the container")
    assert _read(engine, workspace.container_id) == "crash-proof"


def test_persistent_container_lost_is_rebuilt_on_its_volume(live_worker, actor, engine, kill_after):
    workspace = workspace_spawn(actor=actor, image=BUSYBOX, persistent=True)
    kill_after.append(workspace)
    _write(engine, workspace, "kept")
    engine.containers.get(workspace.container_id).remove(force=True)

    report = reconcile.reconcile_node()
    assert [(a.workspace_id, a.action) for a in report.actions] == [
        (workspace.public_id, "reprovisioned")
    ]
    wait_for(lambda: status_of(workspace) == "running", what="re-provisioning")
    workspace.refresh_from_db()
    assert _read(engine, workspace.container_id) == "kept"


def test_ephemeral_workspaces_are_not_brought_back(live_worker, actor, engine, kill_after):
    exited = workspace_spawn(actor=actor, image=BUSYBOX)
    vanished = workspace_spawn(actor=actor, image=BUSYBOX)
    kill_after.extend([exited, vanished])
    engine.containers.get(exited.container_id).stop(timeout=5)
    engine.containers.get(vanished.container_id).remove(force=True)

    actions = {(a.workspace_id, a.action) for a in reconcile.reconcile_node().actions}
    assert actions == {
        (exited.public_id, "marked_stopped"),
        (vanished.public_id, "marked_error"),
    }
    exited.refresh_from_db()
    vanished.refresh_from_db()
    assert (exited.status, exited.error_code) == ("stopped", "container_exited")
    assert (vanished.status, vanished.error_code) == ("error", "container_gone")
    with pytest.raises(Conflict) as excinfo:
        workspace_require_running(workspace=exited)
    assert excinfo.value.code == "workspace_not_running"
    assert excinfo.value.extra["status"] == "stopped"
    assert reconcile.reconcile_node().actions == []  # converged: a second pass does nothing


def test_interrupted_kill_and_lost_provisioning_are_finished(live_worker, actor, tenant, engine):
    half_killed = workspace_spawn(actor=actor, image=BUSYBOX)
    long_ago = timezone.now() - timedelta(seconds=settings.DEVBENCH_SPAWN_WAIT_S + 60)
    Workspace.objects.filter(pk=half_killed.pk).update(status="removing", updated_at=long_ago)
    lost = WorkspaceFactory(
        tenant=tenant,
        status="creating",
        image_id=get_driver().image_inspect(BUSYBOX).id,
    )
    Workspace.objects.filter(pk=lost.pk).update(updated_at=long_ago)

    actions = {(a.workspace_id, a.action) for a in reconcile.reconcile_node().actions}
    assert actions == {(half_killed.public_id, "removed"), (lost.public_id, "provision_requeued")}
    assert status_of(half_killed) == "removed"
    assert get_driver().list_by_labels({"devbench.workspace": half_killed.public_id}) == []
    wait_for(lambda: status_of(lost) == "running", what="the re-queued provisioning")
    lost.refresh_from_db()
    assert lost.volume_name.endswith(f"{lost.public_id}-data")  # named by provisioning
    workspace_kill(actor=actor, workspace=lost, force=True)


def test_gc_touches_only_this_installations_orphans(live_worker, actor, engine):
    ours = {"devbench.instance": settings.DEVBENCH_INSTANCE, "devbench.workspace": "ws_orphan"}
    theirs = {"devbench.instance": f"other-{uuid.uuid4().hex[:8]}", "devbench.workspace": "ws_x"}
    orphan = engine.containers.create(BUSYBOX, ["sleep", "60"], labels=ours, network_mode="none")
    foreign = engine.containers.create(BUSYBOX, ["sleep", "60"], labels=theirs, network_mode="none")
    orphan_volume = engine.volumes.create(f"gc-orphan-{uuid.uuid4().hex[:8]}", labels=ours)
    foreign_volume = engine.volumes.create(f"gc-foreign-{uuid.uuid4().hex[:8]}", labels=theirs)
    kept = workspace_spawn(actor=actor, image=BUSYBOX, persistent=True)
    workspace_kill(actor=actor, workspace=kept)  # keeps its volume on purpose
    live = workspace_spawn(actor=actor, image=BUSYBOX)
    try:
        report = reconcile.gc_node()
        # (Other tests of this session may have left orphans too: they go as well.)
        assert "ws_orphan" in report.containers_removed
        assert orphan_volume.name in report.volumes_removed
        assert orphan.id not in {c.id for c in engine.containers.list(all=True)}
        names = {v.name for v in engine.volumes.list()}
        assert {foreign_volume.name, kept.volume_name, live.volume_name} <= names
        assert foreign.id in {c.id for c in engine.containers.list(all=True)}
        assert _running(live.container_id)
    finally:
        foreign.remove(force=True)
        foreign_volume.remove(force=True)
        workspace_kill(actor=actor, workspace=live, force=True)
        workspace_kill(actor=actor, workspace=kept, remove_volume=True)


def test_periodic_jobs_expire_and_reconcile_through_the_worker(live_worker, actor, engine):
    app.loader.import_default_modules()  # what a worker does at start: autodiscover tasks
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks, entry  # every beat entry names a real task

    expiring = workspace_spawn(actor=actor, image=BUSYBOX, ttl_s=60)
    persistent = workspace_spawn(actor=actor, image=BUSYBOX, persistent=True)
    Workspace.objects.filter(pk=expiring.pk).update(expires_at=timezone.now())
    engine.containers.get(persistent.container_id).stop(timeout=5)

    expire_due_task.delay()
    reconcile_dispatch_task.delay()
    wait_for(lambda: status_of(expiring) == "removed", what="TTL expiry")
    wait_for(lambda: _running(persistent.container_id), what="periodic reconciliation")
    assert AuditEvent.objects.filter(
        action="workspace.kill", target_id=expiring.public_id, details__reason="ttl_expired"
    ).exists()
    assert status_of(persistent) == "running"  # persistent workspaces never expire
    workspace_kill(actor=actor, workspace=persistent, force=True, remove_volume=True)

    Workspace.objects.filter(pk=expiring.pk).update(
        idempotency_key="old", idempotency_expires_at=timezone.now()
    )
    assert reconcile.idempotency_keys_expire() == 1
    expiring.refresh_from_db()
    assert expiring.idempotency_key is None


def test_tenant_admins_reconcile_only_their_own(
    live_worker, tenant, other_tenant, make_token, engine, kill_after
):
    admin = client_for(make_token(tenant, scopes=("read", "write", "admin")))
    other = client_for(make_token(other_tenant))
    mine = admin.post(
        "/api/v1/workspaces", {"persistent": True}, content_type="application/json"
    ).json()
    theirs = other.post(
        "/api/v1/workspaces", {"persistent": True}, content_type="application/json"
    ).json()
    ids = [mine["id"], theirs["id"]]
    rows = {w.public_id: w for w in Workspace.objects.filter(public_id__in=ids)}
    kill_after.extend(rows.values())
    for row in rows.values():
        engine.containers.get(row.container_id).stop(timeout=5)

    response = admin.post("/api/v1/maintenance/reconcile")
    assert response.status_code == 200
    assert response.json()["actions"] == [
        {"workspace_id": mine["id"], "action": "restarted", "detail": ""}
    ]
    assert _running(rows[mine["id"]].container_id)
    assert not _running(rows[theirs["id"]].container_id)
    gc = admin.post("/api/v1/maintenance/gc")
    assert gc.status_code == 200 and gc.json()["containers_removed"] == []
