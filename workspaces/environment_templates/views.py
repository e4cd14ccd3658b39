"""Web pages of templates: the list with a create form, one template with its live log."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from core.errors import parse_input
from tenants.principal import Principal
from tenants.web import tenant_view
from workspaces.environment_templates import selectors, services
from workspaces.environment_templates.schemas import TemplateCreateIn
from workspaces.models import Template, TemplateStatus


def _detail_url(actor: Principal, template: Template) -> str:
    return reverse(
        "web:template_detail", kwargs={"tenant": actor.tenant.slug, "ref": template.public_id}
    )


@require_GET
@tenant_view
def template_list(request: HttpRequest, actor: Principal) -> HttpResponse:
    return render(
        request,
        "workspaces/templates.html",
        {"templates": selectors.template_list(actor=actor)[:200]},
    )


@require_POST
@tenant_view
def template_create(request: HttpRequest, actor: Principal) -> HttpResponse:
    upload = request.FILES.get("context")
    # The same input model as REST (a form sends text: not strict); the context is a file.
    form = parse_input(
        TemplateCreateIn,
        {
            "name": request.POST.get("name", "").strip(),
            "image": request.POST.get("image", "").strip(),
            "dockerfile": request.POST.get("dockerfile", "").replace("\r\n", "\n").strip(),
            "description": request.POST.get("description", "").strip(),
        },
        what="form",
        strict=False,
    )
    template = services.template_create(
        actor=actor,
        name=form.name,
        image=form.image,
        dockerfile=form.dockerfile,
        context=upload.read() if upload else b"",
        description=form.description,
    )
    messages.success(request, f"Template {template.name} version {template.version} was made.")
    return HttpResponseRedirect(_detail_url(actor, template))


@require_GET
@tenant_view
def template_detail(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    template = selectors.template_get(actor=actor, ref=ref)
    return render(request, "workspaces/template_detail.html", {"template": template})


@require_GET
@tenant_view
def template_log(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    """The log from ``offset`` as JSON, polled by the page while the build runs."""
    template = selectors.template_get(actor=actor, ref=ref)
    try:
        offset = max(int(request.GET.get("offset", "0")), 0)
    except ValueError:
        offset = 0
    text = template.build_log[offset:]
    return JsonResponse(
        {
            "status": template.status,
            "text": text,
            "next_offset": offset + len(text),
            "done": template.status != TemplateStatus.BUILDING,
            "error_code": template.error_code,
            "status_message": template.status_message,
        }
    )


@require_POST
@tenant_view
def template_rebuild(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    template = selectors.template_get(actor=actor, ref=ref)
    rebuilt = services.template_rebuild(actor=actor, template=template)
    messages.success(request, f"Template {rebuilt.name} version {rebuilt.version} is building.")
    return HttpResponseRedirect(_detail_url(actor, rebuilt))


@require_POST
@tenant_view
def template_delete(request: HttpRequest, actor: Principal, ref: str) -> HttpResponse:
    template = selectors.template_get(actor=actor, ref=ref)
    services.template_delete(actor=actor, template=template)
    messages.success(request, f"Template {template.name} version {template.version} was deleted.")
    return HttpResponseRedirect(reverse("web:template_list", kwargs={"tenant": actor.tenant.slug}))
