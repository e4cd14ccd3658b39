"""Usage in the Django admin: read-only, each admin sees only their tenants' days."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from tenants.admin import ManagedTenantFilter, TenantScopedAdmin
from tenants.selectors import tenant_ids_managed_by
from usage.models import UsageDay


@admin.register(UsageDay)
class UsageDayAdmin(TenantScopedAdmin):
    list_display = (
        "day",
        "tenant",
        "exec_count",
        "exec_seconds",
        "cpu_seconds",
        "storage_volume_bytes",
    )
    list_filter = (ManagedTenantFilter,)
    date_hierarchy = "day"
    readonly_fields = (
        "tenant",
        "day",
        "exec_count",
        "exec_seconds",
        "cpu_seconds",
        "storage_volume_bytes",
        "storage_snapshot_bytes",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[UsageDay]:
        qs = UsageDay.objects.select_related("tenant")
        ids = tenant_ids_managed_by(user=request.user)
        return qs if ids is None else qs.filter(tenant_id__in=ids)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
