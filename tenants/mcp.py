"""MCP tools about the caller's tenant and the system."""

from __future__ import annotations

from typing import Any

from devbench_site.mcp_tools import ToolCall, ToolSet
from devbench_site.status import system_status_get
from tenants.schemas import NoArguments, SystemStatusOut

tools = ToolSet()


@tools.tool(
    input=NoArguments,
    output=SystemStatusOut,
    title="System status",
    read_only=True,
    destructive=False,
    idempotent=True,
    open_world=False,
)
def system_status(call: ToolCall, args: NoArguments) -> dict[str, Any]:
    """Report whether DevBench can work right now and what the caller may do.

    Use it first in a session, or when other tools fail with engine errors.
    Returns: whether the container engine is reachable (with its version, or
    the error code), DevBench/Python/Django/MCP versions, the caller's tenant
    and scopes ("read" lists and reads; "write" spawns, runs and writes;
    "admin" reconciles and collects garbage), counts of the tenant's
    workspaces and execs by status, and the tenant policy (allowed images,
    default image, memory/CPU/pids limits, network mode, workspace and
    concurrent-exec quotas, TTLs, file size and exec output caps).
    Takes no arguments; needs the "read" scope.
    """
    return system_status_get(actor=call.principal).as_payload()
