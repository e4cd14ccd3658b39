"""The one DevBench MCP server, assembled from the tool sets of ``settings.MCP_TOOL_MODULES``.

The same tools serve Streamable HTTP (``core.mcp.endpoint``, identity from the
ASGI scope) and stdio (``manage.py mcp_stdio``, identity from an
``authenticate`` callable handed over through the server lifespan).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import import_module
from typing import Any

from django.conf import settings
from mcp.server.mcpserver import MCPServer

from core.mcp.tools import AUTHENTICATE_KEY, ToolSet, ToolSpec, build_tool
from core.version import VERSION

INSTRUCTIONS = """\
DevBench gives you isolated Linux workspaces (Docker containers) in one tenant.
Typical flow: system_status (what you may do, limits) -> spawn (get a workspace id,
or reuse one with attach/list_containers) -> exec_run for short commands, or
exec_start + exec_poll for long ones -> fs_* to read and write files under
/workspace -> kill when done (workspaces also expire after their TTL; an idle one
may be paused, and any call on it resumes it).
Errors come back as tool results with isError true and a JSON body
{"code", "message", "extra"}: branch on "code", never on the message."""


def tool_specs() -> list[ToolSpec]:
    specs: list[ToolSpec] = []
    # Each module exposes ``tools``, a ToolSet.
    for module_name in settings.MCP_TOOL_MODULES:
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
    authenticate: Callable[[], object] | None = None,
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
        version=VERSION,
        instructions=INSTRUCTIONS,
        tools=[build_tool(spec) for spec in (tool_specs() if specs is None else specs)],
        lifespan=lifespan,
    )


@functools.cache
def http_server() -> MCPServer[Any]:
    """The process-wide server behind /mcp/<tenant>/ (tools are stateless)."""
    return build_server()
