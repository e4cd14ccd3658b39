"""Workspace tools over a live web process + Celery worker + engine: results and error codes."""

from __future__ import annotations

from typing import Any

import pytest

from tenants.models import AuditEvent, TenantPolicy
from tests.isolation import assert_like_missing, mcp_answer
from tests.mcp_live import error_body, error_code, mcp_call, ok
from tests.processes import DaphneServer
from workspaces.models import Workspace

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.integration]

BUSYBOX = "devbench/busybox:latest"


@pytest.fixture
def server(live_mcp: DaphneServer, live_worker: Any) -> DaphneServer:
    return live_mcp


def test_spawn_list_attach_stats_kill(server: DaphneServer, tenant: Any, token: Any) -> None:
    url = server.mcp_url(tenant.slug)
    spawned = ok(mcp_call(url, token.raw, "spawn", {"image": BUSYBOX, "alias": "web"}))
    assert spawned["status"] == "running"
    assert spawned["id"].startswith("ws_") and spawned["container_id"] == spawned["id"]
    assert spawned["alias"] == "web" and spawned["image"] == BUSYBOX
    row = Workspace.objects.get(public_id=spawned["id"])
    assert row.tenant_id == tenant.pk and row.container_id  # a real container exists

    listed = ok(mcp_call(url, token.raw, "list_containers", {}))
    assert [w["id"] for w in listed["items"]] == [spawned["id"]]
    assert listed["has_more"] is False and listed["next_cursor"] is None

    attached = ok(
        mcp_call(url, token.raw, "attach", {"target": "web", "client_name": "pytest-agent"})
    )
    assert attached["container_id"] == spawned["id"] and attached["roots"] == ["/workspace"]
    assert row.attachments.get().client_name == "pytest-agent"

    stats = ok(mcp_call(url, token.raw, "container_stats", {"container_id": "web"}))
    assert stats["container_id"] == spawned["id"]
    assert stats["pids"] >= 1 and stats["memory_limit_mb"] > 0

    killed = ok(mcp_call(url, token.raw, "kill", {"container_id": spawned["id"]}))
    assert killed["status"] == "removed"
    again = ok(mcp_call(url, token.raw, "kill", {"container_id": spawned["id"]}))
    assert again["status"] == "removed"  # idempotent
    assert ok(mcp_call(url, token.raw, "list_containers", {}))["items"] == []
    assert (
        len(ok(mcp_call(url, token.raw, "list_containers", {"include_removed": True}))["items"])
        == 1
    )


def test_mcp_calls_are_audited_with_the_request_facts(
    server: DaphneServer, tenant: Any, token: Any
) -> None:
    url = server.mcp_url(tenant.slug)
    spawned = ok(mcp_call(url, token.raw, "spawn", {"image": BUSYBOX}))
    ok(mcp_call(url, token.raw, "kill", {"container_id": spawned["id"], "force": True}))
    event = AuditEvent.objects.get(action="workspace.spawn", target_id=spawned["id"])
    assert event.outcome == "success"
    assert event.actor_id == f"token:{token.prefix}"
    assert event.ip == "127.0.0.1"
    assert len(event.request_id) == 32
    assert "python" in event.user_agent.lower()


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ({"image": "devbench/no-such-image:latest"}, "image_not_found"),
        ({"image": "alpine:latest"}, "image_not_allowed"),
        ({"image": BUSYBOX, "alias": "Bad Alias!"}, "invalid_alias"),
        ({"image": BUSYBOX, "ttl_s": 0}, "invalid_ttl"),
        ({"image": BUSYBOX, "persistent": True, "ttl_s": 60}, "ttl_with_persistent"),
        ({"image": BUSYBOX, "limits": {"memory_mb": 10**9}}, "policy_denied"),
    ],
)
def test_spawn_refusals_keep_their_codes(
    server: DaphneServer, tenant: Any, token: Any, arguments: dict[str, Any], code: str
) -> None:
    assert error_code(mcp_call(server.mcp_url(tenant.slug), token.raw, "spawn", arguments)) == code


def test_quota_and_alias_conflicts(server: DaphneServer, tenant: Any, token: Any) -> None:
    TenantPolicy.objects.filter(tenant=tenant).update(max_workspaces=1)
    url = server.mcp_url(tenant.slug)
    first = ok(mcp_call(url, token.raw, "spawn", {"image": BUSYBOX, "alias": "one"}))
    try:
        again = mcp_call(url, token.raw, "spawn", {"image": BUSYBOX, "alias": "two"})
        assert error_code(again) == "workspace_quota_exceeded"
        TenantPolicy.objects.filter(tenant=tenant).update(max_workspaces=5)
        clash = mcp_call(url, token.raw, "spawn", {"image": BUSYBOX, "alias": "one"})
        assert error_code(clash) == "alias_in_use"
    finally:
        ok(mcp_call(url, token.raw, "kill", {"container_id": first["id"], "force": True}))


