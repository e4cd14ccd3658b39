"""Tenant-scoped admin for workspaces: team admins see and kill only their tenants'.

Workspaces are made through the spawn service (REST, MCP, web), never here;
the admin lists them and kills them through the same service, audited.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.errors import DevBenchError
from tenants.admin import TenantPolicyAdmin, TenantScopedAdmin
from tenants.auth import principal_for_member
from tenants.models import TenantPolicy
from workspaces import selectors, services
from workspaces.environment_templates import selectors as template_selectors
from workspaces.environment_templates import services as template_services
from workspaces.models import (
    Attachment,
    Node,
    Registry,
    Snapshot,
    Template,
    Workspace,
    WorkspaceStatus,
)
from workspaces.nodes import live_workspaces_on, node_set_drain
from workspaces.placement import MIB, NodeLoad, node_loads
from workspaces.pool import pool_states
from workspaces.registries import selectors as registry_selectors
from workspaces.registries import services as registry_services
from workspaces.runtime.agent_tls import certificate_fingerprint
from workspaces.snapshots import selectors as snapshot_selectors
from workspaces.snapshots import services as snapshot_services


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
        "warm",
        "expires_at",
        "node",
        "created_at",
    )
    list_filter = ("status", "persistent", "warm", "node")
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


@admin.register(Snapshot)
class SnapshotAdmin(TenantScopedAdmin):
    """Snapshots are taken through the API, MCP or web UI; here they are listed and
    deleted through the same service (refused while a workspace uses one)."""

    list_display = (
        "public_id",
        "name",
        "tenant",
        "status",
        "source_workspace_public_id",
        "base_image_ref",
        "size_bytes",
        "node",
        "created_at",
    )
    list_filter = ("status", "node")
    search_fields = ("public_id", "name", "source_workspace_public_id", "tenant__slug")
    actions = ("delete_snapshots",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Snapshot]:
        return snapshot_selectors.snapshot_list_managed(user=request.user)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in Snapshot._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # capture needs a running workspace and the engine

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a row delete would orphan the image: use the action

    @admin.action(description="Delete selected snapshots (and their images)")
    def delete_snapshots(self, request: HttpRequest, queryset: QuerySet[Snapshot]) -> None:
        deleted = 0
        for snapshot in queryset:
            try:
                actor = principal_for_member(user=request.user, tenant=snapshot.tenant)
                snapshot_services.snapshot_delete(actor=actor, snapshot=snapshot)
            except DevBenchError as exc:
                self.message_user(request, f"{snapshot}: {exc.message}", messages.ERROR)
                continue
            deleted += 1
        self.message_user(request, f"Deleted {deleted} snapshot(s).")


class RegistryForm(forms.ModelForm):
    # Write-only: the stored password is never rendered back (empty keeps it).
    password = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted; leave empty to keep the current one.",
    )

    class Meta:
        model = Registry
        fields = ("tenant", "host", "username")


@admin.register(Registry)
class RegistryAdmin(TenantScopedAdmin):
    """Registry credentials: a tenant admin manages the tenant's; installation-level rows
    (no tenant) are for superusers. The password is write-only."""

    form = RegistryForm
    list_display = ("host", "tenant", "username", "updated_at")
    search_fields = ("host", "username", "tenant__slug")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Registry]:
        return registry_selectors.registry_list_managed(user=request.user)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        if not request.user.is_superuser:
            form.base_fields["tenant"].required = True  # installation rows: superusers only
        return form

    def save_model(self, request: HttpRequest, obj: Registry, form: Any, change: bool) -> None:
        password = form.cleaned_data.get("password") or None
        actor = principal_for_member(user=request.user, tenant=obj.tenant) if obj.tenant else None
        registry_services.registry_save(actor=actor, registry=obj, password=password)


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    """Nodes belong to the installation, not to a tenant: superusers only.

    Capacity and labels are edited here (a worker's DEVBENCH_NODE_* settings win
    when it registers); the agent's secret is never shown.
    """

    list_display = (
        "name",
        "state",
        "labels",
        "load_workspaces",
        "load_memory",
        "load_cpus",
        "heartbeat_at",
        "version",
    )
    list_filter = ("state", "drain")
    fields = (
        "name",
        "state",
        "drain",
        "labels",
        "max_workspaces",
        "memory_bytes",
        "cpus",
        "engine_endpoint",
        "agent_url",
        "agent_socket",
        "agent_fingerprint",
        "heartbeat_at",
        "version",
    )
    readonly_fields = (
        "state",
        "engine_endpoint",
        "agent_url",
        "agent_socket",
        "agent_fingerprint",
        "heartbeat_at",
        "version",
    )
    actions = ("drain_nodes", "undrain_nodes")

    @admin.display(description="agent certificate (SHA-256)")
    def agent_fingerprint(self, node: Node) -> str:
        return certificate_fingerprint(node.agent_cert) if node.agent_cert else "-"

    def _superuser(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._superuser(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._superuser(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._superuser(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a node's worker registers it

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._superuser(request) and (obj is None or not live_workspaces_on(obj.name))

    def _load(self, obj: Node) -> NodeLoad:
        return node_loads([obj])[0]  # one query per row: an installation has few nodes

    @admin.display(description="workspaces")
    def load_workspaces(self, obj: Node) -> str:
        return f"{self._load(obj).workspaces} / {obj.max_workspaces}"

    @admin.display(description="memory reserved")
    def load_memory(self, obj: Node) -> str:
        used = self._load(obj).memory_bytes // MIB
        return f"{used} / {obj.memory_bytes // MIB} MiB" if obj.memory_bytes else f"{used} MiB"

    @admin.display(description="CPUs reserved")
    def load_cpus(self, obj: Node) -> str:
        used = self._load(obj).cpus
        return f"{used:g} / {float(obj.cpus):g}" if obj.cpus else f"{used:g}"

    def save_model(self, request: HttpRequest, obj: Node, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        node_set_drain(node=obj, drain=obj.drain)  # keeps state in step with the flag

    @admin.action(description="Drain: place nothing new on the selected nodes")
    def drain_nodes(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        for node in queryset:
            node_set_drain(node=node, drain=True)
        self.message_user(request, f"Draining {queryset.count()} node(s).")

    @admin.action(description="Undrain: place workspaces on the selected nodes again")
    def undrain_nodes(self, request: HttpRequest, queryset: QuerySet[Node]) -> None:
        for node in queryset:
            node_set_drain(node=node, drain=False)
        self.message_user(request, f"{queryset.count()} node(s) take new workspaces again.")


@admin.register(Template)
class TemplateAdmin(TenantScopedAdmin):
    """Templates are made over REST or the web UI; here they are listed, rebuilt and
    deleted through the same services."""

    list_display = ("public_id", "name", "version", "tenant", "status", "image", "node")
    list_filter = ("status",)
    search_fields = ("public_id", "name", "tenant__slug")
    actions = ("rebuild_templates", "delete_templates")
    exclude = ("context",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Template]:
        return template_selectors.template_list_managed(user=request.user)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in Template._meta.fields if f.name != "context"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made over REST or the web UI (a build needs a node)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a row delete would orphan the image: use the action

    def _each(
        self, request: HttpRequest, queryset: QuerySet[Template], act: Any, verb: str
    ) -> None:
        done = 0
        for template in queryset:
            try:
                actor = principal_for_member(user=request.user, tenant=template.tenant)
                act(actor=actor, template=template)
            except DevBenchError as exc:
                self.message_user(request, f"{template}: {exc.message}", messages.ERROR)
                continue
            done += 1
        self.message_user(request, f"{verb} {done} template(s).")

    @admin.action(description="Rebuild selected templates (as a new version)")
    def rebuild_templates(self, request: HttpRequest, queryset: QuerySet[Template]) -> None:
        self._each(request, queryset, template_services.template_rebuild, "Rebuilt")

    @admin.action(description="Delete selected templates (and their images)")
    def delete_templates(self, request: HttpRequest, queryset: QuerySet[Template]) -> None:
        self._each(request, queryset, template_services.template_delete, "Deleted")


class TenantPolicyPoolAdmin(TenantPolicyAdmin):
    """The tenant policy page, with its warm pool's state beside the fields that size it
    (registered here: the tenants app does not import workspaces)."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return (*super().get_readonly_fields(request, obj), "warm_pool_state")

    @admin.display(description="Warm pool now")
    def warm_pool_state(self, obj: TenantPolicy) -> str:
        if obj is None or obj.pk is None:
            return "-"
        pools = pool_states(tenants=[obj.tenant])[obj.tenant.slug]
        if not pools:
            return "no pool"
        lines = [
            f"{p.node}: {p.ready} ready, {p.creating} creating of {p.size} ({p.image})"
            for p in pools
        ]
        first = pools[0]
        latency = f"{first.refill_latency_s:.2f} s" if first.refill_latency_s is not None else "-"
        lines.append(f"hits {first.hits}, misses {first.misses}, refill latency {latency}")
        return "; ".join(lines)


admin.site.unregister(TenantPolicy)
admin.site.register(TenantPolicy, TenantPolicyPoolAdmin)
