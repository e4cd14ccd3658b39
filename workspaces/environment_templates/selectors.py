"""Tenant-scoped reads of templates: another tenant's template is ``template_not_found``."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from core.validation import escape_unstorable, is_line
from tenants.principal import Principal
from tenants.selectors import tenant_ids_managed_by
from workspaces.environment_templates.errors import TemplateNotFound, TemplateNotReady
from workspaces.models import Template, TemplateStatus


def template_list(*, actor: Principal, name: str | None = None) -> QuerySet[Template]:
    """The tenant's templates by name, newest version first."""
    actor.require_scope("read")
    qs = Template.objects.filter(tenant=actor.tenant).select_related("tenant").defer("context")
    return qs if name is None else qs.filter(name=name)


def template_get(*, actor: Principal, ref: str) -> Template:
    """By public id (``tp_…``) inside the actor's tenant."""
    actor.require_scope("read")
    template = (
        Template.objects.filter(tenant=actor.tenant, public_id=ref).first()
        if is_line(ref, max_length=63)  # else no template has such an id (from a web URL, say)
        else None
    )
    if template is None:
        raise _not_found(ref)
    return template


def _not_found(ref: str) -> TemplateNotFound:
    shown = escape_unstorable(ref)
    return TemplateNotFound(f"Template '{shown}' not found.", extra={"template": shown})


def template_for_spawn(*, actor: Principal, ref: str) -> Template:
    """A template id, or a name (its newest ready version)."""
    if ref.startswith("tp_"):
        template = template_get(actor=actor, ref=ref)
        if template.status != TemplateStatus.READY:
            raise TemplateNotReady(f"Template '{ref}' is {template.status}.")
        return template
    actor.require_scope("read")
    if not is_line(ref, max_length=63):
        raise _not_found(ref)
    versions = Template.objects.filter(tenant=actor.tenant, name=ref)
    ready = versions.filter(status=TemplateStatus.READY).order_by("-version").first()
    if ready is not None:
        return ready
    if versions.exists():
        raise TemplateNotReady(f"Template '{ref}' has no ready version yet.")
    raise _not_found(ref)


def template_list_managed(*, user: Any) -> QuerySet[Template]:
    ids = tenant_ids_managed_by(user=user)
    qs = Template.objects.select_related("tenant", "created_by").defer("context")
    return qs if ids is None else qs.filter(tenant_id__in=ids)
