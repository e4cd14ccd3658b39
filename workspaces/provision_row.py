"""A new workspace as its node's worker loads it to provision it, carried with the
hand-off (``provisioning.workspace_provision_enqueue``).

Provisioning starts by loading the workspace with its tenant and the tenant's policy (one
query). The web process that has just inserted the row holds all three: it read the
policy under its lock in the same transaction. Sent with the hand-off, they spare the
worker that query (~3.5 ms of a cold spawn before the engine hears of it). Whether the
row is still ``creating`` is decided, as before, by the conditional UPDATE that marks it
running (a row killed meanwhile has what was built for it removed); the policy is the
one the spawn was admitted under, a moment earlier.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError

from core.model_json import row_dump, row_load
from tenants.models import Tenant, TenantPolicy
from workspaces.models import Workspace

logger = logging.getLogger(__name__)

_POLICY = Tenant.policy.related  # the reverse one-to-one: tenant -> policy


def provision_row(workspace: Workspace, policy: TenantPolicy) -> dict[str, Any] | None:
    """The workspace with its tenant and ``policy`` as JSON values; None unless its tenant
    is loaded with it (never a query) and ``policy`` is that tenant's."""
    if not Workspace.tenant.field.is_cached(workspace) or policy.tenant_id != workspace.tenant_id:
        return None
    try:
        return {
            "workspace": row_dump(workspace),
            "tenant": row_dump(workspace.tenant),
            "policy": row_dump(policy),
        }
    except TypeError as exc:  # a column JSON cannot carry: the worker reads the rows itself
        logger.warning("workspace %s: no row for its worker (%s)", workspace.public_id, exc)
        return None


def provision_workspace(row: dict[str, Any], *, workspace_pk: int) -> Workspace | None:
    """The workspace ``provision_row`` made ``row`` of, with its tenant and policy as the
    worker's query would link them; None if ``row`` does not decode or is not workspace
    ``workspace_pk``'s."""
    try:
        workspace = row_load(Workspace, row["workspace"])
        tenant = row_load(Tenant, row["tenant"])
        policy = row_load(TenantPolicy, row["policy"])
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        logger.warning(
            "workspace %s: the handed-off row does not decode (%r); loading it", workspace_pk, exc
        )
        return None
    if not (
        workspace.pk == workspace_pk
        and workspace.tenant_id == tenant.pk
        and policy.tenant_id == tenant.pk
    ):
        logger.warning("workspace %s: the handed-off row is another's; loading it", workspace_pk)
        return None
    Workspace.tenant.field.set_cached_value(workspace, tenant)
    _POLICY.set_cached_value(tenant, policy)
    TenantPolicy.tenant.field.set_cached_value(policy, tenant)
    return workspace