def test_idempotency_key_returns_the_same_workspace(
    server: DaphneServer, tenant: Any, token: Any
) -> None:
    url = server.mcp_url(tenant.slug)
    args = {"image": BUSYBOX, "idempotency_key": "task-17"}
    first = ok(mcp_call(url, token.raw, "spawn", args))
    try:
        assert ok(mcp_call(url, token.raw, "spawn", args))["id"] == first["id"]
        assert Workspace.objects.filter(tenant=tenant).count() == 1
    finally:
        ok(mcp_call(url, token.raw, "kill", {"container_id": first["id"], "force": True}))


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("kill", {"container_id": "{id}"}),
        ("container_stats", {"container_id": "{id}"}),
        ("pause", {"container_id": "{id}"}),
        ("resume", {"container_id": "{id}"}),
        ("attach", {"target": "{id}"}),
    ],
)
def test_another_tenants_workspace_is_not_found_like_a_missing_one(
    server: DaphneServer,
    tenant: Any,
    other_tenant: Any,
    make_token: Any,
    token: Any,
    tool: str,
    arguments: dict[str, Any],
) -> None:
    other_token = make_token(other_tenant)
    theirs = ok(
        mcp_call(server.mcp_url(other_tenant.slug), other_token.raw, "spawn", {"image": BUSYBOX})
    )
    try:
        url = server.mcp_url(tenant.slug)
        foreign = mcp_call(url, token.raw, tool, _fill(arguments, theirs["id"]))
        missing = mcp_call(url, token.raw, tool, _fill(arguments, "ws_doesnotexist0000"))
        assert_like_missing(
            mcp_answer(foreign),
            mcp_answer(missing),
            theirs_id=theirs["id"],
            missing_id="ws_doesnotexist0000",
            code="workspace_not_found",
        )
        assert Workspace.objects.get(public_id=theirs["id"]).status == "running"
    finally:
        mcp_call(
            server.mcp_url(other_tenant.slug),
            other_token.raw,
            "kill",
            {"container_id": theirs["id"], "force": True},
        )


def _fill(arguments: dict[str, Any], ref: str) -> dict[str, Any]:
    return {k: (ref if v == "{id}" else v) for k, v in arguments.items()}


def test_scopes_are_enforced(server: DaphneServer, tenant: Any, make_token: Any) -> None:
    url = server.mcp_url(tenant.slug)
    reader = make_token(tenant, scopes=("read",))
    writer = make_token(tenant, scopes=("read", "write"))
    admin = make_token(tenant, scopes=("read", "write", "admin"))

    refused = mcp_call(url, reader.raw, "spawn", {"image": BUSYBOX})
    assert error_code(refused) == "scope_required"
    assert error_body(refused)["extra"]["required_scope"] == "write"
    assert Workspace.objects.filter(tenant=tenant).count() == 0
    assert ok(mcp_call(url, reader.raw, "list_containers", {}))["items"] == []
    too_many = mcp_call(url, reader.raw, "list_containers", {"limit": 0})
    assert error_code(too_many) == "invalid_limit"
    assert error_body(too_many)["extra"]["errors"][0]["loc"] == ["limit"]
    assert ok(mcp_call(url, reader.raw, "system_status", {}))["scopes"] == ["read"]

    for tool in ("reconcile", "garbage_collect"):
        assert error_code(mcp_call(url, writer.raw, tool, {})) == "scope_required"
    report = ok(mcp_call(url, admin.raw, "reconcile", {}))
    assert report["checked"] == 0 and report["actions"] == []
    gc = ok(mcp_call(url, admin.raw, "garbage_collect", {}))
    assert gc["containers_removed"] == [] and gc["volumes_removed"] == []


def test_stats_of_a_workspace_that_is_not_running(
    server: DaphneServer, tenant: Any, token: Any
) -> None:
    url = server.mcp_url(tenant.slug)
    spawned = ok(mcp_call(url, token.raw, "spawn", {"image": BUSYBOX}))
    ok(mcp_call(url, token.raw, "kill", {"container_id": spawned["id"], "force": True}))
    stats = mcp_call(url, token.raw, "container_stats", {"container_id": spawned["id"]})
    assert error_code(stats) == "workspace_not_running"
    attach = mcp_call(url, token.raw, "attach", {"target": spawned["id"]})
    assert error_code(attach) == "workspace_not_running"
