"""Checks a new workspace passes under its tenant's policy lock: the one place for the
workspace quota and alias uniqueness, shared by cold spawns and warm-pool claims."""

from __future__ import annotations

from tenants.models import Tenant, TenantPolicy
from workspaces.errors import AliasInUse, WorkspaceQuotaExceeded
from workspaces.models import LIVE_STATUSES, Workspace, WorkspaceStatus


def workspace_admit(*, tenant: Tenant, locked_policy: TenantPolicy, alias: str | None) -> None:
    """Raise unless the tenant may have one more workspace with this alias. The caller
    holds the policy row's lock (``select_for_update``), so the counts stay true until
    its row is written. Pooled workspaces are not the tenant's yet and do not count."""
    live = Workspace.objects.filter(tenant=tenant, status__in=LIVE_STATUSES).count()
    if live >= locked_policy.max_workspaces:
        raise WorkspaceQuotaExceeded(
            f"The tenant already has {live} workspaces, the most its policy allows; "
            "kill one first.",
            limit="max_workspaces",
            max=locked_policy.max_workspaces,
            live=live,
        )
    if (
        alias
        and Workspace.objects.filter(tenant=tenant, alias=alias)
        .exclude(status=WorkspaceStatus.REMOVED)
        .exists()
    ):
        raise AliasInUse(f"The alias '{alias}' already names a workspace.", alias=alias)
