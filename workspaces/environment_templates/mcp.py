"""MCP tools for templates: template_list (spawn takes "template")."""

from __future__ import annotations

from core.mcp.tools import READ, ToolCall, ToolSet
from core.pagination import Page
from tenants.principal import Principal
from workspaces.environment_templates import selectors
from workspaces.environment_templates.schemas import TemplateListOut, TemplateListQuery
from workspaces.models import Template

tools = ToolSet()


@tools.tool(
    input=TemplateListQuery,
    output=TemplateListOut,
    title="List templates",
    hints=READ,
)
def template_list(call: ToolCall[Principal], args: TemplateListQuery) -> Page[Template]:
    """List the tenant's environment templates: name, version, status, kind.

    Use it to find a prepared environment, then spawn with template=<name> (the
    newest ready version) instead of an image. Templates are made and built by
    people of the tenant (REST, web UI). Newest first; answers a page: "items",
    and while "has_more" call again with cursor=next_cursor (limit: page size,
    default 50, at most 500). Needs "read".
    """
    return selectors.template_page(actor=call.principal, page=args, name=args.name)
