"""The stable errors of templates (one class per code)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.errors import Conflict, NotFound, ValidationFailed
from workspaces.runtime.base import TemplateBuildFailed

if TYPE_CHECKING:
    from workspaces.models import Template


class TemplateNotFound(NotFound):
    code = "template_not_found"
    http_status = 404
    default_message = "Template not found."


class TemplateNotReady(Conflict):
    code = "template_not_ready"
    http_status = 409
    default_message = "The template has no ready version (still building, or its build failed)."


class TemplateInUse(Conflict):
    code = "template_in_use"
    http_status = 409
    default_message = "A live workspace was spawned from this template; kill it first."

    @classmethod
    def spawned_from(cls, template: Template, workspaces: list[str]) -> TemplateInUse:
        return cls(
            f"Workspaces {', '.join(workspaces)} run template '{template}'; kill them first.",
            extra={"template": template.public_id, "workspaces": workspaces},
        )


class TemplateInvalid(ValidationFailed):
    code = "invalid_template"
    http_status = 422
    default_message = "The template is not valid."


class TemplateContextTooLarge(ValidationFailed):
    code = "template_context_too_large"
    http_status = 413
    default_message = "The build context is larger than the installation allows."


class InvalidTemplateName(TemplateInvalid):
    code = "invalid_template_name"


class TemplateImageTooLarge(TemplateBuildFailed):
    code = "template_image_too_large"
    default_message = "The built image is larger than the installation allows."
