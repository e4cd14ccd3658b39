"""A runner's heartbeat: one statement that touches a running exec and tells the runner
whether to stop its processes (a cancel was requested, or someone else ended it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from execution import state
from execution.models import Exec, ExecStatus
from tests.execution.helpers import leftovers, run_in_thread
from tests.factories import ExecFactory, WorkspaceFactory
from tests.processes import wait_for


@pytest.mark.django_db
def test_a_running_exec_is_touched_with_its_accounting() -> None:
    exec_ = ExecFactory(workspace=WorkspaceFactory(), status=ExecStatus.RUNNING)
    before = timezone.now()
    stop = state.heartbeat(
        exec_.pk,
        {"last_seq": 7, "first_seq": 2, "truncated": True, "stdout_bytes": 70, "stderr_bytes": 3},
    )
    assert stop is False
    exec_.refresh_from_db()
    assert exec_.heartbeat_at is not None and exec_.heartbeat_at >= before
    assert (exec_.last_seq, exec_.first_seq, exec_.truncated) == (7, 2, True)
    assert (exec_.stdout_bytes, exec_.stderr_bytes) == (70, 3)


@pytest.mark.django_db
def test_a_requested_cancel_stops_the_runner() -> None:
    exec_ = ExecFactory(
        workspace=WorkspaceFactory(),
        status=ExecStatus.RUNNING,
        cancel_requested_at=timezone.now(),
    )
    assert state.heartbeat(exec_.pk, {"last_seq": 1}) is True
    exec_.refresh_from_db()
    assert exec_.heartbeat_at is not None and exec_.last_seq == 1


@pytest.mark.django_db
@pytest.mark.parametrize("status", [ExecStatus.LOST, ExecStatus.COMPLETED, ExecStatus.CANCELLED])
def test_an_exec_someone_else_ended_stops_the_runner_and_is_left_as_it_is(status: str) -> None:
    stale = timezone.now() - timedelta(minutes=5)
    exec_ = ExecFactory(workspace=WorkspaceFactory(), status=status, heartbeat_at=stale, last_seq=4)
    assert state.heartbeat(exec_.pk, {"last_seq": 9}) is True
    exec_.refresh_from_db()
    assert (exec_.status, exec_.heartbeat_at, exec_.last_seq) == (status, stale, 4)


@pytest.mark.django_db
def test_a_deleted_exec_stops_the_runner() -> None:
    exec_ = ExecFactory(workspace=WorkspaceFactory(), status=ExecStatus.RUNNING)
    pk = exec_.pk
    exec_.delete()
    assert state.heartbeat(pk, {"last_seq": 1}) is True


_ON_SQLITE = """
import json, django
django.setup()
from django.core.management import call_command
from django.utils import timezone
from execution import state
from execution.models import Exec, ExecStatus
from tests.factories import ExecFactory, WorkspaceFactory
call_command("migrate", verbosity=0)
exec_ = ExecFactory(workspace=WorkspaceFactory(), status=ExecStatus.RUNNING)
seen = [state.heartbeat(exec_.pk, {"last_seq": 3})]
Exec.objects.filter(pk=exec_.pk).update(cancel_requested_at=timezone.now())
seen.append(state.heartbeat(exec_.pk, {"last_seq": 4}))
Exec.objects.filter(pk=exec_.pk).update(status=ExecStatus.LOST)
seen.append(state.heartbeat(exec_.pk, {"last_seq": 5}))
print(json.dumps([seen, Exec.objects.get(pk=exec_.pk).last_seq]))
"""


def test_the_embedded_modes_sqlite_reads_the_statement_alike(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DJANGO_SETTINGS_MODULE="devbench_site.settings", DEVBENCH_VAR_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", _ON_SQLITE],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen, last_seq = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == [False, True, True]  # running; cancel requested; ended by someone else
    assert last_seq == 4  # the ended exec was left as it was


@pytest.fixture
def quick_beats(settings: Any, monkeypatch: Any) -> None:
    from execution import runner

    monkeypatch.setattr(runner, "FIRST_BEAT_S", 0.2)
    settings.DEVBENCH_EXEC_HEARTBEAT_S = 1


def test_the_heartbeat_stops_the_processes_of_an_exec_marked_lost(
    running_workspace: Any, quick_beats: None
) -> None:
    """Reconciliation marked the exec lost while its runner still ran it (a long stall):
    the runner's next beat stops its processes and leaves the exec lost."""
    exec_ = ExecFactory(
        workspace=running_workspace, cmd=["sleep", "9011"], status=ExecStatus.STARTING
    )
    run = run_in_thread(exec_)
    try:
        wait_for(lambda: leftovers(running_workspace, "sleep 9011"), timeout_s=30)
        Exec.objects.filter(pk=exec_.pk).update(status=ExecStatus.LOST, error_code="runner_lost")
        wait_for(lambda: not leftovers(running_workspace, "sleep 9011"), timeout_s=30)
    finally:
        run.join(timeout=60)
    assert not run.is_alive()
    exec_.refresh_from_db()
    assert (exec_.status, exec_.error_code) == (ExecStatus.LOST, "runner_lost")


def test_the_heartbeat_acts_on_a_cancel_without_the_kill_task(
    running_workspace: Any, quick_beats: None
) -> None:
    """A cancel recorded while the kill task could not run (its message lost): the runner's
    beat reads the request, stops the processes and ends the exec cancelled."""
    exec_ = ExecFactory(
        workspace=running_workspace, cmd=["sleep", "9012"], status=ExecStatus.STARTING
    )
    run = run_in_thread(exec_)
    try:
        wait_for(lambda: leftovers(running_workspace, "sleep 9012"), timeout_s=30)
        assert state.request_cancel(exec_)
    finally:
        run.join(timeout=60)
    assert not run.is_alive()
    exec_.refresh_from_db()
    assert exec_.status == ExecStatus.CANCELLED
    assert leftovers(running_workspace, "sleep 9012") == []
