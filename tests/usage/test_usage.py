"""Usage per tenant and day matches a scripted workload on the real engine."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from execution.models import Exec
from execution.services import exec_start, exec_wait
from tests.factories import ApiTokenFactory
from usage.models import WorkspaceRun
from usage.selectors import usage_list, usage_total
from usage.services import usage_meter_node, usage_meter_snapshots
from workspaces.filesystem.services import fs_write
from workspaces.services import workspace_kill, workspace_spawn, workspace_start, workspace_stop
from workspaces.snapshots.services import snapshot_create, snapshot_delete
from workspaces.suspend import workspace_pause, workspace_resume

pytestmark = [pytest.mark.integration, pytest.mark.docker]

BURN = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo burnt"


def test_usage_matches_a_scripted_workload(live_worker: Any, actor: Any, tenant: Any) -> None:
    before_spawn = timezone.now()
    workspace = workspace_spawn(actor=actor, image="devbench/busybox:latest")
    after_spawn = timezone.now()
    try:
        execs = [
            exec_start(actor=actor, workspace=workspace, cmd=cmd)
            for cmd in (["true"], ["sh", "-c", "sleep 1"], ["sh", "-c", BURN])
        ]
        for exec_ in execs:
            exec_wait(exec_=exec_, timeout_s=120)
            assert exec_.status == "completed", exec_.error
        fs_write(actor=actor, workspace=workspace, path="/workspace/blob", content=b"x" * 2**20)
        usage_meter_node(node=settings.DEVBENCH_NODE)  # CPU time and volume size
        snapshot = snapshot_create(actor=actor, workspace=workspace, name="metered")
        usage_meter_snapshots()
        snapshot_delete(actor=actor, snapshot=snapshot)
        usage_meter_snapshots()  # the day keeps its peak
        before_stop = timezone.now()
        workspace_stop(actor=actor, workspace=workspace)
        after_stop = timezone.now()
        workspace_start(actor=actor, workspace=workspace)  # a second run, still open
    finally:
        workspace.refresh_from_db()
        workspace_kill(actor=actor, workspace=workspace, force=True, remove_volume=True)
    after_kill = timezone.now()

    (today,) = usage_list(actor=actor, since=timezone.now().date())
    rows = list(Exec.objects.filter(pk__in=[e.pk for e in execs]))
    assert today.exec_count == 3
    spans = [(e.started_at, e.finished_at) for e in rows]
    wall = sum((end - start).total_seconds() for start, end in spans if start and end)
    assert len([s for s in spans if all(s)]) == 3
    assert today.exec_seconds == pytest.approx(wall, abs=1e-3)
    # Two runs: spawn -> stop, start -> kill; each lies between what the test saw.
    runs = list(WorkspaceRun.objects.filter(workspace=workspace).order_by("started_at"))
    ends = [r.ended_at for r in runs]
    assert len(runs) == 2 and ends[0] is not None and ends[1] is not None
    low = (before_stop - after_spawn) + (ends[1] - runs[1].started_at)
    high = (after_stop - before_spawn) + (after_kill - after_stop)
    assert low.total_seconds() <= today.workspace_seconds_running <= high.total_seconds()
    assert today.workspace_seconds_paused == 0
    # CPU: the busy loop used some, never more than the one CPU the policy allows.
    assert 0 < today.cpu_seconds <= (before_stop - before_spawn).total_seconds()
    assert today.storage_volume_bytes >= 2**20
    assert today.storage_snapshot_bytes == snapshot.size_bytes >= 2**20

    # REST gives the same numbers; quotas can sum a period.
    token = ApiTokenFactory(tenant=tenant, scopes=["read"])
    answer = Client(HTTP_AUTHORIZATION=f"Bearer {token.raw}").get("/api/v1/usage")
    assert answer.status_code == 200
    days = answer.json()
    assert len(days) == 30 and days[-1]["exec_count"] == 3
    assert days[-1]["workspace_seconds_running"] == today.workspace_seconds_running
    total = usage_total(tenant=tenant, since=timezone.now().date() - timedelta(days=6))
    assert total.exec_count == 3


def test_usage_range_is_validated(db: Any, actor: Any) -> None:
    from core.errors import ValidationFailed

    today = timezone.now().date()
    with pytest.raises(ValidationFailed):
        usage_list(actor=actor, since=today, until=today - timedelta(days=1))
    with pytest.raises(ValidationFailed):
        usage_list(actor=actor, since=today - timedelta(days=400), until=today)


def test_snapshot_storage_is_each_tenants_ready_snapshots(
    db: Any, tenant: Any, other_tenant: Any
) -> None:
    from usage.models import UsageDay
    from workspaces.models import Snapshot, SnapshotStatus

    for owner, size, status in (
        (tenant, 300, SnapshotStatus.READY),
        (tenant, 200, SnapshotStatus.READY),
        (tenant, 10_000, SnapshotStatus.CREATING),  # not stored yet: not counted
        (other_tenant, 7, SnapshotStatus.READY),
    ):
        Snapshot.objects.create(tenant=owner, name="s", size_bytes=size, status=status)
    assert usage_meter_snapshots() == 2
    today = timezone.now().date()
    peak = dict(
        UsageDay.objects.filter(day=today).values_list("tenant_id", "storage_snapshot_bytes")
    )
    assert peak == {tenant.pk: 500, other_tenant.pk: 7}

    Snapshot.objects.filter(tenant=tenant, size_bytes=300).delete()
    usage_meter_snapshots()
    assert UsageDay.objects.get(tenant=tenant, day=today).storage_snapshot_bytes == 500


def test_paused_time_is_metered_apart_from_running_time(
    live_worker: Any, actor: Any, tenant: Any
) -> None:
    workspace = workspace_spawn(actor=actor, image="devbench/busybox:latest")
    try:
        before_pause = timezone.now()
        workspace = workspace_pause(actor=actor, workspace=workspace)
        after_pause = timezone.now()
        time.sleep(1)
        before_resume = timezone.now()
        workspace = workspace_resume(actor=actor, workspace=workspace)
        after_resume = timezone.now()
    finally:
        workspace.refresh_from_db()
        workspace_kill(actor=actor, workspace=workspace, force=True, remove_volume=True)

    states = [r.state for r in WorkspaceRun.objects.filter(workspace=workspace).order_by("id")]
    assert states == ["running", "paused", "running"]
    (today,) = usage_list(actor=actor, since=timezone.now().date())
    low, high = before_resume - after_pause, after_resume - before_pause
    assert low.total_seconds() <= today.workspace_seconds_paused <= high.total_seconds()
    # The frozen second is not running time too.
    spans = WorkspaceRun.objects.filter(workspace=workspace, state="running")
    running = sum((r.ended_at - r.started_at).total_seconds() for r in spans if r.ended_at)
    assert today.workspace_seconds_running == pytest.approx(running, abs=1e-3)


def test_running_time_is_metered_from_the_start_even_if_paused_at_once(
    live_worker: Any, actor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spawn's caller is woken when the row is running and may pause it before the
    worker does anything more: the running span must already be open by then."""
    from usage.services import usage_run_sync
    from workspaces import provisioning, tasks
    from workspaces.models import Workspace

    monkeypatch.setattr(provisioning, "node_hand_off", lambda *a: False)
    monkeypatch.setattr(tasks.workspace_provision_task, "apply_async", lambda **kw: None)
    workspace = workspace_spawn(actor=actor, image="devbench/busybox:latest", wait=False)

    def woken_and_paused_at_once(woken: Workspace, *, status: str, **_: Any) -> None:
        # What a caller woken by this message does first: pause, metered as pauses are.
        paused_at = timezone.now()
        Workspace.objects.filter(pk=woken.pk).update(status="paused", updated_at=paused_at)
        usage_run_sync(workspace=woken, at=paused_at)

    monkeypatch.setattr(provisioning, "workspace_changed", woken_and_paused_at_once)
    try:
        provisioning.workspace_provision(workspace_id=workspace.pk)
    finally:
        Workspace.objects.filter(pk=workspace.pk).update(status="running")
        workspace.refresh_from_db()
        workspace_kill(actor=actor, workspace=workspace, force=True, remove_volume=True)
    runs = list(WorkspaceRun.objects.filter(workspace=workspace).order_by("id"))
    assert [r.state for r in runs][:2] == ["running", "paused"]
    ended = runs[0].ended_at
    assert ended is not None and runs[0].started_at <= ended == runs[1].started_at
