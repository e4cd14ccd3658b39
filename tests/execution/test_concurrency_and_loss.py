"""Concurrency limits across processes, and execs whose worker dies."""

import threading
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from execution.errors import ConcurrencyLimitExceeded
from execution.models import Exec, ExecChunk, ExecStatus
from execution.services import exec_cancel, exec_poll, exec_start, exec_wait
from execution.tasks import SENDERS
from execution.worker import exec_reconcile
from tenants.models import TenantPolicy
from tests.execution.helpers import leftovers
from tests.processes import wait_for
from workspaces.models import Workspace

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]


def _limit(tenant, n):
    TenantPolicy.objects.filter(tenant=tenant).update(max_concurrent_execs=n)


def test_simultaneous_starts_never_exceed_the_limit(running_workspace, actor, tenant):
    _limit(tenant, 2)
    barrier = threading.Barrier(6)
    results: list[Exec | ConcurrencyLimitExceeded] = []

    def start():
        try:
            barrier.wait()
            results.append(
                exec_start(actor=actor, workspace=running_workspace, cmd=["sleep", "600"])
            )
        except ConcurrencyLimitExceeded as exc:
            results.append(exc)
        finally:
            connection.close()  # each thread had its own connection, like separate processes

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    started = [r for r in results if isinstance(r, Exec)]
    refused = [r for r in results if isinstance(r, ConcurrencyLimitExceeded)]
    assert len(started) == 2 and len(refused) == 4
    assert {(e.code, e.http_status) for e in refused} == {("concurrency_limit_exceeded", 429)}
    assert refused[0].extra["limit"] == 2
    for exec_ in started:
        exec_cancel(actor=actor, exec_id=exec_.public_id)


def test_queued_execs_start_as_slots_free_across_two_workers(
    running_workspace, actor, tenant, start_worker
):
    start_worker("second")  # two worker processes now serve the node queue
    _limit(tenant, 2)
    execs = [
        exec_start(
            actor=actor,
            workspace=running_workspace,
            cmd=["sh", "-c", f"echo {i}; sleep 0.3"],
            queue=True,
        )
        for i in range(6)
    ]
    assert [e.status for e in execs] == ["starting"] * 2 + ["queued"] * 4
    for exec_ in execs:
        exec_wait(exec_=exec_, timeout_s=60)
    assert [e.status for e in execs] == ["completed"] * 6
    # At no moment did more than 2 run: sweep the [started, finished] intervals.
    events = sorted(
        [(e.started_at, 1) for e in execs] + [(e.finished_at, -1) for e in execs],
        key=lambda ev: (ev[0], ev[1]),
    )
    running, peak = 0, 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 2
    print("runners:", sorted({e.worker.split("/")[0] for e in execs}))


def test_a_worker_killed_mid_exec_leaves_it_lost_with_its_output(
    running_workspace, actor, start_worker
):
    node = f"victim-{uuid.uuid4().hex[:6]}"
    with override_settings(DEVBENCH_NODE=node):
        victim = start_worker("victim")  # the only worker on this node's queue
    Workspace.objects.filter(pk=running_workspace.pk).update(node=node)
    running_workspace.refresh_from_db()
    # A writer, and a process that writes nothing: with its reader gone, the writer may
    # die at its next write (a broken pipe); the silent one keeps running.
    script = 'sleep 4321 & i=0; while :; do echo "line $i"; i=$((i+1)); sleep 0.05; done'
    exec_ = exec_start(actor=actor, workspace=running_workspace, cmd=["sh", "-c", script])
    wait_for(lambda: ExecChunk.objects.filter(exec=exec_).count() >= 5, what="output")

    victim.proc.kill()  # SIGKILL: no chance to clean up
    victim.proc.wait()
    kept = list(ExecChunk.objects.filter(exec=exec_).order_by("seq").values_list("seq", "data"))
    exec_.refresh_from_db()
    assert exec_.status == ExecStatus.RUNNING and exec_.worker.startswith("victim@")

    wait_for(
        lambda: (
            (Exec.objects.get(pk=exec_.pk).heartbeat_at or timezone.now())
            < timezone.now() - timedelta(seconds=3)
        ),
        what="the heartbeat to go stale",
    )
    report = exec_reconcile(senders=SENDERS, stale_after_s=3)
    assert report.lost == [exec_.public_id]
    exec_.refresh_from_db()
    assert (exec_.status, exec_.error_code) == (ExecStatus.LOST, "runner_lost")

    after = list(ExecChunk.objects.filter(exec=exec_).order_by("seq").values_list("seq", "data"))
    assert after == kept  # every chunk stored before the crash is intact
    assert [seq for seq, _ in after] == list(range(1, len(after) + 1))
    text = b"".join(bytes(d) for _, d in after).decode()
    assert text == "".join(f"line {i}\n" for i in range(text.count("\n")))
    result = exec_poll(actor=actor, exec_id=exec_.public_id)
    assert result.complete and result.status == "lost"
    assert exec_reconcile(senders=SENDERS, stale_after_s=3).lost == []  # exactly one terminal state

    # The orphaned processes die once a worker serves the node again (the kill task waited).
    assert leftovers(running_workspace, "sleep 4321")
    with override_settings(DEVBENCH_NODE=node):
        start_worker("victim2")
    wait_for(
        lambda: not any(leftovers(running_workspace, n) for n in ('echo "line', "sleep 4321")),
        what="the orphans to die",
    )
    # Back on this process's node: the fixture's kill needs no worker of the victim node.
    Workspace.objects.filter(pk=running_workspace.pk).update(node=settings.DEVBENCH_NODE)
