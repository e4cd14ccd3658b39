"""What every web page shares: the signed-in user acting in the URL's tenant, and errors.

Pages live under ``/t/<tenant slug>/``. :func:`tenant_view` signs the user in
(``login_required``), resolves the session principal for that tenant (a
tenant that does not exist, is inactive, or is not the user's is the same
404), remembers the tenant in the session, and turns a ``DevBenchError`` into
a message or an error page with its code: a page never answers 500 for an
error a service reports. Scopes are not checked here: the services do that.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.utils.functional import SimpleLazyObject
from django.utils.http import url_has_allowed_host_and_scheme

from core.errors import DevBenchError, NotFound
from tenants.auth import principal_for_member
from tenants.errors import TenantNotFound
from tenants.principal import Principal
from tenants.selectors import tenant_get_by_slug, tenant_list_for_user

# A page view: (request, actor, **URL kwargs but the tenant) -> response.
View = Callable[..., HttpResponseBase]

SESSION_TENANT_KEY = "devbench_tenant"


def wants_json(request: HttpRequest) -> bool:
    """A request made by the page's scripts (fetch), which read errors as JSON."""
    return "application/json" in request.headers.get("Accept", "")


def back_url(request: HttpRequest, default: str) -> str:
    """Where a form post returns to: its ``next`` field or the referring page, if ours."""
    for candidate in (request.POST.get("next"), request.headers.get("Referer")):
        if candidate and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return candidate
    return default


def error_page(request: HttpRequest, exc: DevBenchError) -> HttpResponse:
    """The error as a page (or JSON for scripts), with its HTTP status, code and message."""
    if wants_json(request):
        return JsonResponse(exc.as_dict(), status=exc.http_status)
    return render(request, "web/error.html", {"error": exc}, status=exc.http_status)


def error_message(request: HttpRequest, exc: DevBenchError, *, default_back: str) -> HttpResponse:
    """A refused action: a message with its code on the page the form came from.

    Something that does not exist (or is another tenant's) is a 404 page instead,
    exactly like a GET of it.
    """
    if isinstance(exc, NotFound) or wants_json(request):
        return error_page(request, exc)
    messages.error(request, exc.message, extra_tags=exc.code)
    return HttpResponseRedirect(back_url(request, default_back))


def remember_tenant(request: HttpRequest, slug: str) -> None:
    if request.session.get(SESSION_TENANT_KEY) != slug:
        request.session[SESSION_TENANT_KEY] = slug


def tenant_view(view: View) -> View:
    """Wrap a page of ``/t/<tenant>/…``: the view gets ``(request, actor, **url kwargs)``."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, tenant: str, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            actor = principal_for_member(user=request.user, tenant=tenant_get_by_slug(slug=tenant))
        except NotFound:
            # The same answer for a missing, inactive or foreign tenant.
            return error_page(request, TenantNotFound("Tenant not found."))
        request.devbench_actor = actor  # type: ignore[attr-defined]
        remember_tenant(request, actor.tenant.slug)
        home = reverse("web:workspace_list", kwargs={"tenant": actor.tenant.slug})
        try:
            return view(request, actor, *args, **kwargs)
        except DevBenchError as exc:
            if request.method == "POST":
                return error_message(request, exc, default_back=home)
            return error_page(request, exc)

    return wrapper


def web_context(request: HttpRequest) -> dict[str, Any]:
    """Template context of every page: who acts where, and what they may change."""
    actor: Principal | None = getattr(request, "devbench_actor", None)
    user = getattr(request, "user", None)
    return {
        "actor": actor,
        "current_tenant": actor.tenant if actor else None,
        "can_write": bool(actor and actor.has_scope("write")),
        "can_admin": bool(actor and actor.has_scope("admin")),
        # Only queried when a page shows the tenant switcher.
        "my_tenants": SimpleLazyObject(lambda: list(tenant_list_for_user(user=user))),
    }
