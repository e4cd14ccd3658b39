"""An exec as its runner loads it, carried with the hand-off to its node's worker.

A runner starts by loading its exec with the workspace, the tenant and the
tenant's policy (one query, ``execution.worker``). The process that has just
created the exec holds all four rows already: it read them under the
workspace's lock in the transaction that inserted the exec. Sent with the
hand-off, they spare the runner that query (~2 ms before the engine hears of
the exec, on every exec). The claim that follows (a conditional UPDATE from
``starting``) still decides whether the exec runs, so a row that is no longer
current (cancelled meanwhile) runs nothing; the policy is the one in force when
the exec was admitted, a moment earlier.

Only the four rows' own columns travel, as JSON; a row that does not decode
(another version's columns) is not used and the runner loads the exec instead.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError

from core.model_json import row_dump, row_load
from execution.models import Exec
from tenants.models import Tenant, TenantPolicy
from workspaces.models import Workspace

logger = logging.getLogger(__name__)

_POLICY = Tenant.policy.related  # the reverse one-to-one: tenant -> policy


def runner_row(exec_: Exec) -> dict[str, Any] | None:
    """The exec with its workspace, tenant and policy, as JSON values; None unless all
    three are already loaded with it (never a query)."""
    if not (Exec.workspace.field.is_cached(exec_) and Exec.tenant.field.is_cached(exec_)):
        return None
    tenant = exec_.tenant  # loaded: no query, nor below
    if not _POLICY.is_cached(tenant):
        return None
    try:
        return {
            "exec": row_dump(exec_),
            "workspace": row_dump(exec_.workspace),
            "tenant": row_dump(tenant),
            "policy": row_dump(tenant.policy),
        }
    except TypeError as exc:  # a column JSON cannot carry: the runner reads the rows itself
        logger.warning("exec %s: no row for its runner (%s)", exec_.public_id, exc)
        return None


def runner_exec(row: dict[str, Any], *, exec_pk: int) -> Exec | None:
    """The exec ``runner_row`` made ``row`` of, as the runner's query would return it;
    None if the row does not decode or is not exec ``exec_pk``'s."""
    try:
        exec_ = row_load(Exec, row["exec"])
        workspace = row_load(Workspace, row["workspace"])
        tenant = row_load(Tenant, row["tenant"])
        policy = row_load(TenantPolicy, row["policy"])
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        logger.warning("exec %s: the handed-off row does not decode (%r); loading it", exec_pk, exc)
        return None
    if not (
        exec_.pk == exec_pk
        and exec_.workspace_id == workspace.pk
        and exec_.tenant_id == tenant.pk
        and policy.tenant_id == tenant.pk
    ):
        logger.warning("exec %s: the handed-off row is another exec's; loading it", exec_pk)
        return None
    # As select_related links them.
    Exec.workspace.field.set_cached_value(exec_, workspace)
    Exec.tenant.field.set_cached_value(exec_, tenant)
    _POLICY.set_cached_value(tenant, policy)
    TenantPolicy.tenant.field.set_cached_value(policy, tenant)
    return exec_
