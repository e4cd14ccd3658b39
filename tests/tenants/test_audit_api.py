"""GET /api/v1/audit (filters, pages, tenant scope) and its JSON lines export."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from tests.factories import ApiTokenFactory, AuditEventFactory, TenantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup() -> dict[str, Any]:
    a, b = TenantFactory(slug="alpha"), TenantFactory(slug="bravo")
    now = timezone.now()
    for i in range(7):
        AuditEventFactory(
            tenant=a,
            action="fs.write" if i % 2 else "workspace.spawn",
            actor_kind="token",
            actor_id="token:aaaa1111" if i < 4 else "user:9",
            outcome="success" if i != 3 else "denied",
            target_type="workspace",
            target_id=f"ws_{i}",
            request_id=f"req-{i}",
            created_at=now - timedelta(hours=10 - i),
        )
    AuditEventFactory(tenant=b, action="workspace.spawn", target_id="ws_of_b")
    admin = ApiTokenFactory(tenant=a, scopes=["read", "write", "admin"])
    writer = ApiTokenFactory(tenant=a, scopes=["read", "write"])
    return {
        "admin": Client(HTTP_AUTHORIZATION=f"Bearer {admin.raw}"),
        "writer": Client(HTTP_AUTHORIZATION=f"Bearer {writer.raw}"),
        "now": now,
    }


def _targets(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [e["target_id"] for e in response.json()["items"]]


def test_lists_own_tenant_newest_first_with_pages(setup: dict[str, Any]) -> None:
    c = setup["admin"]
    body = c.get("/api/v1/audit?limit=3").json()
    assert body["count"] == 7  # never bravo's event
    assert [e["target_id"] for e in body["items"]] == ["ws_6", "ws_5", "ws_4"]
    assert _targets(c.get("/api/v1/audit?limit=3&offset=6")) == ["ws_0"]
    first = body["items"][0]
    assert {"actor_kind", "actor_id", "action", "outcome", "request_id", "details"} <= set(first)


def test_filters(setup: dict[str, Any]) -> None:
    c, now = setup["admin"], setup["now"]
    assert _targets(c.get("/api/v1/audit?action=fs.write")) == ["ws_5", "ws_3", "ws_1"]
    assert len(_targets(c.get("/api/v1/audit?action=fs.*"))) == 3
    assert _targets(c.get("/api/v1/audit?outcome=denied")) == ["ws_3"]
    assert _targets(c.get("/api/v1/audit?actor=user:9")) == ["ws_6", "ws_5", "ws_4"]
    assert _targets(c.get("/api/v1/audit?target_id=ws_2")) == ["ws_2"]
    assert _targets(c.get("/api/v1/audit?request_id=req-1")) == ["ws_1"]
    since = (now - timedelta(hours=8, minutes=30)).isoformat()
    until = (now - timedelta(hours=5, minutes=30)).isoformat()
    window = c.get("/api/v1/audit", {"since": since, "until": until})
    assert _targets(window) == ["ws_4", "ws_3", "ws_2"]
    assert _targets(c.get("/api/v1/audit?target_id=ws_of_b")) == []
    bad = c.get("/api/v1/audit?outcome=maybe")
    assert bad.status_code == 422 and bad.json()["code"] == "validation_failed"


def test_export_is_json_lines_with_the_same_filters(setup: dict[str, Any]) -> None:
    response = setup["admin"].get("/api/v1/audit/export?action=workspace.spawn")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    lines = b"".join(response.streaming_content).decode().splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["target_id"] for e in events] == ["ws_6", "ws_4", "ws_2", "ws_0"]
    assert all(e["tenant"] == "alpha" and e["type"] == "audit" for e in events)


def test_admin_scope_required(setup: dict[str, Any]) -> None:
    for url in ("/api/v1/audit", "/api/v1/audit/export"):
        response = setup["writer"].get(url)
        assert response.status_code == 403 and response.json()["code"] == "scope_required"
