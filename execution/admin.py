"""Execs in the Django admin: read-only, each team admin sees only their tenants' execs."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from execution.models import Exec
from execution.selectors import exec_list_managed
from tenants.admin import ReadOnlyTenantScopedAdmin


@admin.register(Exec)
class ExecAdmin(ReadOnlyTenantScopedAdmin):
    list_display = ("public_id", "tenant", "workspace", "status", "exit_code", "created_at")
    list_filter = ("status",)
    search_fields = ("public_id", "workspace__public_id", "workspace__alias")
    # env values are never shown: they may hold secrets until the exec ends.
    exclude = ("env",)
    ordering = ("-created_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Exec]:
        return exec_list_managed(user=request.user)
