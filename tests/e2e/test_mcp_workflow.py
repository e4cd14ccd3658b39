"""An agent's whole session through the official Python client, over each transport.

Real web process (daphne) or ``manage.py mcp_stdio`` subprocess, real Celery
worker, real engine; the same steps over Streamable HTTP in both protocol
generations and over stdio.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import pytest
from mcp.client import Client

from tests.mcp_live import HANDSHAKE, MODERN, http_client, ok, stdio_client
from tests.processes import DaphneServer
from workspaces.models import Workspace

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.integration, pytest.mark.slow]

Connect = Callable[[], AbstractAsyncContextManager[Client]]


@pytest.fixture(params=["http-2025-11-25", "http-2026-07-28", "stdio"])
def connect(
    request: pytest.FixtureRequest,
    live_mcp: DaphneServer,
    live_worker: Any,
    server_env: dict[str, str],
    tenant: Any,
    token: Any,
) -> Connect:
    if request.param == "stdio":
        return lambda: stdio_client(tenant.slug, token.raw, server_env)
    mode = HANDSHAKE if request.param.endswith("2025-11-25") else MODERN
    return lambda: http_client(live_mcp.mcp_url(tenant.slug), token.raw, mode=mode)


async def _call(client: Client, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return ok(await client.call_tool(name, arguments))


async def session(connect: Connect) -> dict[str, dict[str, Any]]:
    """Every step's result by name; the workspace is killed whatever happens."""
    steps: dict[str, dict[str, Any]] = {}
    async with connect() as client:
        steps["tools"] = {"names": sorted(t.name for t in (await client.list_tools()).tools)}
        steps["status"] = await _call(client, "system_status", {})
        ws = await _call(client, "spawn", {"image": "devbench/busybox:latest", "alias": "agent"})
        steps["spawn"] = ws
        ref = {"container_id": ws["id"]}
        try:
            steps["attach"] = await _call(client, "attach", {"target": "agent"})
            steps["list"] = await _call(client, "list_containers", {})
            steps["exec_run"] = await _call(client, "exec_run", {**ref, "cmd": ["echo", "hi"]})
            started = await _call(
                client,
                "exec_start",
                {**ref, "cmd": ["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.3; done"]},
            )
            polls: list[dict[str, Any]] = []
            after = 0
            while not (polls and polls[-1]["complete"]):
                polls.append(
                    await _call(
                        client,
                        "exec_poll",
                        {"exec_id": started["exec_id"], "after_seq": after, "wait_s": 10},
                    )
                )
                after = polls[-1]["next_seq"]
            steps["exec_poll"] = {"polls": polls}
            steps["list_execs"] = await _call(client, "list_execs", ref)
            steps["fs_write"] = await _call(
                client, "fs_write", {**ref, "path": "src/main.py", "content": "print('hi')\n"}
            )
            steps["fs_read"] = await _call(client, "fs_read", {**ref, "path": "src/main.py"})
            steps["fs_list"] = await _call(client, "fs_list", {**ref, "path": "src"})
            steps["fs_stat"] = await _call(client, "fs_stat", {**ref, "path": "src/main.py"})
            steps["fs_move"] = await _call(
                client, "fs_move", {**ref, "path": "src/main.py", "destination": "app.py"}
            )
            steps["fs_delete"] = await _call(client, "fs_delete", {**ref, "path": "app.py"})
            steps["fs_list_after"] = await _call(client, "fs_list", {**ref})
        finally:
            steps["kill"] = await _call(client, "kill", {"container_id": ws["id"]})
    return steps


def test_agent_session(connect: Connect, tenant: Any) -> None:
    steps = anyio.run(session, connect)
    assert {"spawn", "kill", "system_status", "list_containers"} <= set(steps["tools"]["names"])
    assert steps["status"]["tenant"]["slug"] == tenant.slug
    assert steps["status"]["engine"]["reachable"] is True
    ws_id = steps["spawn"]["id"]
    assert steps["spawn"]["status"] == "running"
    assert steps["attach"]["container_id"] == ws_id
    assert [w["id"] for w in steps["list"]["items"]] == [ws_id]
    assert steps["exec_run"]["stdout"] == "hi\n" and steps["exec_run"]["exit_code"] == 0
    polls = steps["exec_poll"]["polls"]
    assert "".join(m["data"] for p in polls for m in p["messages"]) == "1\n2\n3\n"
    assert polls[-1]["status"] == "completed" and polls[-1]["exit_code"] == 0
    assert len(steps["list_execs"]["items"]) == 2
    assert steps["fs_write"]["created"] is True
    assert steps["fs_read"]["content"] == "print('hi')\n"
    assert steps["fs_read"]["etag"] == steps["fs_write"]["etag"] == steps["fs_stat"]["etag"]
    assert [e["name"] for e in steps["fs_list"]["items"]] == ["main.py"]
    assert steps["fs_move"]["path"] == "/workspace/app.py"
    assert steps["fs_delete"]["status"] == "deleted"
    assert [e["name"] for e in steps["fs_list_after"]["items"]] == ["src"]
    assert steps["kill"]["status"] == "removed"
    assert Workspace.objects.get(public_id=ws_id).status == "removed"
