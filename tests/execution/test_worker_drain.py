"""SIGTERM to a worker mid-exec: short execs finish, long ones end cleanly, none is orphaned."""

from __future__ import annotations

import signal
import uuid

import pytest
from django.test import override_settings

from execution.models import Exec, ExecChunk, ExecStatus
from execution.services import exec_start
from execution.tasks import SENDERS
from execution.worker import exec_reconcile
from tests.execution.helpers import leftovers
from tests.processes import wait_for
from workspaces.models import Workspace

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def test_sigterm_drains_the_worker(running_workspace, actor, start_worker):
    node = f"drain-{uuid.uuid4().hex[:6]}"
    with override_settings(DEVBENCH_NODE=node):
        worker = start_worker("drainer", {"DEVBENCH_WORKER_DRAIN_TIMEOUT_S": "4"})
    home = running_workspace.node
    Workspace.objects.filter(pk=running_workspace.pk).update(node=node)
    running_workspace.refresh_from_db()
    try:
        _drain(running_workspace, actor, worker)
    finally:  # the drained node's agent is gone: the fixture removes it through its own node
        Workspace.objects.filter(pk=running_workspace.pk).update(node=home)
        running_workspace.refresh_from_db()


def _drain(running_workspace, actor, worker):

    endless = 'i=0; while :; do echo "tick $i"; i=$((i+1)); sleep 0.1; done'
    long = exec_start(actor=actor, workspace=running_workspace, cmd=["sh", "-c", endless])
    short = exec_start(
        actor=actor, workspace=running_workspace, cmd=["sh", "-c", "sleep 2; echo done"]
    )
    wait_for(lambda: ExecChunk.objects.filter(exec=long).count() >= 3, what="output")
    wait_for(lambda: Exec.objects.get(pk=short.pk).status == ExecStatus.RUNNING, what="short start")

    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=120) == 0  # a clean exit, within the drain

    short.refresh_from_db()
    assert (short.status, short.exit_code) == (ExecStatus.COMPLETED, 0)
    long.refresh_from_db()
    assert (long.status, long.error_code) == (ExecStatus.FAILED, "worker_shutdown")
    assert long.finished_at is not None
    # Its output up to the shutdown is stored, in order, with nothing lost in between.
    data = b"".join(
        bytes(d)
        for d in ExecChunk.objects.filter(exec=long).order_by("seq").values_list("data", flat=True)
    ).decode()
    assert data == "".join(f"tick {i}\n" for i in range(data.count("\n")))
    assert data.count("\n") >= 3
    # Its processes are gone and reconciliation finds nothing to repair.
    assert not leftovers(running_workspace, 'echo "tick')
    assert exec_reconcile(senders=SENDERS, stale_after_s=1).lost == []
    log = worker.log_path.read_text()
    assert "worker draining" in log
