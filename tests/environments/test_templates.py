"""Templates: built from a Dockerfile on the node (log kept and followed), from an image,
spawned by name; failures show their log; tenants never see each other's."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from typing import Any

import pytest

from tests.conftest import client_for
from tests.environments.conftest import sh
from tests.factories import TenantFactory
from tests.mcp_live import mcp_call, ok
from workspaces.models import Template, Workspace

pytestmark = [pytest.mark.docker, pytest.mark.integration]

GOOD = """\
FROM devbench/busybox:latest
RUN echo building-step-one && mkdir -p /opt/tool && echo 42 > /opt/tool/answer
COPY hello.txt /opt/hello.txt
"""
BROKEN = """\
FROM devbench/busybox:latest
RUN echo before-the-failure && exit 3
"""


def _tar(files: dict[str, bytes]) -> str:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(out.getvalue()).decode()


def _post(client: Any, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, json.dumps(body), content_type="application/json")


def _follow_log(client: Any, template_id: str) -> tuple[str, dict[str, Any]]:
    """Read the log as it grows, the way a client follows a build."""
    text, offset = "", 0
    for _ in range(200):
        answer = client.get(f"/api/v1/templates/{template_id}/log?offset={offset}&wait_s=5")
        assert answer.status_code == 200, answer.content
        body = answer.json()
        assert body["offset"] == offset
        text += body["text"]
        offset = body["next_offset"]
        if body["done"]:
            return text, body
    raise AssertionError("the build never ended")


def test_dockerfile_template_builds_streams_its_log_and_spawns_by_name(
    live_worker, api, tenant, kill_after
):
    created = _post(
        api,
        "/api/v1/templates",
        {
            "name": "python-data",
            "dockerfile": GOOD,
            "context_tar_b64": _tar({"hello.txt": b"hello from the context\n"}),
        },
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["id"].startswith("tp_") and body["version"] == 1 and body["kind"] == "dockerfile"
    assert body["status"] == "building"

    log, end = _follow_log(api, body["id"])
    assert end["status"] == "ready", log
    assert "building-step-one" in log
    assert api.get(f"/api/v1/templates/{body['id']}").json()["build_log"] == log  # kept

    spawned = _post(api, "/api/v1/workspaces", {"template": "python-data"})
    assert spawned.status_code == 201, spawned.content
    workspace = Workspace.objects.get(public_id=spawned.json()["id"])
    kill_after.append(workspace)
    assert sh(workspace, "cat /opt/tool/answer /opt/hello.txt") == "42\nhello from the context\n"

    in_use = api.delete(f"/api/v1/templates/{body['id']}")
    assert in_use.status_code == 409 and in_use.json()["code"] == "template_in_use"

    rebuilt = api.post(f"/api/v1/templates/{body['id']}/build")
    assert rebuilt.status_code == 201 and rebuilt.json()["version"] == 2
    _, end = _follow_log(api, rebuilt.json()["id"])
    assert end["status"] == "ready"
    names = [(t["name"], t["version"]) for t in api.get("/api/v1/templates").json()["items"]]
    assert names == [("python-data", 2), ("python-data", 1)]


def test_a_broken_dockerfile_fails_with_its_log(live_worker, api, kill_after):
    created = _post(api, "/api/v1/templates", {"name": "broken", "dockerfile": BROKEN})
    assert created.status_code == 201, created.content
    log, end = _follow_log(api, created.json()["id"])
    assert end["status"] == "failed"
    assert "before-the-failure" in log and "returned a non-zero code: 3" in log
    detail = api.get(f"/api/v1/templates/{created.json()['id']}").json()
    assert detail["error_code"] == "template_build_failed"
    assert "non-zero code: 3" in detail["status_message"]
    spawn = _post(api, "/api/v1/workspaces", {"template": "broken"})
    assert spawn.status_code == 409 and spawn.json()["code"] == "template_not_ready"


def test_image_templates_and_what_a_dockerfile_may_build_upon(live_worker, api, kill_after):
    created = _post(api, "/api/v1/templates", {"name": "plain", "image": "devbench/busybox"})
    assert created.status_code == 201 and created.json()["status"] == "ready"
    spawned = _post(api, "/api/v1/workspaces", {"template": "plain"})
    assert spawned.status_code == 201, spawned.content
    kill_after.append(Workspace.objects.get(public_id=spawned.json()["id"]))
    assert spawned.json()["image"] == "devbench/busybox:latest"

    for dockerfile, code in (
        ("FROM devbench-snapshots/someone:sn_x\n", "image_not_allowed"),
        ("FROM other/image:1\n", "image_not_allowed"),
        (
            "FROM devbench/busybox AS a\nFROM devbench/busybox\n"
            "COPY --from=devbench-templates/x:y-1 /a /b\n",
            "image_not_allowed",
        ),
        ("RUN true\n", "invalid_template"),
    ):
        refused = _post(api, "/api/v1/templates", {"name": "x", "dockerfile": dockerfile})
        assert refused.status_code in (403, 422), refused.content
        assert refused.json()["code"] == code, dockerfile
    both = _post(
        api,
        "/api/v1/templates",
        {"name": "x", "image": "devbench/busybox", "dockerfile": "FROM devbench/busybox"},
    )
    assert both.json()["code"] == "invalid_template"
    assert not Template.objects.filter(name="x").exists()


def test_another_tenant_sees_no_template(live_worker, live_mcp, api, tenant, token, make_token):
    created = _post(api, "/api/v1/templates", {"name": "mine", "image": "devbench/busybox"})
    template_id = created.json()["id"]
    other_token = make_token(TenantFactory(), scopes=("read", "write"))
    other = client_for(other_token)
    assert other.get("/api/v1/templates").json()["items"] == []
    for response in (
        other.get(f"/api/v1/templates/{template_id}"),
        other.get(f"/api/v1/templates/{template_id}/log"),
        other.delete(f"/api/v1/templates/{template_id}"),
        other.post(f"/api/v1/templates/{template_id}/build"),
        _post(other, "/api/v1/workspaces", {"template": "mine"}),
        _post(other, "/api/v1/workspaces", {"template": template_id}),
    ):
        assert response.status_code == 404 and response.json()["code"] == "template_not_found"
    mine = ok(mcp_call(live_mcp.mcp_url(tenant.slug), token.raw, "template_list", {}))
    assert [t["id"] for t in mine["templates"]] == [template_id]
    theirs = ok(
        mcp_call(live_mcp.mcp_url(other_token.tenant.slug), other_token.raw, "template_list", {})
    )
    assert theirs["templates"] == []
    assert Template.objects.filter(public_id=template_id).exists()


def test_build_log_streams_over_a_websocket_and_tenants_are_walled(
    live_worker, live_mcp, api, token, make_token
):
    from websockets.sync.client import connect

    dockerfile = (
        "FROM devbench/busybox:latest\nRUN echo first-line && sleep 1 && echo second-line\n"
        "RUN echo last-step\n"
    )
    created = _post(api, "/api/v1/templates", {"name": "streamed", "dockerfile": dockerfile})
    template_id = created.json()["id"]
    url = live_mcp.base_url.replace("http://", "ws://") + f"/ws/templates/{template_id}/log"
    messages: list[dict[str, Any]] = []
    with connect(url, additional_headers={"Authorization": f"Bearer {token.raw}"}) as ws:
        for raw in ws:
            messages.append(json.loads(raw))
    assert messages[-1]["type"] == "complete" and messages[-1]["status"] == "ready"
    pieces = [m for m in messages if m["type"] == "log"]
    offset = 0
    for piece in pieces:  # contiguous, in order, nothing repeated
        assert piece["offset"] == offset
        offset += len(piece["text"])
    text = "".join(p["text"] for p in pieces)
    assert "first-line" in text and "second-line" in text and "last-step" in text
    assert text == Template.objects.get(public_id=template_id).build_log

    other = make_token(TenantFactory(), scopes=("read", "write"))
    headers = {"Authorization": f"Bearer {other.raw}", "X-Request-ID": "trace-ws-1"}
    with connect(url, additional_headers=headers) as ws:
        first = json.loads(ws.recv(timeout=10))
        assert first["type"] == "error" and first["code"] == "template_not_found"
        assert first["request_id"] == "trace-ws-1"  # the id the client sent, kept
        with pytest.raises(Exception):
            ws.recv(timeout=10)
        assert ws.close_code == 4404
