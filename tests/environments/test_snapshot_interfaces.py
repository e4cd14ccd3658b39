"""Snapshots through REST, MCP and the admin: the same services, codes and tenant walls."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from tenants.models import AuditEvent, TenantPolicy
from tests.bodies import error_body
from tests.conftest import client_for
from tests.environments.conftest import BUSYBOX, sh
from tests.factories import MembershipFactory, TenantFactory, UserFactory
from tests.mcp_live import DaphneServer, error_code, mcp_call, ok
from workspaces.models import Snapshot, Workspace

pytestmark = [pytest.mark.docker, pytest.mark.integration]


def _json(response: Any) -> Any:
    return json.loads(response.content) if response.content else None


def _post(client: Client, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, json.dumps(body), content_type="application/json")


def test_rest_snapshot_spawn_fork_delete(live_worker, api, tenant, make_token, kill_after):
    spawned = _post(api, "/api/v1/workspaces", {"image": BUSYBOX, "alias": "src"})
    assert spawned.status_code == 201
    source = Workspace.objects.get(public_id=_json(spawned)["id"])
    kill_after.append(source)
    sh(source, "echo hello > /workspace/greeting; chmod 640 /workspace/greeting")

    created = _post(api, "/api/v1/workspaces/src/snapshots", {"name": "v1", "description": "x"})
    assert created.status_code == 201, created.content
    snap = _json(created)
    assert snap["id"].startswith("sn_") and snap["status"] == "ready"
    assert snap["name"] == "v1" and snap["source_workspace"] == source.public_id
    assert snap["base_image"] == BUSYBOX and snap["size_bytes"] >= 0
    assert "devbench-snapshots" not in json.dumps(snap)  # the engine image is never exposed

    listed = _json(api.get("/api/v1/snapshots"))
    assert [s["id"] for s in listed["items"]] == [snap["id"]]
    assert _json(api.get(f"/api/v1/snapshots/{snap['id']}"))["name"] == "v1"

    restored = _post(api, "/api/v1/workspaces", {"snapshot": snap["id"]})
    assert restored.status_code == 201, restored.content
    restored_ws = Workspace.objects.get(public_id=_json(restored)["id"])
    kill_after.append(restored_ws)
    assert _json(restored)["snapshot"] == snap["id"]
    assert sh(restored_ws, "cat /workspace/greeting; stat -c %a /workspace/greeting") == (
        "hello\n640\n"
    )

    forked = _post(api, "/api/v1/workspaces/src/fork", {"alias": "copy"})
    assert forked.status_code == 201, forked.content
    fork_ws = Workspace.objects.get(public_id=_json(forked)["id"])
    kill_after.append(fork_ws)
    assert fork_ws.alias == "copy" and sh(fork_ws, "cat /workspace/greeting") == "hello\n"

    in_use = api.delete(f"/api/v1/snapshots/{snap['id']}")
    assert in_use.status_code == 409 and _json(in_use)["code"] == "snapshot_in_use"
    assert api.delete(f"/api/v1/workspaces/{restored_ws.public_id}?force=true").status_code == 200
    assert api.delete(f"/api/v1/snapshots/{snap['id']}").status_code == 204
    missing = api.get(f"/api/v1/snapshots/{snap['id']}")
    assert missing.status_code == 404 and _json(missing)["code"] == "snapshot_not_found"

    both = _post(api, "/api/v1/workspaces", {"image": BUSYBOX, "snapshot": "sn_x"})
    assert both.status_code == 422 and _json(both)["code"] == "image_and_snapshot"

    TenantPolicy.objects.filter(tenant=tenant).update(max_snapshots=1)  # the fork's one is left
    refused = _post(api, "/api/v1/workspaces/src/snapshots", {"name": "v2"})
    assert refused.status_code == 429 and _json(refused)["code"] == "snapshot_quota_exceeded"


def test_rest_another_tenant_sees_nothing(live_worker, api, tenant, make_token, kill_after):
    spawned = _json(_post(api, "/api/v1/workspaces", {"image": BUSYBOX}))
    kill_after.append(Workspace.objects.get(public_id=spawned["id"]))
    snap = _json(_post(api, f"/api/v1/workspaces/{spawned['id']}/snapshots", {"name": "a"}))
    other = client_for(make_token(TenantFactory(), scopes=("read", "write", "admin")))

    assert _json(other.get("/api/v1/snapshots"))["items"] == []
    for response in (
        other.get(f"/api/v1/snapshots/{snap['id']}"),
        other.delete(f"/api/v1/snapshots/{snap['id']}"),
        _post(other, "/api/v1/workspaces", {"snapshot": snap["id"]}),
    ):
        assert response.status_code == 404
        assert error_body(response) == {
            "code": "snapshot_not_found",
            "message": f"Snapshot '{snap['id']}' not found.",
            "extra": {"snapshot_id": snap["id"]},
        }
    for url in (
        f"/api/v1/workspaces/{spawned['id']}/fork",
        f"/api/v1/workspaces/{spawned['id']}/snapshots",
    ):
        response = _post(other, url, {})
        assert response.status_code == 404 and _json(response)["code"] == "workspace_not_found"
    assert Snapshot.objects.filter(public_id=snap["id"]).exists()


@pytest.fixture
def server(live_mcp: DaphneServer, live_worker: Any) -> DaphneServer:
    return live_mcp


def test_mcp_snapshot_tools(server, tenant, token, make_token, kill_after):
    url = server.mcp_url(tenant.slug)
    spawned = ok(mcp_call(url, token.raw, "spawn", {"image": BUSYBOX, "alias": "m"}))
    source = Workspace.objects.get(public_id=spawned["id"])
    kill_after.append(source)
    sh(source, "mkdir -p /workspace/a/b && echo data > /workspace/a/b/f")

    snap = ok(mcp_call(url, token.raw, "snapshot_create", {"container_id": "m", "name": "n"}))
    assert snap["id"].startswith("sn_") and snap["status"] == "ready"
    listed = ok(mcp_call(url, token.raw, "snapshot_list", {}))
    assert [s["id"] for s in listed["snapshots"]] == [snap["id"]] and not listed["truncated"]

    restored = ok(mcp_call(url, token.raw, "spawn", {"snapshot": snap["id"]}))
    kill_after.append(Workspace.objects.get(public_id=restored["id"]))
    assert restored["snapshot"] == snap["id"]
    forked = ok(mcp_call(url, token.raw, "fork", {"container_id": "m", "alias": "mf"}))
    fork_ws = Workspace.objects.get(public_id=forked["id"])
    kill_after.append(fork_ws)
    assert sh(fork_ws, "cat /workspace/a/b/f") == "data\n"

    busy = mcp_call(url, token.raw, "snapshot_delete", {"snapshot_id": snap["id"]})
    assert error_code(busy) == "snapshot_in_use"

    other_token = make_token(TenantFactory(), scopes=("read", "write"))
    other_url = server.mcp_url(other_token.tenant.slug)
    assert ok(mcp_call(other_url, other_token.raw, "snapshot_list", {}))["snapshots"] == []
    for name, args in (
        ("snapshot_delete", {"snapshot_id": snap["id"]}),
        ("spawn", {"snapshot": snap["id"]}),
    ):
        assert error_code(mcp_call(other_url, other_token.raw, name, args)) == "snapshot_not_found"
    for name in ("fork", "snapshot_create"):
        result = mcp_call(other_url, other_token.raw, name, {"container_id": spawned["id"]})
        assert error_code(result) == "workspace_not_found"
    assert AuditEvent.objects.filter(action="snapshot.create", outcome="success").count() == 2


@pytest.mark.django_db
def test_admin_lists_and_deletes_only_own_tenants_snapshots():
    a, b = TenantFactory(), TenantFactory()
    admin_a = UserFactory(is_staff=True)
    MembershipFactory(user=admin_a, tenant=a, role="admin")
    mine = Snapshot.objects.create(tenant=a, name="mine-snap", status="ready")
    theirs = Snapshot.objects.create(tenant=b, name="their-snap", status="ready")
    client = Client()
    client.force_login(admin_a)
    page = client.get("/admin/workspaces/snapshot/").content.decode()
    assert "mine-snap" in page and "their-snap" not in page
    assert client.get(f"/admin/workspaces/snapshot/{theirs.pk}/change/").status_code == 302
    response = client.post(
        "/admin/workspaces/snapshot/",
        {"action": "delete_snapshots", "_selected_action": [mine.pk, theirs.pk]},
    )
    assert response.status_code == 302
    assert not Snapshot.objects.filter(pk=mine.pk).exists()
    assert Snapshot.objects.filter(pk=theirs.pk).exists()
    assert AuditEvent.objects.get(action="snapshot.delete").target_id == mine.public_id
