"""The one DevBench MCP server, assembled from every app's ``mcp.py``.

The same tools serve Streamable HTTP (``devbench_site.mcp_asgi``, identity
from the ASGI scope) and stdio (``manage.py mcp_stdio``, identity from an
``authenticate`` callable handed over through the server lifespan).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import import_module
from typing import Any

from mcp.server.mcpserver import MCPServer

from devbench_site.mcp_tools import AUTHENTICATE_KEY, ToolSet, ToolSpec, build_tool
from devbench_site.status import DEVBENCH_VERSION
from tenants.principal import Principal

# Each module exposes ``tools``, a ToolSet.
TOOL_MODULES = (
    "tenants.mcp",
    "workspaces.mcp",
    "execution.mcp",
    "workspaces.filesystem.mcp",
    "workspaces.snapshots.mcp",
)

INSTRUCTIONS = """\
DevBench gives you isolated Linux workspaces (Docker containers) in one tenant.
Typical flow: system_status (what you may do, limits) -> spawn (get a workspace id,
or reuse one with attach/list_containers) -> exec_run for short commands, or
exec_start + exec_poll for long ones -> fs_* to read and write files under
/workspace -> kill when done (workspaces also expire after their TTL).
Errors come back as tool results with isError true and a JSON body
{"code", "message", "extra"}: branch on "code", never on the message."""


def tool_specs() -> list[ToolSpec]:
    specs: list[ToolSpec] = []
    for module_name in TOOL_MODULES:
        toolset = import_module(module_name).tools
        assert isinstance(toolset, ToolSet)
        specs.extend(toolset.specs)
    names = [spec.name for spec in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RuntimeError(f"MCP tools declared twice: {duplicates}")
    return specs


def build_server(
    *,
    authenticate: Callable[[], Principal] | None = None,
    specs: list[ToolSpec] | None = None,
) -> MCPServer[Any]:
    """A new server. ``authenticate`` is for transports without an HTTP request (stdio)."""
    lifespan = None
    if authenticate is not None:

        @asynccontextmanager
        async def lifespan(_: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
            yield {AUTHENTICATE_KEY: authenticate}

    return MCPServer(
        name="devbench",
        title="DevBench",
        version=DEVBENCH_VERSION,
        instructions=INSTRUCTIONS,
        tools=[build_tool(spec) for spec in (tool_specs() if specs is None else specs)],
        lifespan=lifespan,
    )


@functools.cache
def http_server() -> MCPServer[Any]:
    """The process-wide server behind /mcp/<tenant>/ (tools are stateless)."""
    return build_server()
