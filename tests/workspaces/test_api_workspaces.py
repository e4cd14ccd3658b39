"""REST: /api/v1/workspaces against the real worker and engine."""

from __future__ import annotations

from typing import Any

import pytest

from tenants.models import AuditEvent
from tests.conftest import client_for
from tests.isolation import assert_like_missing, rest_answer
from tests.processes import wait_for
from workspaces.models import Workspace

pytestmark = [pytest.mark.docker, pytest.mark.integration]

URL = "/api/v1/workspaces"


def _spawn(api, **body):
    return api.post(URL, body, content_type="application/json")


def test_spawn_answers_201_running_or_202_creating(live_worker, api, tenant, kill_after):
    running = _spawn(api, image="devbench/busybox", alias="one", limits={"memory_mb": 128})
    assert running.status_code == 201, running.content
    body = running.json()
    kill_after.append(Workspace.objects.get(public_id=body["id"]))
    assert body["status"] == "running"
    assert body["container_id"] == body["id"] and body["id"].startswith("ws_")
    assert body["alias"] == "one" and body["image"] == "devbench/busybox:latest"
    assert body["limits"] == {"memory_mb": 128, "cpus": 1.0, "pids": 256}

    pending = _spawn(api, image="devbench/busybox", wait=False)
    assert pending.status_code == 202
    assert pending.json()["status"] == "creating"
    ws_id = pending.json()["id"]
    kill_after.append(Workspace.objects.get(public_id=ws_id))
    wait_for(
        lambda: api.get(f"{URL}/{ws_id}").json()["status"] == "running", what="202 spawn to run"
    )


def test_idempotency_key_header_replays(live_worker, api, tenant, kill_after):
    headers = {"HTTP_IDEMPOTENCY_KEY": "abc"}
    first = api.post(URL, {"wait": False}, content_type="application/json", **headers)
    second = api.post(URL, {"wait": True}, content_type="application/json", **headers)
    kill_after.append(Workspace.objects.get(public_id=first.json()["id"]))
    assert first.status_code == 202 and second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    clash = api.post(URL, {"idempotency_key": "xyz"}, content_type="application/json", **headers)
    assert clash.status_code == 422 and clash.json()["code"] == "invalid_idempotency_key"


def test_list_get_attach_stats_kill(live_worker, api, tenant, kill_after):
    ws = _spawn(api, image="devbench/busybox", alias="box").json()
    kill_after.append(Workspace.objects.get(public_id=ws["id"]))

    listed = api.get(URL).json()
    assert [w["id"] for w in listed["items"]] == [ws["id"]] and not listed["has_more"]
    assert api.get(f"{URL}/box").json()["id"] == ws["id"]
    assert api.get(URL, {"status": "creating"}).json()["items"] == []

    attach = api.post(
        f"{URL}/box/attach", {"client_name": "ide", "session_id": "s1"}, "application/json"
    )
    assert attach.status_code == 201
    assert attach.json() | {"attachment_id": 0} == {
        "container_id": ws["id"],
        "alias": "box",
        "roots": ["/workspace"],
        "attachment_id": 0,
        "status": "running",
    }

    stats = api.get(f"{URL}/{ws['id']}/stats")
    assert stats.status_code == 200
    assert stats.json()["memory_limit_mb"] == 512.0 and stats.json()["pids"] >= 1

    killed = api.delete(f"{URL}/box")
    assert killed.status_code == 200 and killed.json()["status"] == "removed"
    assert api.get(URL).json()["items"] == []
    assert len(api.get(URL, {"include_removed": True}).json()["items"]) == 1
    assert api.get(f"{URL}/box").status_code == 404  # the alias is free again
    gone = api.get(f"{URL}/{ws['id']}/stats")
    assert gone.status_code == 409 and gone.json()["code"] == "workspace_not_running"
    assert gone.json()["extra"]["status"] == "removed"
    assert (
        AuditEvent.objects.filter(
            action__in=["workspace.spawn", "workspace.attach", "workspace.kill"], outcome="success"
        ).count()
        == 3
    )


def test_errors_have_codes_not_500s(live_worker, api, tenant, make_token):
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"image": "ubuntu"}, 403, "image_not_allowed"),
        ({"image": "devbench/none"}, 422, "image_not_found"),
        ({"image": "%%%"}, 422, "invalid_image_reference"),
        ({"limits": {"pids": 100000}}, 403, "policy_denied"),
        ({"limits": {"pids": 0}}, 422, "invalid_limits"),
        ({"ttl_s": 10, "persistent": True}, 422, "ttl_with_persistent"),
        ({"alias": "-bad-"}, 422, "invalid_alias"),
        ({"persistent": "maybe"}, 422, "validation_failed"),
    ]
    for body, status, code in cases:
        response = _spawn(api, **body)
        assert (response.status_code, response.json()["code"]) == (status, code), body
    assert "ubuntu" in _spawn(api, image="ubuntu").json()["message"]
    assert not Workspace.objects.filter(tenant=tenant).exists()

    reader = client_for(make_token(tenant, scopes=("read",)))
    denied = reader.post(URL, {}, content_type="application/json")
    assert denied.status_code == 403 and denied.json()["code"] == "scope_required"
    assert reader.get(URL).status_code == 200
    admin_only = reader.post("/api/v1/maintenance/reconcile")
    assert admin_only.status_code == 403 and admin_only.json()["code"] == "scope_required"


def test_another_tenants_workspace_is_404_everywhere(
    live_worker, api, tenant, other_tenant, make_token, kill_after
):
    theirs_client = client_for(make_token(other_tenant))
    theirs = _spawn(theirs_client, image="devbench/busybox", alias="secret").json()
    kill_after.append(Workspace.objects.get(public_id=theirs["id"]))

    missing_id = api.get(f"{URL}/ws_doesnotexist0000")
    assert missing_id.status_code == 404
    for ref in (theirs["id"], "secret"):
        missing = api.get(f"{URL}/ws_doesnotexist0000" if ref.startswith("ws_") else f"{URL}/nope")
        requests: list[tuple[str, str, dict[str, Any] | None]] = [
            ("get", f"{URL}/{ref}", None),
            ("get", f"{URL}/{ref}/stats", None),
            ("post", f"{URL}/{ref}/pause", {}),
            ("post", f"{URL}/{ref}/resume", {}),
            ("delete", f"{URL}/{ref}", None),
            ("post", f"{URL}/{ref}/attach", {}),
        ]
        for method, path, body in requests:
            kwargs = {"content_type": "application/json"} if body is not None else {}
            response = (
                getattr(api, method)(path, body, **kwargs)
                if body is not None
                else (getattr(api, method)(path))
            )
            assert response.status_code == 404, (method, path)
            assert_like_missing(
                rest_answer(response),
                rest_answer(missing),
                theirs_id=ref,
                missing_id="ws_doesnotexist0000" if ref.startswith("ws_") else "nope",
                code="workspace_not_found",
            )
    assert api.get(URL, {"include_removed": True}).json()["items"] == []
    assert api.get(URL, {"alias": "secret"}).json()["items"] == []
    # Still alive for its owner.
    assert theirs_client.get(f"{URL}/secret").json()["status"] == "running"
