"""Execs in the Django admin: read-only, each team admin sees only their tenants' execs."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from execution.models import Exec
from execution.selectors import exec_list_managed
from tenants.selectors import tenant_ids_managed_by


@admin.register(Exec)
class ExecAdmin(admin.ModelAdmin):
    list_display = ("public_id", "tenant", "workspace", "status", "exit_code", "created_at")
    list_filter = ("status",)
    search_fields = ("public_id", "workspace__public_id", "workspace__alias")
    # env values are never shown: they may hold secrets until the exec ends.
    exclude = ("env",)
    ordering = ("-created_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Exec]:
        return exec_list_managed(user=request.user)

    def _manages_any(self, request: HttpRequest) -> bool:
        ids = tenant_ids_managed_by(user=request.user)
        return ids is None or bool(ids)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._manages_any(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._manages_any(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
