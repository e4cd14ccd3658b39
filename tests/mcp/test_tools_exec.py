"""Exec tools over a live web process + Celery worker + engine: output, long polls,
progress, cancellation semantics, error codes, scopes and tenancy."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp.client import Client

from execution.models import Exec
from tenants.models import TenantPolicy
from tests.isolation import assert_like_missing, mcp_answer
from tests.mcp_live import MODES, DaphneServer, error_body, error_code, http_client, ok

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.integration]


def run(server: DaphneServer, tenant: Any, token: Any, steps: Any, mode: str = "2026-07-28") -> Any:
    async def scenario() -> Any:
        async with http_client(server.mcp_url(tenant.slug), token.raw, mode=mode) as client:
            return await steps(client)

    return anyio.run(scenario)


async def poll_to_end(
    client: Client, exec_id: str, after_seq: int = 0
) -> tuple[str, dict[str, Any]]:
    """Long-poll until complete; returns the stdout text and the last answer."""
    text = ""
    while True:
        answer = ok(
            await client.call_tool(
                "exec_poll", {"exec_id": exec_id, "after_seq": after_seq, "wait_s": 10}
            )
        )
        text += "".join(m["data"] for m in answer["messages"] if m["stream"] == "stdout")
        after_seq = answer["next_seq"]
        if answer["complete"]:
            return text, answer


def test_exec_run_returns_output_and_exit_code(
    live_mcp: DaphneServer, running_workspace: Any, tenant: Any, token: Any
) -> None:
    ws = running_workspace.public_id

    async def steps(client: Client) -> dict[str, Any]:
        async def exec_run(**arguments: Any) -> dict[str, Any]:
            return ok(await client.call_tool("exec_run", {"container_id": ws, **arguments}))

        return {
            "echo": await exec_run(cmd=["echo", "hi"]),
            "mixed": await exec_run(cmd=["sh", "-c", "echo out; echo err >&2; exit 3"]),
            "env_cwd": await exec_run(
                cmd=["sh", "-c", "pwd; echo $GREETING"], cwd="/tmp", env={"GREETING": "hello"}
            ),
            "missing": await exec_run(cmd=["no-such-program"]),
            "timeout": await exec_run(cmd=["sleep", "30"], timeout_s=1),
            "listed": ok(await client.call_tool("list_execs", {"container_id": ws})),
        }

    out = run(live_mcp, tenant, token, steps)
    assert out["echo"]["status"] == "completed" and out["echo"]["exit_code"] == 0
    assert out["echo"]["stdout"] == "hi\n" and out["echo"]["stderr"] == ""
    assert out["mixed"]["exit_code"] == 3
    assert (out["mixed"]["stdout"], out["mixed"]["stderr"]) == ("out\n", "err\n")
    assert out["env_cwd"]["stdout"] == "/tmp\nhello\n"
    assert out["missing"]["status"] == "failed"
    assert out["missing"]["error_code"] == "exec_start_failed"
    assert out["timeout"]["status"] == "timed_out"
    listed = out["listed"]["execs"]
    assert listed[0]["exec_id"] == out["timeout"]["exec_id"]  # newest first
    assert len(listed) == 5 and out["listed"]["truncated"] is False
    assert Exec.objects.get(public_id=out["echo"]["exec_id"]).workspace == running_workspace


def test_exec_start_and_long_poll(
    live_mcp: DaphneServer, running_workspace: Any, tenant: Any, token: Any
) -> None:
    ws = running_workspace.public_id

    async def steps(client: Client) -> tuple[Any, str, dict[str, Any], Any]:
        started = ok(
            await client.call_tool(
                "exec_start",
                {"container_id": ws, "cmd": ["sh", "-c", "echo a; sleep 1; echo b; echo c >&2"]},
            )
        )
        text, last = await poll_to_end(client, started["exec_id"])
        again = ok(
            await client.call_tool(
                "exec_poll", {"exec_id": started["exec_id"], "after_seq": last["next_seq"]}
            )
        )
        return started, text, last, again

    started, text, last, again = run(live_mcp, tenant, token, steps)
    assert started["exec_id"].startswith("ex") and started["status"] in ("starting", "queued")
    assert text == "a\nb\n"
    assert last["status"] == "completed" and last["exit_code"] == 0
    assert last["usage"]["stderr_bytes"] == 2
    assert again["messages"] == [] and again["complete"] is True  # nothing is sent twice


@pytest.mark.parametrize("mode", MODES)
def test_waiting_tools_send_progress(
    live_mcp: DaphneServer, running_workspace: Any, tenant: Any, token: Any, mode: str
) -> None:
    ws = running_workspace.public_id
    seen: list[tuple[str, float, str | None]] = []

    def recorder(tool: str) -> Any:
        async def record(progress: float, total: float | None, message: str | None) -> None:
            seen.append((tool, progress, message))

        return record

    async def steps(client: Client) -> Any:
        run_result = await client.call_tool(
            "exec_run",
            {"container_id": ws, "cmd": ["sleep", "2.5"], "timeout_s": 20},
            progress_callback=recorder("exec_run"),
        )
        started = ok(
            await client.call_tool("exec_start", {"container_id": ws, "cmd": ["sleep", "2.5"]})
        )
        poll = await client.call_tool(
            "exec_poll",
            {"exec_id": started["exec_id"], "wait_s": 20},
            progress_callback=recorder("exec_poll"),
        )
        return ok(run_result), ok(poll)

    run_result, poll = run(live_mcp, tenant, token, steps, mode=mode)
    assert run_result["status"] == "completed" and poll["complete"] is True
    for tool in ("exec_run", "exec_poll"):
        values = [p for t, p, _ in seen if t == tool]
        assert len(values) >= 2, seen
        assert values == sorted(values)
    assert any(m and m.startswith("command running") for _, _, m in seen)


def test_client_cancellation_ends_the_wait_not_the_command(
    live_mcp: DaphneServer, running_workspace: Any, tenant: Any, token: Any
) -> None:
    ws = running_workspace.public_id
    cmd = ["sh", "-c", "sleep 2; echo finished"]

    async def steps(client: Client) -> tuple[bool, str, dict[str, Any]]:
        with anyio.move_on_after(0.8) as scope:
            await client.call_tool("exec_run", {"container_id": ws, "cmd": cmd})
        execs = ok(await client.call_tool("list_execs", {"container_id": ws}))["execs"]
        text, last = await poll_to_end(client, execs[0]["exec_id"])
        return scope.cancelled_caught, text, last

    cancelled, text, last = run(live_mcp, tenant, token, steps)
    assert cancelled is True
    assert text == "finished\n"
    assert last["status"] == "completed" and last["exit_code"] == 0


def test_exec_cancel_and_concurrency(
    live_mcp: DaphneServer, running_workspace: Any, tenant: Any, token: Any
) -> None:
    TenantPolicy.objects.filter(tenant=tenant).update(max_concurrent_execs=1)
    ws = running_workspace.public_id

    async def steps(client: Client) -> dict[str, Any]:
        first = ok(
            await client.call_tool("exec_start", {"container_id": ws, "cmd": ["sleep", "60"]})
        )
        busy = await client.call_tool("exec_start", {"container_id": ws, "cmd": ["true"]})
        cancelled = ok(await client.call_tool("exec_cancel", {"exec_id": first["exec_id"]}))
        again = ok(await client.call_tool("exec_cancel", {"exec_id": first["exec_id"]}))
        _, last = await poll_to_end(client, first["exec_id"])
        after = ok(await client.call_tool("exec_run", {"container_id": ws, "cmd": ["true"]}))
        return {"busy": busy, "cancelled": cancelled, "again": again, "last": last, "after": after}

    out = run(live_mcp, tenant, token, steps)
    assert error_code(out["busy"]) == "concurrency_limit_exceeded"
    assert error_body(out["busy"])["extra"] == {"limit": 1, "active": 1}
    assert out["cancelled"]["status"] == "cancelled" and out["again"]["status"] == "cancelled"
    assert out["last"]["status"] == "cancelled" and out["last"]["complete"] is True
    assert out["after"]["status"] == "completed"  # the slot was freed


def test_exec_tool_error_codes(
    live_mcp: DaphneServer,
    running_workspace: Any,
    tenant: Any,
    token: Any,
    other_tenant: Any,
    make_token: Any,
) -> None:
    ws = running_workspace.public_id
    reader = make_token(tenant, scopes=("read",))
    stranger = make_token(other_tenant)

    async def as_owner(client: Client) -> dict[str, Any]:
        mine = ok(await client.call_tool("exec_run", {"container_id": ws, "cmd": ["true"]}))

        async def code(name: str, arguments: dict[str, Any]) -> str:
            return error_code(await client.call_tool(name, arguments))

        return {
            "exec_id": mine["exec_id"],
            "empty_cmd": await code("exec_run", {"container_id": ws, "cmd": []}),
            "no_cmd": await code("exec_start", {"container_id": ws}),
            "long_wait": await code("exec_poll", {"exec_id": mine["exec_id"], "wait_s": 31}),
            "bad_timeout": await code(
                "exec_run", {"container_id": ws, "cmd": ["true"], "timeout_s": 10**9}
            ),
            "relative_cwd": await code(
                "exec_run", {"container_id": ws, "cmd": ["true"], "cwd": "relative"}
            ),
            "no_exec": await code("exec_poll", {"exec_id": "ex_doesnotexist"}),
            "no_workspace": await code(
                "exec_run", {"container_id": "ws_doesnotexist00", "cmd": ["true"]}
            ),
        }

    codes = run(live_mcp, tenant, token, as_owner)
    exec_id = codes.pop("exec_id")
    # A refused field answers with its own code, whichever layer refuses it.
    assert codes["empty_cmd"] == codes["no_cmd"] == "invalid_cmd"
    assert codes["long_wait"] == "invalid_wait"
    assert codes["bad_timeout"] == "invalid_timeout"
    assert codes["relative_cwd"] == "invalid_cwd"
    assert codes["no_exec"] == "exec_not_found"
    assert codes["no_workspace"] == "workspace_not_found"

    async def as_reader(client: Client) -> tuple[Any, Any, Any]:
        return (
            await client.call_tool("exec_run", {"container_id": ws, "cmd": ["true"]}),
            await client.call_tool("exec_cancel", {"exec_id": exec_id}),
            await client.call_tool("exec_poll", {"exec_id": exec_id}),
        )

    start, cancel, poll = run(live_mcp, tenant, reader, as_reader)
    assert error_code(start) == error_code(cancel) == "scope_required"
    assert ok(poll)["complete"] is True

    async def as_stranger(client: Client) -> tuple[Any, Any, Any]:
        return (
            await client.call_tool("exec_poll", {"exec_id": exec_id}),
            await client.call_tool("exec_poll", {"exec_id": "ex_doesnotexist"}),
            await client.call_tool("list_execs", {"container_id": ws}),
        )

    foreign, missing, listing = run(live_mcp, other_tenant, stranger, as_stranger)
    assert_like_missing(
        mcp_answer(foreign),
        mcp_answer(missing),
        theirs_id=exec_id,
        missing_id="ex_doesnotexist",
        code="exec_not_found",
    )
    assert error_code(listing) == "workspace_not_found"
