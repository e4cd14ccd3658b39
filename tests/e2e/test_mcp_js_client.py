"""An independent MCP client (the official TypeScript SDK) against a live web process."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.mcp_live import JS_CLIENT_DIR
from tests.processes import DaphneServer

pytestmark = [pytest.mark.e2e]


def test_js_client_lists_described_tools(
    live_mcp: DaphneServer, js_client: Any, tenant: Any, token: Any
) -> None:
    report = js_client(live_mcp.mcp_url(tenant.slug), token.raw)
    assert report["problems"] == []
    assert report["exit_code"] == 0
    assert report["protocolVersion"] == "2025-11-25"
    assert "system_status" in report["tools"]


def test_js_client_is_refused_for_another_tenant(
    live_mcp: DaphneServer, js_client: Any, other_tenant: Any, token: Any
) -> None:
    report = js_client(live_mcp.mcp_url(other_tenant.slug), token.raw)
    assert report["exit_code"] == 1
    assert any("404" in p or "tenant_not_found" in p for p in report["problems"])


@pytest.mark.docker
@pytest.mark.integration
def test_js_client_runs_spawn_exec_kill(
    live_mcp: DaphneServer, live_worker: Any, js_client: Any, tenant: Any, token: Any
) -> None:
    report = js_client(live_mcp.mcp_url(tenant.slug), token.raw, "workflow")
    assert report["problems"] == [], report
    names = ["spawn", "exec_run", "exec_run", "list_execs", "list_execs", "kill"]
    assert [s["name"] for s in report["steps"]] == names
    assert report["steps"][1]["structured"]["stdout"] == "hi from js\n"
    assert report["pages"] == 2  # two pages of one exec each, followed by next_cursor
    assert report["steps"][-1]["structured"]["status"] == "removed"
    tools = set(report["tools"])
    assert {"spawn", "exec_run", "exec_poll", "fs_read", "fs_write", "kill"} <= tools


@pytest.mark.docker
@pytest.mark.integration
def test_js_client_reads_the_error_code_of_each_app(
    live_mcp: DaphneServer, live_worker: Any, js_client: Any, tenant: Any, token: Any
) -> None:
    """The SDK hands back tool errors (it threw on schema-mismatched structured content)."""
    report = js_client(live_mcp.mcp_url(tenant.slug), token.raw, "errors")
    assert report["problems"] == [], report
    pinned = json.loads((JS_CLIENT_DIR / "package.json").read_text())["dependencies"]
    assert report["sdkVersion"] == pinned["@modelcontextprotocol/sdk"]
    codes = {app: body["code"] for app, body in report["errors"].items()}
    assert codes == {
        "workspaces": "image_not_allowed",
        "files": "path_outside_workspace",
        "execution": "exec_not_found",
        "tenants": "validation_failed",
        "system": "scope_required",
    }
    assert "elsewhere/forbidden:1" in report["errors"]["workspaces"]["message"]
    assert report["errors"]["system"]["extra"]["required_scope"] == "admin"
    assert [s["name"] for s in report["steps"]][-1] == "kill"
