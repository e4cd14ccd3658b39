"""Web pages of the tenants app: where a signed-in user lands, and the tenant picker."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from tenants.selectors import tenant_list_for_user
from tenants.web import SESSION_TENANT_KEY


def _workspaces_of(slug: str) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("web:workspace_list", kwargs={"tenant": slug}))


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """``/``: the remembered tenant's workspaces, the only tenant's, or the picker."""
    tenants = list(tenant_list_for_user(user=request.user))
    remembered = request.session.get(SESSION_TENANT_KEY)
    if remembered and any(t.slug == remembered for t in tenants):
        return _workspaces_of(remembered)
    if len(tenants) == 1:
        return _workspaces_of(tenants[0].slug)
    return render(request, "web/tenant_picker.html", {"tenants": tenants})


@login_required
def tenant_picker(request: HttpRequest) -> HttpResponse:
    """``/t/``: every tenant the user belongs to; following one remembers it."""
    tenants = list(tenant_list_for_user(user=request.user))
    return render(request, "web/tenant_picker.html", {"tenants": tenants})
