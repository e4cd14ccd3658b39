"""Reconciliation of execs whose runner vanished, and the tenant-scoped admin (DB only)."""

from datetime import timedelta

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from execution.models import ExecStatus
from execution.services import exec_poll
from execution.tasks import SENDERS, exec_reconcile_task
from execution.worker import exec_reconcile
from tenants.models import TenantPolicy
from tests.factories import (
    ExecChunkFactory,
    ExecFactory,
    MembershipFactory,
    TenantFactory,
    UserFactory,
    WorkspaceFactory,
)

pytestmark = pytest.mark.django_db


def _exec(tenant, **fields):
    fields.setdefault("workspace", WorkspaceFactory(tenant=tenant, container_id="c"))
    return ExecFactory(**fields)


def _ago(seconds):
    return timezone.now() - timedelta(seconds=seconds)


def test_stale_running_exec_becomes_lost_once_and_frees_its_slot(tenant):
    TenantPolicy.objects.filter(tenant=tenant).update(max_concurrent_execs=1)
    stale = _exec(tenant, status=ExecStatus.RUNNING, heartbeat_at=_ago(120), last_seq=1)
    ExecChunkFactory(exec=stale, seq=1, data=b"kept\n")
    # stored after its last heartbeat, so not yet counted in last_seq
    ExecChunkFactory(exec=stale, seq=2, data=b"late\n")
    waiting = _exec(tenant, workspace=stale.workspace, status=ExecStatus.QUEUED)
    fresh = _exec(tenant, status=ExecStatus.RUNNING, heartbeat_at=timezone.now())

    report = exec_reconcile(senders=SENDERS, stale_after_s=30)
    assert report.lost == [stale.public_id]
    stale.refresh_from_db()
    waiting.refresh_from_db()
    fresh.refresh_from_db()
    assert (stale.status, stale.error_code) == (ExecStatus.LOST, "runner_lost")
    assert waiting.status == ExecStatus.STARTING  # the freed slot went to the queued one
    assert fresh.status == ExecStatus.RUNNING
    assert list(stale.chunks.values_list("data", flat=True)) == [b"kept\n", b"late\n"]
    assert stale.last_seq == 2  # a poll after seq 1 is not "complete" before seq 2
    assert exec_reconcile(senders=SENDERS, stale_after_s=30).lost == []


def test_periodic_task_runs_the_reconciliation(tenant):
    stale = _exec(tenant, status=ExecStatus.RUNNING, heartbeat_at=_ago(3600))
    exec_reconcile_task.apply()
    stale.refresh_from_db()
    assert stale.status == ExecStatus.LOST


def test_a_client_looking_at_a_stale_exec_sees_it_lost(tenant, actor):
    stale = _exec(tenant, status=ExecStatus.RUNNING, heartbeat_at=_ago(10), last_seq=0)
    assert exec_poll(actor=actor, exec_id=stale.public_id).status == "running"
    with override_settings(DEVBENCH_EXEC_STALE_AFTER_S=5):
        result = exec_poll(actor=actor, exec_id=stale.public_id)
    assert (result.status, result.complete, result.error_code) == ("lost", True, "runner_lost")


def test_a_client_waiting_for_a_stale_exec_sees_it_lost_at_once(tenant):
    from execution.services import exec_wait

    stale = _exec(tenant, status=ExecStatus.RUNNING, heartbeat_at=_ago(10), last_seq=0)
    assert exec_wait(exec_=stale, timeout_s=0).status == ExecStatus.RUNNING
    with override_settings(DEVBENCH_EXEC_STALE_AFTER_S=5):
        waited = exec_wait(exec_=stale, timeout_s=30)  # no message will come: the check ends it
    assert (waited.status, waited.error_code) == (ExecStatus.LOST, "runner_lost")


def test_an_unclaimed_exec_is_sent_again(tenant):
    stuck = _exec(tenant, status=ExecStatus.STARTING, dispatched_at=_ago(3600))
    recent = _exec(tenant, status=ExecStatus.STARTING, dispatched_at=timezone.now())
    assert exec_reconcile(senders=SENDERS).redispatched == [stuck.public_id]
    assert recent.public_id not in exec_reconcile(senders=SENDERS).redispatched


def test_queued_execs_of_a_stopped_workspace_fail(tenant):
    workspace = WorkspaceFactory(tenant=tenant, status="stopped", container_id="c")
    queued = _exec(tenant, workspace=workspace, status=ExecStatus.QUEUED)
    exec_reconcile(senders=SENDERS)
    queued.refresh_from_db()
    assert (queued.status, queued.error_code) == (ExecStatus.FAILED, "workspace_not_running")


def test_admin_shows_only_the_own_tenants_execs_and_never_env(tenant):
    other = TenantFactory()
    mine = _exec(tenant, env={"TOKEN": "hidden-value"})
    theirs = _exec(other)
    admin_user = UserFactory(is_staff=True)
    MembershipFactory(user=admin_user, tenant=tenant, role="admin")
    client = Client()
    client.force_login(admin_user)
    listing = client.get("/admin/execution/exec/").content.decode()
    assert mine.public_id in listing and theirs.public_id not in listing
    detail = client.get(f"/admin/execution/exec/{mine.pk}/change/")
    assert detail.status_code == 200 and "hidden-value" not in detail.content.decode()
    assert client.get(f"/admin/execution/exec/{theirs.pk}/change/").status_code == 302


def test_a_queued_exec_with_a_free_slot_is_admitted(tenant):
    queued = _exec(tenant, status=ExecStatus.QUEUED)  # e.g. the admitting process died
    assert exec_reconcile(senders=SENDERS).admitted == [queued.public_id]
    queued.refresh_from_db()
    assert queued.status == ExecStatus.STARTING and queued.dispatched_at is not None


@pytest.mark.django_db(transaction=True)
def test_an_exec_queued_as_the_slot_frees_is_admitted_at_once(tenant, actor, monkeypatch):
    """The running exec ends (without the workspace lock) after the new one counted it but
    before the new one's insert is visible: its look for queued execs finds nothing, so the
    new one's creator must look again once committed, not leave it for reconciliation."""
    import threading

    from django.db import connection

    from execution import services, state
    from execution.state import Senders

    TenantPolicy.objects.filter(tenant=tenant).update(max_concurrent_execs=1)
    running = _exec(tenant, status=ExecStatus.RUNNING, heartbeat_at=timezone.now())
    sent: list[int] = []
    recording = Senders(
        run=lambda pk, queue, row=None: sent.append(pk), kill=lambda pk, queue: None
    )
    monkeypatch.setattr(services, "SENDERS", recording)
    real_count = services._slots_taken

    def count_then_the_runner_ends(workspace):
        counted = real_count(workspace)

        def end() -> None:
            try:
                assert state.end_run(
                    running, ExecStatus.COMPLETED, last_seq=0, exit_code=0, senders=recording
                )
            finally:
                connection.close()

        ender = threading.Thread(target=end)
        ender.start()
        ender.join(30)
        return counted

    monkeypatch.setattr(services, "_slots_taken", count_then_the_runner_ends)
    queued = services.exec_start(actor=actor, workspace=running.workspace, cmd=["true"], queue=True)
    assert queued.status == ExecStatus.STARTING  # not left queued until reconciliation
    queued.refresh_from_db()
    assert queued.status == ExecStatus.STARTING and sent == [queued.pk]
