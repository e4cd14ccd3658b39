"""REST stop/start: the container and its files stay; reconciliation respects a stop."""

from __future__ import annotations

import pytest

from tenants.models import AuditEvent
from tests.bodies import error_body
from tests.conftest import client_for
from workspaces import reconcile
from workspaces.models import Workspace
from workspaces.runtime import get_driver

pytestmark = [pytest.mark.docker, pytest.mark.integration]

URL = "/api/v1/workspaces"


def _post(api, path):
    return api.post(f"{URL}/{path}", content_type="application/json")


@pytest.mark.parametrize("persistent", [True, False])
def test_stop_then_start_keeps_files_and_survives_reconciliation(
    live_worker, api, kill_after, persistent
):
    spawned = api.post(
        URL,
        {"image": "devbench/busybox", "alias": "pausable", "persistent": persistent},
        content_type="application/json",
    )
    assert spawned.status_code == 201, spawned.content
    ref = spawned.json()["id"]
    workspace = Workspace.objects.get(public_id=ref)
    kill_after.append(workspace)
    put = api.put(
        f"{URL}/{ref}/files?path=/workspace/keep.txt",
        {"content": "still here", "encoding": "utf-8"},
        content_type="application/json",
    )
    assert put.status_code == 200, put.content

    stopped = _post(api, "pausable/stop")  # by alias
    assert stopped.status_code == 200, stopped.content
    assert stopped.json()["status"] == "stopped"
    assert get_driver().inspect(workspace.container_id).running is False
    assert _post(api, f"{ref}/stop").json()["status"] == "stopped"  # again: no change
    # Nothing works inside a stopped workspace, with a clear code.
    read = api.get(f"{URL}/{ref}/files?path=/workspace/keep.txt")
    assert read.status_code == 409 and read.json()["code"] == "workspace_not_running"

    reconcile.reconcile_node()  # a deliberate stop is not undone (persistent or not)
    workspace.refresh_from_db()
    assert workspace.status == "stopped"
    assert get_driver().inspect(workspace.container_id).running is False

    started = _post(api, f"{ref}/start")
    assert started.status_code == 200, started.content
    assert started.json()["status"] == "running"
    assert _post(api, f"{ref}/start").json()["status"] == "running"  # again: no change
    read = api.get(f"{URL}/{ref}/files?path=/workspace/keep.txt")
    assert read.status_code == 200 and read.json()["content"] == "still here"
    actions = set(
        AuditEvent.objects.filter(target_id=ref, outcome="success").values_list("action", flat=True)
    )
    assert {"workspace.stop", "workspace.start"} <= actions


def test_start_stop_errors_scopes_and_tenancy(
    live_worker, api, tenant, other_tenant, make_token, kill_after
):
    spawned = api.post(URL, {"image": "devbench/busybox"}, content_type="application/json")
    ref = spawned.json()["id"]
    kill_after.append(Workspace.objects.get(public_id=ref))

    reader = client_for(make_token(tenant, scopes=("read",)))
    refused = _post(reader, f"{ref}/stop")
    assert refused.status_code == 403 and refused.json()["code"] == "scope_required"

    stranger = client_for(make_token(other_tenant))
    for action in ("stop", "start"):
        foreign = _post(stranger, f"{ref}/{action}")
        missing = _post(stranger, f"ws_0000000000000000/{action}")
        assert foreign.status_code == missing.status_code == 404
        assert error_body(foreign) == {**error_body(missing), "message": foreign.json()["message"]}
        assert foreign.json()["code"] == "workspace_not_found"

    assert api.delete(f"{URL}/{ref}").status_code == 200
    for action, code in (("start", "workspace_not_stopped"), ("stop", "workspace_not_running")):
        answer = _post(api, f"{ref}/{action}")
        assert answer.status_code == 409, answer.content
        assert answer.json()["code"] == code
        assert answer.json()["extra"]["status"] == "removed"
