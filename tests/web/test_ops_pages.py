"""Web pages for operations: live stats, stop/start, usage, audit (owners and admins)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.factories import AuditEventFactory, MembershipFactory, TenantFactory, UserFactory
from tests.web.conftest import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_web(tenant: Any) -> Any:
    user = UserFactory()
    MembershipFactory(user=user, tenant=tenant, role="admin")
    return signed_in(user)


def test_audit_page_for_admins_only_and_tenant_scoped(
    tenant: Any, admin_web: Any, web: Any
) -> None:
    other = TenantFactory()
    AuditEventFactory(tenant=tenant, action="workspace.spawn", target_id="ws_mine", request_id="r1")
    AuditEventFactory(tenant=tenant, action="fs.write", target_id="ws_mine", outcome="denied")
    AuditEventFactory(tenant=other, action="workspace.spawn", target_id="ws_theirs")
    url = f"/t/{tenant.slug}/audit/"
    page = admin_web.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "ws_mine" in html and "ws_theirs" not in html
    assert f'href="/t/{tenant.slug}/audit/"' in html  # in the navigation
    filtered = admin_web.get(url, {"outcome": "denied"}).content.decode()
    assert "fs.write" in filtered and "workspace.spawn" not in filtered.split("<tbody>")[1]
    export = admin_web.get(f"/t/{tenant.slug}/audit/export", {"action": "workspace.spawn"})
    assert export["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(x) for x in b"".join(export.streaming_content).splitlines()]
    assert [e["target_id"] for e in lines] == ["ws_mine"]

    # A member (no admin scope) sees neither the link nor the page.
    assert "/audit/" not in web.get(f"/t/{tenant.slug}/workspaces/").content.decode()
    refused = web.get(url)
    assert refused.status_code == 403 and b"scope_required" in refused.content
    # Another tenant's audit page is missing.
    assert admin_web.get(f"/t/{other.slug}/audit/").status_code == 404


def test_usage_page_shows_table_and_chart_data(tenant: Any, web: Any) -> None:
    page = web.get(f"/t/{tenant.slug}/usage/?days=7")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="usage-data"' in html and "data-usage-chart" in html
    data = json.loads(
        html.split('id="usage-data" type="application/json">')[1].split("</script>")[0]
    )
    assert len(data) == 7 and set(data[0]) >= {"day", "exec_count", "workspace_seconds_running"}
    assert "<script>" not in html  # no inline scripts: only static files and JSON data


@pytest.mark.integration
@pytest.mark.docker
def test_stats_json_and_stop_start_buttons(running_workspace: Any, tenant: Any, web: Any) -> None:
    base = f"/t/{tenant.slug}/workspaces/{running_workspace.public_id}/"
    html = web.get(base).content.decode()
    assert 'id="live-stats"' in html and "/stats" in html and "/stop" in html
    stats = web.get(base + "stats").json()
    assert stats["pids"] >= 1 and stats["memory_limit_bytes"] > 0

    stopped = web.post(base + "stop", follow=True)
    assert stopped.status_code == 200
    running_workspace.refresh_from_db()
    assert running_workspace.status == "stopped"
    html = stopped.content.decode()
    assert "/start" in html and 'id="live-stats"' not in html
    refused = web.get(base + "stats", HTTP_ACCEPT="application/json")
    assert refused.status_code == 409

    web.post(base + "start")
    running_workspace.refresh_from_db()
    assert running_workspace.status == "running"


def test_viewer_gets_no_stop_button_and_cannot_stop(
    tenant: Any, viewer_web: Any, settings: Any
) -> None:
    from tests.factories import WorkspaceFactory

    workspace = WorkspaceFactory(tenant=tenant, status="running", container_id="abc")
    base = f"/t/{tenant.slug}/workspaces/{workspace.public_id}/"
    assert "/stop" not in viewer_web.get(base).content.decode()
    refused = viewer_web.post(base + "stop", HTTP_ACCEPT="application/json")
    assert refused.status_code == 403 and refused.json()["code"] == "scope_required"
