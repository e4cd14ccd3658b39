from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

from devbench_site.api import api
from devbench_site.health import healthz, readyz
from devbench_site.metrics import metrics_view
from execution.urls import tenant_urlpatterns as execution_pages
from tenants import views as tenant_pages
from workspaces.urls import tenant_urlpatterns as workspace_pages

# The web UI (namespace "web"): "/" lands on the user's tenant, pages live under /t/<slug>/.
web_urlpatterns: list[URLPattern | URLResolver] = [
    path("", tenant_pages.home, name="home"),
    path("t/", tenant_pages.tenant_picker, name="tenant_picker"),
    path("t/<slug:tenant>/", include(workspace_pages + execution_pages)),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", api.urls),
    path("metrics", metrics_view, name="prometheus-django-metrics"),
    path("", include((web_urlpatterns, "web"))),
]
