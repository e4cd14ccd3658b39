from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

from core.health import healthz, readyz
from devbench_site.api import api
from devbench_site.metrics import metrics_view
from execution.urls import tenant_urlpatterns as execution_pages
from tenants import views as tenant_pages
from tenants.audit_views import audit_export, audit_page
from usage.views import usage_page
from workspaces.urls import tenant_urlpatterns as workspace_pages

ops_pages = [
    path("usage/", usage_page, name="usage"),
    path("audit/", audit_page, name="audit"),
    path("audit/export", audit_export, name="audit_export"),
]

# The web UI (namespace "web"): "/" lands on the user's tenant, pages live under /t/<slug>/.
web_urlpatterns: list[URLPattern | URLResolver] = [
    path("", tenant_pages.home, name="home"),
    path("t/", tenant_pages.tenant_picker, name="tenant_picker"),
    path("t/<slug:tenant>/", include(workspace_pages + execution_pages + ops_pages)),
]

# One sign-in form: the admin's sends to the site's (allauth), whose failed attempts are
# rate limited (ACCOUNT_RATE_LIMITS), instead of offering an unlimited form of its own.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", api.urls),
    path("metrics", metrics_view, name="prometheus-django-metrics"),
    path("", include((web_urlpatterns, "web"))),
]
