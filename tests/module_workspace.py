"""One running workspace shared by the tests of a module (module-scoped fixtures)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections

from tenants.principal import Principal, system_principal
from tests.factories import TenantFactory
from workspaces.models import Workspace


@contextmanager
def module_workspace(django_db_blocker: Any) -> Iterator[tuple[Any, Principal, Workspace]]:
    """A new tenant, its system principal and a running busybox workspace; removed after."""
    from workspaces.services import workspace_kill, workspace_spawn

    with django_db_blocker.unblock():
        tenant = TenantFactory()
        actor = system_principal(tenant)
        workspace = workspace_spawn(actor=actor, image="devbench/busybox:latest", wait=True)
    yield tenant, actor, workspace
    with django_db_blocker.unblock():
        workspace.refresh_from_db()
        if workspace.status != "removed":
            workspace_kill(actor=actor, workspace=workspace, force=True)
        tenant.delete()
        # Not left open for the tests after these, which may run without the database.
        connections.close_all()
