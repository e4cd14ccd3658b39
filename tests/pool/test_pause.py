"""Pause on idle, resume on use: real engine, PostgreSQL, Redis, Celery worker, daphne."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from execution.services import exec_run
from tenants.models import AuditEvent
from tests.conftest import client_for
from tests.factories import MembershipFactory, UserFactory
from tests.mcp_live import error_code, live_mcp, mcp_call, mcp_server_process, ok  # noqa: F401
from tests.pool.conftest import policy_set
from tests.processes import wait_for
from tests.web.conftest import signed_in
from workspaces import reconcile
from workspaces.models import Workspace, WorkspaceStatus
from workspaces.runtime import get_driver
from workspaces.services import workspace_pause, workspace_spawn
from workspaces.suspend import idle_pause_due

pytestmark = [pytest.mark.docker, pytest.mark.integration]

BUSYBOX = "devbench/busybox:latest"
URL = "/api/v1/workspaces"
# A background process that outlives its exec and writes a counter every 0.2 s.
# A background process counting in /workspace/tick, replaced whole (a `>` alone truncates
# first: a reader could see the file empty between truncate and write).
TICKER = "setsid sh -c 'echo $$ > /workspace/ticker.pid; i=0; while :; do i=$((i+1)); echo $i > /workspace/tick.new; mv /workspace/tick.new /workspace/tick; sleep 0.2; done' >/dev/null 2>&1 &"  # noqa: E501


def _engine_status(workspace: Workspace) -> str:
    return get_driver().inspect(workspace.container_id).status


def _run(actor: Any, workspace: Workspace, script: str) -> str:
    result = exec_run(actor=actor, workspace=workspace, cmd=["sh", "-c", script])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.error)
    return result.stdout.strip()


def test_idle_workspace_is_paused_and_resumed_by_the_next_exec(
    live_worker, actor, tenant, kill_after
):
    policy_set(tenant, idle_timeout_s=60)
    workspace = workspace_spawn(actor=actor, image=BUSYBOX)
    kill_after.append(workspace)
    _run(actor, workspace, "echo kept > /workspace/file.txt; " + TICKER)
    ticker_pid = _run(actor, workspace, "sleep 0.5; cat /workspace/ticker.pid")
    assert ticker_pid

    assert idle_pause_due() == []  # active a moment ago: not idle yet
    Workspace.objects.filter(pk=workspace.pk).update(
        last_active_at=timezone.now() - timedelta(seconds=61)
    )
    assert idle_pause_due() == [workspace.public_id]
    workspace.refresh_from_db()
    assert workspace.status == WorkspaceStatus.PAUSED and workspace.paused_at is not None
    assert _engine_status(workspace) == "paused"
    time.sleep(0.6)  # the ticker is frozen: the counter does not move while paused

    # An exec on it resumes it first and answers as usual.
    out = _run(actor, workspace, "cat /workspace/file.txt; echo hello")
    assert out.splitlines() == ["kept", "hello"]
    workspace.refresh_from_db()
    assert workspace.status == WorkspaceStatus.RUNNING and _engine_status(workspace) == "running"
    # The background process survived, the same process, and keeps counting.
    alive = "kill -0 $(cat /workspace/ticker.pid) && cat /workspace/ticker.pid"
    assert _run(actor, workspace, alive) == ticker_pid
    first = int(_run(actor, workspace, "cat /workspace/tick"))
    later = int(_run(actor, workspace, "sleep 0.6; cat /workspace/tick"))
    assert later > first
    assert AuditEvent.objects.filter(
        action="workspace.pause", target_id=workspace.public_id, details__reason="idle"
    ).exists()
    assert AuditEvent.objects.filter(
        action="workspace.resume", target_id=workspace.public_id, details__reason="activity"
    ).exists()


def test_a_busy_workspace_is_not_paused(live_worker, actor, tenant, kill_after):
    from execution.services import exec_start

    policy_set(tenant, idle_timeout_s=60)
    workspace = workspace_spawn(actor=actor, image=BUSYBOX)
    kill_after.append(workspace)
    exec_start(actor=actor, workspace=workspace, cmd=["sleep", "30"])
    Workspace.objects.filter(pk=workspace.pk).update(
        last_active_at=timezone.now() - timedelta(seconds=61)
    )
    assert idle_pause_due() == []
    workspace.refresh_from_db()
    assert workspace.status == WorkspaceStatus.RUNNING


def test_pause_and_resume_over_rest_with_errors_and_tenancy(
    live_worker, api, tenant, other_tenant, make_token, kill_after
):
    spawned = api.post(URL, {"image": BUSYBOX, "alias": "napper"}, content_type="application/json")
    assert spawned.status_code == 201, spawned.content
    assert spawned.json()["warm"] is False
    ref = spawned.json()["id"]
    workspace = Workspace.objects.get(public_id=ref)
    kill_after.append(workspace)

    paused = api.post(f"{URL}/napper/pause")
    assert paused.status_code == 200, paused.content
    assert paused.json()["status"] == "paused"
    assert api.post(f"{URL}/{ref}/pause").json()["status"] == "paused"  # again: no change
    assert api.get(f"{URL}?status=paused").json()["items"][0]["id"] == ref
    # Files of a paused workspace: read through transparently (it resumes).
    read = api.get(f"{URL}/{ref}/files/list?path=/workspace")
    assert read.status_code == 200, read.content
    assert api.get(f"{URL}/{ref}").json()["status"] == "running"

    api.post(f"{URL}/{ref}/pause")
    resumed = api.post(f"{URL}/{ref}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "running"
    assert api.post(f"{URL}/{ref}/resume").json()["status"] == "running"  # again: no change

    reader = client_for(make_token(tenant, scopes=("read",)))
    refused = reader.post(f"{URL}/{ref}/pause")
    assert refused.status_code == 403 and refused.json()["code"] == "scope_required"
    stranger = client_for(make_token(other_tenant))
    for action in ("pause", "resume"):
        answer = stranger.post(f"{URL}/{ref}/{action}")
        assert answer.status_code == 404 and answer.json()["code"] == "workspace_not_found"

    api.post(f"{URL}/{ref}/stop")
    wrong = api.post(f"{URL}/{ref}/resume")
    assert wrong.status_code == 409 and wrong.json()["code"] == "workspace_not_paused"
    wrong = api.post(f"{URL}/{ref}/pause")
    assert wrong.status_code == 409 and wrong.json()["code"] == "workspace_not_running"


def test_a_paused_workspace_whose_container_is_gone_answers_a_clear_error(
    live_worker, api, actor, engine, kill_after
):
    workspace = workspace_spawn(actor=actor, image=BUSYBOX)
    kill_after.append(workspace)
    workspace_pause(actor=actor, workspace=workspace)
    engine.containers.get(workspace.container_id).remove(force=True)
    answer = api.post(
        f"/api/v1/workspaces/{workspace.public_id}/execs",
        {"cmd": ["echo", "hi"]},
        content_type="application/json",
    )
    assert answer.status_code == 503, answer.content
    assert answer.json()["code"] == "workspace_resume_failed"
    assert answer.json()["extra"]["workspace_id"] == workspace.public_id


def test_ttl_still_removes_a_paused_workspace(live_worker, actor, kill_after):
    workspace = workspace_spawn(actor=actor, image=BUSYBOX, ttl_s=60)
    kill_after.append(workspace)
    workspace_pause(actor=actor, workspace=workspace)
    Workspace.objects.filter(pk=workspace.pk).update(expires_at=timezone.now())
    assert reconcile.workspace_expire_due() == [workspace.public_id]
    workspace.refresh_from_db()
    assert workspace.status == WorkspaceStatus.REMOVED
    assert not get_driver().list_by_labels({"devbench.workspace": workspace.public_id})


def test_persistent_paused_workspace_survives_a_platform_restart(
    live_worker, start_worker, actor, kill_after
):
    workspace = workspace_spawn(actor=actor, image=BUSYBOX, persistent=True)
    kill_after.append(workspace)
    _run(actor, workspace, "echo across > /workspace/keep.txt; " + TICKER)
    workspace_pause(actor=actor, workspace=workspace)

    # A new worker process reconciles its node when ready: a paused workspace stays paused.
    restarted = start_worker("restarted")
    wait_for(
        lambda: "workspaces.reconcile_node" in restarted.log_path.read_text(), what="reconcile"
    )
    reconcile.reconcile_node()
    workspace.refresh_from_db()
    assert workspace.status == WorkspaceStatus.PAUSED and _engine_status(workspace) == "paused"

    assert _run(actor, workspace, "cat /workspace/keep.txt") == "across"
    still = "sleep 0.3; kill -0 $(cat /workspace/ticker.pid) && echo alive"
    assert _run(actor, workspace, still) == "alive"


def test_pause_and_resume_over_mcp(live_mcp, live_worker, tenant, token, kill_after):  # noqa: F811
    url = live_mcp.mcp_url(tenant.slug)
    spawned = ok(mcp_call(url, token.raw, "spawn", {"image": BUSYBOX}))
    kill_after.append(Workspace.objects.get(public_id=spawned["id"]))
    assert spawned["warm"] is False
    paused = ok(mcp_call(url, token.raw, "pause", {"container_id": spawned["id"]}))
    assert paused["status"] == "paused"
    listed = ok(mcp_call(url, token.raw, "list_containers", {"status": "paused"}))
    assert [w["id"] for w in listed["items"]] == [spawned["id"]]
    ran = ok(
        mcp_call(url, token.raw, "exec_run", {"container_id": spawned["id"], "cmd": ["echo", "up"]})
    )
    assert ran["stdout"].strip() == "up"
    assert (
        ok(mcp_call(url, token.raw, "pause", {"container_id": spawned["id"]}))["status"] == "paused"
    )
    resumed = ok(mcp_call(url, token.raw, "resume", {"container_id": spawned["id"]}))
    assert resumed["status"] == "running"
    missing = mcp_call(url, token.raw, "resume", {"container_id": "ws_doesnotexist0000"})
    assert error_code(missing) == "workspace_not_found"


def test_pause_and_resume_from_the_web_ui(live_worker, tenant, actor, kill_after):
    user = UserFactory()
    MembershipFactory(user=user, tenant=tenant, role="member")
    web = signed_in(user)
    workspace = workspace_spawn(actor=actor, image=BUSYBOX)
    kill_after.append(workspace)
    args = {"tenant": tenant.slug, "ref": workspace.public_id}
    detail = web.get(reverse("web:workspace_detail", kwargs=args))
    assert reverse("web:workspace_pause", kwargs=args).encode() in detail.content
    answer = web.post(reverse("web:workspace_pause", kwargs=args))
    assert answer.status_code == 302
    workspace.refresh_from_db()
    assert workspace.status == WorkspaceStatus.PAUSED
    detail = web.get(reverse("web:workspace_detail", kwargs=args))
    assert b"badge-paused" in detail.content
    assert reverse("web:workspace_resume", kwargs=args).encode() in detail.content
    web.post(reverse("web:workspace_resume", kwargs=args))
    workspace.refresh_from_db()
    assert workspace.status == WorkspaceStatus.RUNNING
