"""REST endpoints of execution, incl. errors and tenant isolation."""

import json

import pytest

from execution.models import ExecStatus
from tenants.models import TenantPolicy
from tenants.redaction import REDACTED
from tests.conftest import client_for
from tests.factories import ExecFactory, WorkspaceFactory
from tests.isolation import assert_like_missing, rest_answer

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def _post(client, path, body):
    return client.post(path, data=json.dumps(body), content_type="application/json")


def test_run_with_wait_returns_output_and_exit_code(api, running_workspace):
    response = _post(
        api,
        f"/api/v1/workspaces/{running_workspace.public_id}/execs",
        {"cmd": ["sh", "-c", "echo hi; echo oops >&2; exit 2"], "wait": True},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["exit_code"], body["stdout"], body["stderr"]) == (
        "completed",
        2,
        "hi\n",
        "oops\n",
    )
    assert body["exec_id"].startswith("ex_") and body["truncated"] is False


def test_start_poll_list_and_cancel(api, running_workspace):
    ws = running_workspace.public_id
    response = _post(
        api,
        f"/api/v1/workspaces/{ws}/execs",
        {"cmd": ["sh", "-c", "echo first; sleep 600"], "env": {"SECRET_KEY": "x", "A": "b"}},
    )
    assert response.status_code == 202, response.content
    started = response.json()
    exec_id = started["exec_id"]
    assert started["workspace_id"] == ws and started["env"] == {"SECRET_KEY": REDACTED, "A": "b"}

    polled = api.get(f"/api/v1/execs/{exec_id}", {"after_seq": 0, "wait_s": 10}).json()
    assert [(m["seq"], m["stream"], m["data"], m["encoding"]) for m in polled["messages"]] == [
        (1, "stdout", "first\n", "utf-8")
    ]
    assert polled["status"] == "running" and polled["complete"] is False
    assert polled["next_seq"] == 1

    listed = api.get(f"/api/v1/workspaces/{ws}/execs").json()
    assert [e["exec_id"] for e in listed] == [exec_id]
    assert api.get(f"/api/v1/execs/{exec_id}/detail").json()["cmd"] == [
        "sh",
        "-c",
        "echo first; sleep 600",
    ]

    cancelled = api.post(f"/api/v1/execs/{exec_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    final = api.get(f"/api/v1/execs/{exec_id}", {"after_seq": 1}).json()
    assert final["complete"] is True and final["messages"] == []
    assert final["status"] == "cancelled"


def test_alias_works_as_workspace_reference(api, running_workspace):
    running_workspace.alias = "dev-box"
    running_workspace.save(update_fields=["alias"])
    response = _post(api, "/api/v1/workspaces/dev-box/execs", {"cmd": ["true"], "wait": True})
    assert response.json()["exit_code"] == 0


def test_concurrency_limit_is_429(api, running_workspace, tenant):
    TenantPolicy.objects.filter(tenant=tenant).update(max_concurrent_execs=1)
    path = f"/api/v1/workspaces/{running_workspace.public_id}/execs"
    first = _post(api, path, {"cmd": ["sleep", "600"]})
    assert first.status_code == 202
    second = _post(api, path, {"cmd": ["true"]})
    assert second.status_code == 429
    assert second.json()["code"] == "concurrency_limit_exceeded"
    queued = _post(api, path, {"cmd": ["echo", "later"], "queue": True})
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    api.post(f"/api/v1/execs/{first.json()['exec_id']}/cancel")
    later = api.get(f"/api/v1/execs/{queued.json()['exec_id']}", {"wait_s": 20}).json()
    assert [m["data"] for m in later["messages"]] == ["later\n"]


@pytest.mark.django_db
def test_errors_have_stable_codes(api, tenant):
    stopped = WorkspaceFactory(tenant=tenant, status="stopped", container_id="x")
    path = f"/api/v1/workspaces/{stopped.public_id}/execs"
    response = _post(api, path, {"cmd": ["true"]})
    assert (response.status_code, response.json()["code"]) == (409, "workspace_not_running")
    response = _post(api, path, {"cmd": []})
    assert (response.status_code, response.json()["code"]) == (422, "invalid_cmd")
    response = api.get("/api/v1/execs/ex_nope", {"wait_s": 31})
    assert (response.status_code, response.json()["code"]) == (422, "invalid_wait")
    response = api.get("/api/v1/execs/ex_nope")
    assert (response.status_code, response.json()["code"]) == (404, "exec_not_found")


@pytest.mark.django_db
def test_read_only_token_cannot_start_or_cancel(make_token, tenant):
    workspace = WorkspaceFactory(tenant=tenant, container_id="x")
    reader = client_for(make_token(tenant, scopes=("read",)))
    response = _post(reader, f"/api/v1/workspaces/{workspace.public_id}/execs", {"cmd": ["true"]})
    assert (response.status_code, response.json()["code"]) == (403, "scope_required")
    exec_ = ExecFactory(workspace=workspace, status=ExecStatus.COMPLETED)
    response = reader.post(f"/api/v1/execs/{exec_.public_id}/cancel")
    assert (response.status_code, response.json()["code"]) == (403, "scope_required")
    assert reader.get(f"/api/v1/execs/{exec_.public_id}").status_code == 200


@pytest.mark.django_db
def test_another_tenants_execs_are_not_found(api, make_token, other_tenant):
    workspace = WorkspaceFactory(tenant=other_tenant, container_id="x")
    theirs = ExecFactory(workspace=workspace)
    missing_id = "ex_" + "0" * 16

    for method, path in [
        ("get", "/api/v1/execs/{}"),
        ("get", "/api/v1/execs/{}/detail"),
        ("post", "/api/v1/execs/{}/cancel"),
    ]:
        mine = getattr(api, method)(path.format(theirs.public_id))
        missing = getattr(api, method)(path.format(missing_id))
        assert mine.status_code == 404
        assert_like_missing(
            rest_answer(mine),
            rest_answer(missing),
            theirs_id=theirs.public_id,
            missing_id=missing_id,
            code="exec_not_found",
        )
    for response in (
        api.get(f"/api/v1/workspaces/{workspace.public_id}/execs"),
        _post(api, f"/api/v1/workspaces/{workspace.public_id}/execs", {"cmd": ["true"]}),
    ):
        assert (response.status_code, response.json()["code"]) == (404, "workspace_not_found")
    theirs.refresh_from_db()
    assert theirs.status == ExecStatus.STARTING and theirs.cancel_requested_at is None
