"""The stable errors of templates (one class per code)."""

from __future__ import annotations

from core.errors import Conflict, NotFound, ValidationFailed


class TemplateNotFound(NotFound):
    default_code = "template_not_found"
    default_status = 404
    default_message = "Template not found."


class TemplateNotReady(Conflict):
    default_code = "template_not_ready"
    default_status = 409
    default_message = "The template has no ready version (still building, or its build failed)."


class TemplateInUse(Conflict):
    default_code = "template_in_use"
    default_status = 409
    default_message = "A live workspace was spawned from this template; kill it first."


class TemplateInvalid(ValidationFailed):
    default_code = "invalid_template"
    default_status = 422
    default_message = "The template is not valid."


class TemplateContextTooLarge(ValidationFailed):
    default_code = "template_context_too_large"
    default_status = 413
    default_message = "The build context is larger than the installation allows."
