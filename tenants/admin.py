"""Tenant-scoped Django admin: team admins see and edit only their tenants.

Querysets come from the same selectors the API uses; superusers see all.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from tenants import selectors, services
from tenants.auth import principal_for_member
from tenants.models import (
    ApiToken,
    AuditEvent,
    Membership,
    MembershipRule,
    Scope,
    Tenant,
    TenantPolicy,
)
from tenants.principal import Principal


def admin_actor(request: HttpRequest, tenant: Tenant) -> Principal:
    """The signed-in admin acting in ``tenant`` (the querysets already limit which)."""
    return principal_for_member(user=request.user, tenant=tenant)


def _manages_any(request: HttpRequest) -> bool:
    ids = selectors.tenant_ids_managed_by(user=request.user)
    return ids is None or bool(ids)


class TenantScopedAdmin(admin.ModelAdmin):
    """Permissions follow tenant roles, not Django model permissions."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _manages_any(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _manages_any(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _manages_any(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _manages_any(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _manages_any(request)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "tenant":
            kwargs["queryset"] = selectors.tenant_list_managed(user=request.user)
        elif db_field.name == "user" and not request.user.is_superuser:
            ids = selectors.tenant_ids_managed_by(user=request.user) or []
            kwargs["queryset"] = (
                get_user_model().objects.filter(memberships__tenant_id__in=ids).distinct()
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ReadOnlyTenantScopedAdmin(TenantScopedAdmin):
    """Records (events, execs): seen by the admins of their tenant, changed by nobody here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ManagedTenantFilter(admin.SimpleListFilter):
    """Tenant filter listing only the tenants the admin manages (never others' names)."""

    title = "tenant"
    parameter_name = "tenant"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(t.pk), t.slug) for t in selectors.tenant_list_managed(user=request.user)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(tenant_id=self.value()) if self.value() else queryset


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    list_display = ("slug", "name", "active", "created_at")
    search_fields = ("slug", "name")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        return selectors.tenant_list_managed(user=request.user)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if request.user.is_superuser:
            return ()
        return ("slug", "active")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def save_model(self, request: HttpRequest, obj: Tenant, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        selectors.tenant_policy_get(tenant=obj)  # a new tenant gets the default policy


class MembershipForm(forms.ModelForm):
    email = forms.EmailField(
        required=False, help_text="Add by email: an account is created if none exists."
    )

    class Meta:
        model = Membership
        fields = ("tenant", "user", "email", "role")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "user" in self.fields:
            self.fields["user"].required = False

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("user") and not data.get("email"):
            raise forms.ValidationError("Choose a user or give an email address.")
        return data


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin):
    form = MembershipForm
    list_display = ("user", "tenant", "role", "granted_by", "created_at")
    list_filter = ("role", ManagedTenantFilter)
    readonly_fields = ("granted_by",)
    search_fields = ("user__username", "user__email", "tenant__slug")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        return selectors.membership_list_managed(user=request.user)

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        user = form.cleaned_data.get("user")
        actor = admin_actor(request, obj.tenant)
        if user is not None:
            saved = services.membership_set(actor=actor, user=user, role=obj.role)
        else:
            saved = services.membership_invite(
                actor=actor,
                email=form.cleaned_data["email"],
                role=obj.role,
                site_url=request.build_absolute_uri("/"),
            )
            if not saved.user.has_usable_password():
                messages.info(request, f"An invitation was mailed to {saved.user.email}.")
        obj.pk, obj.user = saved.pk, saved.user

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        services.membership_remove(actor=admin_actor(request, obj.tenant), membership=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        for membership in queryset:
            self.delete_model(request, membership)


class ApiTokenAddForm(forms.ModelForm):
    scope_choices = forms.MultipleChoiceField(
        choices=Scope.choices,
        initial=[Scope.READ, Scope.WRITE],
        widget=forms.CheckboxSelectMultiple,
        label="Scopes",
    )

    class Meta:
        model = ApiToken
        fields = ("tenant", "user", "name", "expires_at")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        tenant, user = data.get("tenant"), data.get("user")
        if tenant and user and not Membership.objects.filter(tenant=tenant, user=user).exists():
            raise forms.ValidationError(f"{user} is not a member of {tenant}.")
        return data


@admin.register(ApiToken)
class ApiTokenAdmin(TenantScopedAdmin):
    list_display = (
        "name",
        "prefix",
        "tenant",
        "user",
        "scopes",
        "expires_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("tenant",)
    search_fields = ("name", "prefix", "user__username")
    actions = ("revoke_tokens",)
    readonly_fields = (
        "prefix",
        "tenant",
        "user",
        "scopes",
        "last_used_at",
        "created_at",
        "revoked_at",
    )
    fields = (
        "name",
        "prefix",
        "tenant",
        "user",
        "scopes",
        "expires_at",
        "last_used_at",
        "created_at",
        "revoked_at",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        return selectors.api_token_list_managed(user=request.user)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
            kwargs["fields"] = ("tenant", "user", "name", "scope_choices", "expires_at")
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("tenant", "user", "name", "scope_choices", "expires_at")
        return self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A token is created and revoked (both audited services), never edited or deleted.
        return () if obj is None else self.fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        token, secret = services.api_token_create(
            actor=admin_actor(request, obj.tenant),
            user=obj.user,
            name=obj.name,
            scopes=form.cleaned_data["scope_choices"],
            expires_at=obj.expires_at,
        )
        obj.pk = token.pk
        obj.prefix = token.prefix
        messages.warning(
            request,
            f"Token created. Copy it now, it will not be shown again: {secret}",
        )

    @admin.action(description="Revoke selected tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset:
            services.api_token_revoke(actor=admin_actor(request, token.tenant), token=token)
        self.message_user(request, f"Revoked {queryset.count()} token(s).")


@admin.register(TenantPolicy)
class TenantPolicyAdmin(TenantScopedAdmin):
    list_display = (
        "tenant",
        "default_image",
        "memory_limit_mb",
        "cpu_limit",
        "network_mode",
        "runtime",
        "max_workspaces",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[TenantPolicy]:
        return selectors.tenant_policy_list_managed(user=request.user)

    def save_model(self, request: HttpRequest, obj: TenantPolicy, form: Any, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            return
        services.tenant_policy_update(
            actor=admin_actor(request, obj.tenant),
            changes={name: form.cleaned_data[name] for name in form.changed_data},
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("tenant",) if obj is not None else ()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)


def _scoped_values_filter(field: str, label: str) -> type[admin.SimpleListFilter]:
    """A filter over the distinct values of ``field`` among the events the admin may see."""

    class ScopedValuesFilter(admin.SimpleListFilter):
        title = label
        parameter_name = field

        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
            values = (
                selectors.audit_event_list_managed(user=request.user)
                .exclude(**{field: ""})
                .order_by(field)
                .values_list(field, flat=True)
                .distinct()[:200]
            )
            return [(v, v) for v in values]

        def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
            return queryset.filter(**{field: self.value()}) if self.value() else queryset

    return ScopedValuesFilter


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyTenantScopedAdmin):
    """Read-only: events are evidence; nobody edits or deletes them here (retention does)."""

    list_display = (
        "created_at",
        "tenant",
        "actor_kind",
        "actor_id",
        "action",
        "target_type",
        "target_id",
        "outcome",
        "error_code",
    )
    list_filter = (
        "outcome",
        ManagedTenantFilter,
        _scoped_values_filter("action", "action"),
        _scoped_values_filter("actor_kind", "actor kind"),
        _scoped_values_filter("error_code", "error code"),
    )
    list_select_related = ("tenant",)
    search_fields = ("action", "target_id", "actor_id", "request_id", "error_code")
    date_hierarchy = "created_at"
    fields = (
        "created_at",
        "tenant",
        "action",
        "outcome",
        "error_code",
        "actor_kind",
        "actor_id",
        "target_type",
        "target_id",
        "request_id",
        "ip",
        "user_agent",
        "details_pretty",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        return selectors.audit_event_list_managed(user=request.user)

    @admin.display(description="details")
    def details_pretty(self, obj: AuditEvent) -> str:
        return format_html(
            "<pre>{}</pre>", json.dumps(obj.details, indent=2, sort_keys=True, default=str)
        )


@admin.register(MembershipRule)
class MembershipRuleAdmin(TenantScopedAdmin):
    """Claim -> membership rules of sign-in providers, for the admin's own tenants."""

    list_display = ("provider_id", "claim", "value", "tenant", "role", "active")
    list_filter = ("provider_id", "role", "active", ManagedTenantFilter)
    search_fields = ("provider_id", "claim", "value", "tenant__slug")

    def get_queryset(self, request: HttpRequest) -> QuerySet[MembershipRule]:
        return selectors.membership_rule_list_managed(user=request.user)
