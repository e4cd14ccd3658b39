"""The stable errors of templates (one class per code)."""

from __future__ import annotations

from core.errors import Conflict, NotFound, ValidationFailed
from workspaces.runtime.base import TemplateBuildFailed


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
