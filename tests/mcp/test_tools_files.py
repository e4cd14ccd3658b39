"""File tools over a live web process, on a real running workspace: results and error codes."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import anyio
import pytest
from mcp.client import Client

from tests.isolation import assert_like_missing, mcp_answer
from tests.mcp_live import error_code, http_client, ok
from tests.processes import DaphneServer

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.integration]


async def _session(url: str, token: str, steps: Any) -> Any:
    async with http_client(url, token) as client:
        return await steps(client)


def run(server: DaphneServer, tenant: Any, token: Any, steps: Any) -> Any:
    return anyio.run(_session, server.mcp_url(tenant.slug), token.raw, steps)


def test_file_round_trip(
    live_mcp: DaphneServer, running_workspace: Any, tenant: Any, token: Any
) -> None:
    ws = running_workspace.public_id
    text = "hello from an agent\nsecond line\n"
    blob = bytes(range(256)) * 4

    async def steps(client: Client) -> dict[str, Any]:
        async def tool(name: str, **arguments: Any) -> Any:
            return await client.call_tool(name, {"container_id": ws, **arguments})

        out: dict[str, Any] = {}
        out["write"] = ok(await tool("fs_write", path="notes/todo.txt", content=text))
        out["read"] = ok(await tool("fs_read", path="/workspace/notes/todo.txt"))
        out["range"] = ok(await tool("fs_read", path="notes/todo.txt", offset=6, length=4))
        out["stat"] = ok(await tool("fs_stat", path="notes/todo.txt"))
        stale = await tool(
            "fs_write", path="notes/todo.txt", content="lost", if_match_etag="0" * 64
        )
        out["stale"] = error_code(stale)
        out["cond"] = ok(
            await tool(
                "fs_write",
                path="notes/todo.txt",
                content=text + "third\n",
                if_match_etag=out["write"]["etag"],
            )
        )
        encoded = base64.b64encode(blob).decode()
        out["bin_write"] = ok(
            await tool("fs_write", path="bin/data", content=encoded, encoding="base64")
        )
        out["bin_read"] = ok(await tool("fs_read", path="bin/data", encoding="base64"))
        out["mkdir"] = ok(await tool("fs_mkdir", path="archive"))
        out["move"] = ok(
            await tool("fs_move", path="notes/todo.txt", destination="archive/todo.txt")
        )
        out["list"] = ok(await tool("fs_list", path="/workspace", recursive=True))
        out["not_empty"] = error_code(await tool("fs_delete", path="archive"))
        out["delete"] = ok(await tool("fs_delete", path="archive", recursive=True))
        out["gone"] = error_code(await tool("fs_stat", path="archive/todo.txt"))
        return out

    out = run(live_mcp, tenant, token, steps)
    etag = hashlib.sha256(text.encode()).hexdigest()
    assert out["write"]["created"] is True and out["write"]["etag"] == etag
    assert out["read"]["content"] == text and out["read"]["etag"] == etag
    assert out["read"]["encoding"] == "utf-8" and out["read"]["size"] == len(text)
    assert out["range"]["content"] == "from" and out["range"]["length"] == 4
    assert out["stat"]["kind"] == "file" and out["stat"]["etag"] == etag
    assert out["stat"]["size"] == len(text) and out["stat"]["is_dir"] is False
    assert out["stale"] == "precondition_failed"
    assert out["cond"]["created"] is False
    assert base64.b64decode(out["bin_read"]["content"]) == blob
    assert out["bin_write"]["etag"] == hashlib.sha256(blob).hexdigest()
    assert out["mkdir"]["created"] is True
    assert out["move"]["path"] == "/workspace/archive/todo.txt"
    paths = {e["path"]: e["kind"] for e in out["list"]["entries"]}
    assert paths["/workspace/archive"] == "dir"
    assert paths["/workspace/archive/todo.txt"] == "file"
    assert "/workspace/notes/todo.txt" not in paths
    assert out["not_empty"] == "directory_not_empty"
    assert out["delete"]["status"] == "deleted"
    assert out["gone"] == "not_found"


def test_file_tool_error_codes(
    live_mcp: DaphneServer, running_workspace: Any, tenant: Any, token: Any
) -> None:
    ws = running_workspace.public_id

    async def steps(client: Client) -> dict[str, Any]:
        async def code(name: str, **arguments: Any) -> str:
            return error_code(await client.call_tool(name, {"container_id": ws, **arguments}))

        await client.call_tool(
            "fs_write",
            {"container_id": ws, "path": "b.bin", "content": "/w==", "encoding": "base64"},
        )
        await client.call_tool("fs_write", {"container_id": ws, "path": "d/f", "content": "x"})
        return {
            "outside": await code("fs_read", path="../etc/passwd"),
            "absolute_outside": await code("fs_stat", path="/etc/passwd"),
            "missing": await code("fs_read", path="nope.txt"),
            "directory": await code("fs_read", path="d"),
            "not_utf8": await code("fs_read", path="b.bin"),
            "bad_base64": await code("fs_write", path="x", content="%%%", encoding="base64"),
            "bad_encoding": await code("fs_read", path="d/f", encoding="latin-1"),
            "exists": await code("fs_mkdir", path="d"),
            "move_onto": await code("fs_move", path="b.bin", destination="d/f"),
            "not_a_dir": await code("fs_list", path="d/f"),
            "no_path": await code("fs_stat"),
            "no_workspace": error_code(
                await client.call_tool(
                    "fs_stat", {"container_id": "ws_missing0000000", "path": "."}
                )
            ),
        }

    codes = run(live_mcp, tenant, token, steps)
    assert codes == {
        "outside": "path_outside_workspace",
        "absolute_outside": "path_outside_workspace",
        "missing": "not_found",
        "directory": "is_a_directory",
        "not_utf8": "not_utf8",
        "bad_base64": "invalid_base64",
        "bad_encoding": "validation_failed",
        "exists": "already_exists",
        "move_onto": "already_exists",
        "not_a_dir": "not_a_directory",
        "no_path": "invalid_path",  # the field's own code, missing or malformed alike
        "no_workspace": "workspace_not_found",
    }


def test_file_tools_respect_scope_and_tenant(
    live_mcp: DaphneServer,
    running_workspace: Any,
    tenant: Any,
    other_tenant: Any,
    make_token: Any,
) -> None:
    ws = running_workspace.public_id
    reader = make_token(tenant, scopes=("read",))
    stranger = make_token(other_tenant)

    async def as_reader(client: Client) -> tuple[Any, Any]:
        write = await client.call_tool(
            "fs_write", {"container_id": ws, "path": "a", "content": "x"}
        )
        listing = await client.call_tool("fs_list", {"container_id": ws})
        return write, listing

    write, listing = run(live_mcp, tenant, reader, as_reader)
    assert error_code(write) == "scope_required"
    assert ok(listing)["entries"] == []  # nothing was written

    async def as_stranger(client: Client) -> tuple[Any, Any]:
        return (
            await client.call_tool("fs_list", {"container_id": ws}),
            await client.call_tool("fs_list", {"container_id": "ws_doesnotexist0000"}),
        )

    foreign, missing = run(live_mcp, other_tenant, stranger, as_stranger)
    assert_like_missing(
        mcp_answer(foreign),
        mcp_answer(missing),
        theirs_id=ws,
        missing_id="ws_doesnotexist0000",
        code="workspace_not_found",
    )
