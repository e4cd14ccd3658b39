"""Inputs and outputs of the template operations, shared by REST and MCP."""

from __future__ import annotations

from datetime import datetime

from ninja import Field, Schema

from core.validation import MAX_SAFE_INT, InputModel, Line, QueryModel, Text
from workspaces.models import Template
from workspaces.schemas import TemplateRef

# The longest wait of one template_log call (a client repeats with next_offset).
LOG_WAIT_MAX_S = 25.0


class TemplateCreateIn(InputModel):
    # The name rule itself is the service's (invalid_template_name on every interface).
    name: Line = Field(
        min_length=1,
        max_length=63,
        description="e.g. python-data: 1-63 lowercase letters, digits, '.', '_' or '-', "
        "starting and ending with a letter or digit.",
    )
    description: Text = Field("", max_length=2000)
    image: Line = Field(
        "", max_length=512, description="An image reference (local or host/path:tag)."
    )
    dockerfile: Text = Field(
        "", max_length=100_000, description="Or a Dockerfile to build (FROM an allowed image)."
    )
    # Bounded by the request body limit (payload_too_large); base64 is checked on decoding.
    context_tar_b64: Line = Field(
        "", description="Optional build context: a tar archive, base64-encoded."
    )


class TemplateListQuery(QueryModel):
    name: TemplateRef | None = Field(None, description="Only the versions of this template.")


class TemplateLogQuery(QueryModel):
    offset: int = Field(0, ge=0, le=MAX_SAFE_INT, description="Where to start in the log.")
    wait_s: float = Field(
        0, ge=0, le=LOG_WAIT_MAX_S, description="Wait this long for more while the build runs."
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


class TemplateListIn(TemplateListQuery):
    limit: int = Field(50, ge=1, le=500, description="At most this many.")


class TemplateListOut(Schema):
    templates: list[TemplateOut]
    truncated: bool
