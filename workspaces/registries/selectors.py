"""Which credentials an engine uses for a registry host (never shown to anyone)."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from tenants.selectors import tenant_ids_managed_by
from workspaces.models import Registry
from workspaces.registries.crypto import decrypt
from workspaces.runtime.base import RegistryAuth


def registry_for(*, tenant_id: int | None, host: str) -> Registry | None:
    """The tenant's row for the host, else the installation's."""
    rows = Registry.objects.filter(host=host).filter(Q(tenant_id=tenant_id) | Q(tenant=None))
    found = sorted(rows, key=lambda r: r.tenant_id is None)  # the tenant's own first
    return found[0] if found else None


def registry_auth(registry: Registry | None) -> RegistryAuth | None:
    if registry is None or not registry.username:
        return None
    return RegistryAuth(username=registry.username, password=decrypt(registry.password_encrypted))


def registry_list_managed(*, user: Any) -> QuerySet[Registry]:
    """For the admin: the rows of tenants the user administers; installation rows only for
    superusers."""
    ids = tenant_ids_managed_by(user=user)
    qs = Registry.objects.select_related("tenant")
    return qs if ids is None else qs.filter(tenant_id__in=ids)
