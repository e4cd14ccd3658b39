"""Inputs and outputs of the template operations, shared by REST and MCP."""

from __future__ import annotations

from datetime import datetime

from ninja import Field, Schema

from core.pagination import PageOut, PageQuery
from workspaces.models import Template


class TemplateCreateIn(Schema):
    name: str = Field(min_length=1, max_length=63, description="e.g. python-data")
    description: str = Field("", max_length=2000)
    image: str = Field(
        "", max_length=512, description="An image reference (local or host/path:tag)."
    )
    dockerfile: str = Field("", description="Or a Dockerfile to build (FROM an allowed image).")
    context_tar_b64: str = Field(
        "", description="Optional build context: a tar archive, base64-encoded."
    )


class TemplateOut(Schema):
    id: str = Field(description="The template version's id (tp_…).")
    name: str
    version: int
    description: str
    kind: str = Field(description="image (a reference) or dockerfile (built on a node).")
    image: str = Field(description="The image reference of an image template.")
    status: str = Field(description="building, ready or failed.")
    error_code: str
    status_message: str
    node: str
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_id(obj: Template) -> str:
        return obj.public_id

    @staticmethod
    def resolve_kind(obj: Template) -> str:
        return "dockerfile" if obj.dockerfile else "image"


class TemplateDetailOut(TemplateOut):
    dockerfile: str
    build_log: str


class TemplateLogOut(Schema):
    id: str
    status: str
    offset: int = Field(description="Where the returned text starts in the whole log.")
    next_offset: int = Field(description="Ask again from here for what follows.")
    text: str
    done: bool = Field(description="The build has ended (ready or failed).")


class TemplateListQuery(PageQuery):
    """REST query and MCP template_list arguments alike: the filter plus the page."""

    name: str | None = Field(None, description="Only the versions of this template.")


class TemplateListOut(PageOut[TemplateOut]):
    """A page of template versions, newest first (REST and MCP template_list)."""
