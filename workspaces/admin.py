"""Tenant-scoped admin for workspaces: team admins see and kill only their tenants'.

Workspaces are made through the spawn service (REST, MCP, web), never here;
the admin lists them and kills them through the same service, audited.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.errors import DevBenchError
from tenants.admin import TenantScopedAdmin
from tenants.auth import principal_for_member
from workspaces import selectors, services
from workspaces.models import Attachment, Workspace, WorkspaceStatus


class AttachmentInline(admin.TabularInline):
    model = Attachment
    extra = 0
    can_delete = False
    fields = ("client_name", "session_id", "principal", "attached_at", "detached_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Workspace)
class WorkspaceAdmin(TenantScopedAdmin):
    list_display = (
        "public_id",
        "alias",
        "tenant",
        "status",
        "image_ref",
        "persistent",
        "expires_at",
        "node",
        "created_at",
    )
    list_filter = ("status", "persistent", "node")
    search_fields = ("public_id", "alias", "image_ref", "tenant__slug")
    actions = ("kill_workspaces",)
    inlines = (AttachmentInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Workspace]:
        return selectors.workspace_list_managed(user=request.user)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in Workspace._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # spawn through the API, MCP or web UI: it needs the engine

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # "kill" removes the container too; a row delete would orphan it

    @admin.action(description="Kill selected workspaces")
    def kill_workspaces(self, request: HttpRequest, queryset: QuerySet[Workspace]) -> None:
        killed = 0
        for workspace in queryset.exclude(status=WorkspaceStatus.REMOVED):
            try:
                actor = principal_for_member(user=request.user, tenant=workspace.tenant)
                services.workspace_kill(actor=actor, workspace=workspace)
            except DevBenchError as exc:
                self.message_user(request, f"{workspace}: {exc.message}", messages.ERROR)
                continue
            killed += 1
        self.message_user(request, f"Killed {killed} workspace(s).")
