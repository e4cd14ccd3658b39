from django.contrib import admin
from django.urls import include, path

from devbench_site.api import api
from devbench_site.health import healthz, readyz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", api.urls),
    path("", include("django_prometheus.urls")),
]
