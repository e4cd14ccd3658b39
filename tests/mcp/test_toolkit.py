"""The tool toolkit in-process: argument validation, the one error mapping, progress."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import anyio
import pytest
from mcp.client import Client
from pydantic import BaseModel, ConfigDict

from core.errors import Conflict
from core.mcp.server import build_server
from core.mcp.tools import ADD, READ, ToolCall, ToolSet
from tenants.errors import TokenRevoked
from tenants.principal import Principal
from tests.factories import TenantFactory
from tests.mcp_live import error_body


class EchoIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    tags: list[str] = []
    count: int = 1


class EchoOut(BaseModel):
    name: str
    tags: list[str]
    actor: str
    request_id: str


class AliasTaken(Conflict):
    code = "alias_taken"


class Busy(Conflict):
    code = "busy"


tools = ToolSet()


@tools.tool(
    input=EchoIn,
    output=EchoOut,
    title="Echo",
    hints=READ,
)
def echo(call: ToolCall, args: EchoIn) -> dict[str, Any]:
    """Echo the arguments back."""
    return {
        "name": args.name,
        "tags": args.tags,
        "actor": call.principal.actor_id,
        "request_id": call.request.request_id,
    }


@tools.tool(
    input=EchoIn,
    output=EchoOut,
    title="Conflict",
    hints=ADD,
)
def conflict(call: ToolCall, args: EchoIn) -> dict[str, Any]:
    """Always conflicts."""
    raise AliasTaken("Alias taken.", extra={"alias": args.name})


@tools.tool(
    input=EchoIn,
    output=EchoOut,
    title="Crash",
    hints=ADD,
)
def crash(call: ToolCall, args: EchoIn) -> dict[str, Any]:
    """Always crashes."""
    raise RuntimeError("secret internals")


@tools.tool(
    input=EchoIn,
    output=EchoOut,
    title="Slow",
    hints=READ,
)
async def slow(call: ToolCall, args: EchoIn) -> dict[str, Any]:
    """Reports progress while it works."""
    for step in range(args.count):
        await call.progress(step + 1, args.count, f"step {step + 1}")
    return await call.run(echo, call, args)


def principal() -> Principal:
    return Principal(
        user=None,
        tenant=TenantFactory.build(slug="acme"),
        scopes=frozenset({"read"}),
        kind="token",
        actor_id="token:abc",
    )


def call(name: str, arguments: dict[str, Any], authenticate: Any = principal, **kw: Any) -> Any:
    server = build_server(authenticate=authenticate, specs=tools.specs)

    async def scenario() -> Any:
        async with Client(server) as client:
            return await client.call_tool(name, arguments, **kw)

    return anyio.run(scenario)


def test_tools_publish_their_shared_schemas_and_hints() -> None:
    server = build_server(authenticate=principal, specs=tools.specs)

    async def scenario() -> Any:
        async with Client(server) as client:
            return (await client.list_tools()).tools

    listed = {t.name: t for t in anyio.run(scenario)}
    assert listed["echo"].input_schema["properties"].keys() == {"name", "tags", "count"}
    assert listed["echo"].input_schema["required"] == ["name"]
    assert listed["echo"].output_schema["properties"].keys() == EchoOut.model_fields.keys()
    assert listed["echo"].description == "Echo the arguments back."
    hints = listed["conflict"].annotations
    assert (hints.read_only_hint, hints.idempotent_hint) == (False, False)


def test_success_is_structured_and_in_text() -> None:
    result = call("echo", {"name": "a", "tags": ["x"]})
    assert result.is_error is False
    assert result.structured_content["actor"] == "token:abc"
    assert json.loads(result.content[0].text) == result.structured_content


def test_lists_sent_as_json_text_are_accepted() -> None:
    result = call("echo", {"name": "a", "tags": '["x", "y"]'})
    assert result.structured_content["tags"] == ["x", "y"]


@pytest.mark.parametrize(
    ("arguments", "fields"),
    [({}, ["name"]), ({"name": "a", "count": "many"}, ["count"]), ({"name": "a", "x": 1}, ["x"])],
)
def test_invalid_arguments_name_the_field(arguments: dict[str, Any], fields: list[str]) -> None:
    body = error_body(call("echo", arguments))
    assert body["code"] == "validation_failed"
    assert [e["loc"] for e in body["extra"]["errors"]] == [[f] for f in fields]
    assert all(f in body["message"] for f in fields)


def test_devbench_errors_keep_code_message_and_extra() -> None:
    result = call("conflict", {"name": "web"})
    expected = {"code": "alias_taken", "message": "Alias taken.", "extra": {"alias": "web"}}
    assert error_body(result) == expected


def test_unexpected_errors_are_logged_with_a_request_id(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="devbench.mcp"):
        result = call("crash", {"name": "a"})
    body = error_body(result)
    assert body["code"] == "internal_error"
    assert "secret internals" not in result.content[0].text
    request_id = body["extra"]["request_id"]
    assert any(request_id in r.getMessage() and r.exc_info for r in caplog.records)


def test_authentication_failure_is_a_tool_error() -> None:
    def refuse() -> Principal:
        raise TokenRevoked()

    result = call("echo", {"name": "a"}, authenticate=refuse)
    assert error_body(result)["code"] == "token_revoked"


def test_progress_reaches_the_client() -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    result = call("slow", {"name": "a", "count": 3}, progress_callback=on_progress)
    assert result.is_error is False
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


finished = threading.Event()
handler_returned = threading.Event()


def wait_blocking(seconds: float) -> None:
    time.sleep(seconds)
    finished.set()


def refuse_blocking(seconds: float) -> None:
    time.sleep(seconds)
    raise Busy("Busy.", extra={"after": seconds})


@tools.tool(
    input=EchoIn,
    output=EchoOut,
    title="Refuse",
    hints=READ,
)
async def refusing(call: ToolCall, args: EchoIn) -> dict[str, Any]:
    """Waits, then refuses."""
    await call.run_reporting(refuse_blocking, 0.3, total_s=None, label="waiting", interval_s=0.1)
    return {}


@tools.tool(
    input=EchoIn,
    output=EchoOut,
    title="Wait",
    hints=READ,
)
async def waiting(call: ToolCall, args: EchoIn) -> dict[str, Any]:
    """Waits in a blocking call while telling the client it is alive."""
    await call.run_reporting(
        wait_blocking, args.count / 10, total_s=args.count / 10, label="waiting", interval_s=0.1
    )
    handler_returned.set()
    return await call.run(echo, call, args)


def test_blocking_waits_send_progress_meanwhile() -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    result = call("waiting", {"name": "a", "count": 8}, progress_callback=on_progress)
    assert result.is_error is False
    assert len(seen) >= 3
    assert [p for p, _, _ in seen] == sorted(p for p, _, _ in seen)
    assert all(total == 0.8 and (message or "").startswith("waiting") for _, total, message in seen)


def test_cancelling_the_call_ends_the_wait_not_the_work() -> None:
    finished.clear()
    handler_returned.clear()
    server = build_server(authenticate=principal, specs=tools.specs)

    async def scenario() -> float:
        async with Client(server) as client:
            started = time.monotonic()
            with anyio.move_on_after(0.3):
                await client.call_tool("waiting", {"name": "a", "count": 15})
            return time.monotonic() - started

    assert anyio.run(scenario) < 1.2
    assert finished.wait(5)  # the blocking work itself carried on to its end
    time.sleep(0.2)
    assert not handler_returned.is_set()  # but the tool stopped waiting for it


def test_errors_of_a_waiting_service_keep_their_code() -> None:
    assert error_body(call("refusing", {"name": "a"})) == {
        "code": "busy",
        "message": "Busy.",
        "extra": {"after": 0.3},
    }
