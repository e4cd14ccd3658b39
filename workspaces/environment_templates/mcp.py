"""MCP tools for templates: template_list (spawn takes "template")."""

from __future__ import annotations

from typing import Any

from core.mcp.tools import READ, ToolCall, ToolSet
from tenants.principal import Principal
from workspaces.environment_templates import selectors
from workspaces.environment_templates.schemas import TemplateListIn, TemplateListOut

tools = ToolSet()


@tools.tool(
    input=TemplateListIn,
    output=TemplateListOut,
    title="List templates",
    hints=READ,
)
def template_list(call: ToolCall[Principal], args: TemplateListIn) -> dict[str, Any]:
    """List the tenant's environment templates: name, version, status, kind.

    Use it to find a prepared environment, then spawn with template=<name> (the
    newest ready version) instead of an image. Templates are made and built by
    people of the tenant (REST, web UI). At most "limit" are returned
    ("truncated" tells whether more exist). Needs "read".
    """
    rows = list(selectors.template_list(actor=call.principal, name=args.name)[: args.limit + 1])
    return {"templates": rows[: args.limit], "truncated": len(rows) > args.limit}
