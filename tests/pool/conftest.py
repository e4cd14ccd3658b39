"""Warm pool helpers: a tenant with a pool on the test node, emptied at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings

from tenants.models import TenantPolicy
from tests.processes import wait_for
from workspaces.models import Workspace, WorkspaceStatus
from workspaces.pool import pool_maintain

NODE = settings.DEVBENCH_NODE


def pool_members(tenant: Any, *, status: str | None = WorkspaceStatus.RUNNING) -> list[Workspace]:
    rows = Workspace.all_objects.filter(tenant=tenant, pooled=True).exclude(
        status__in=(WorkspaceStatus.REMOVING, WorkspaceStatus.REMOVED)
    )
    if status is not None:
        rows = rows.filter(status=status)
    return list(rows.order_by("created_at"))


def policy_set(tenant: Any, **changes: Any) -> TenantPolicy:
    policy = TenantPolicy.objects.get(tenant=tenant)
    for name, value in changes.items():
        setattr(policy, name, value)
    policy.save()
    return policy


@pytest.fixture
def fill_pool(live_worker: Any, tenant: Any) -> Iterator[Callable[[int], list[Workspace]]]:
    """Give ``tenant`` a pool of ``size`` on the test node and wait until it is ready.
    At teardown the pool is set to 0 and its members removed."""

    def _fill(size: int) -> list[Workspace]:
        policy_set(tenant, warm_pool_size=size, max_workspaces=40)
        pool_maintain(tenant_id=tenant.pk, node=NODE)
        return wait_for(
            lambda: (members := pool_members(tenant)) and len(members) == size and members,
            what=f"a pool of {size}",
        )

    yield _fill
    policy_set(tenant, warm_pool_size=0)
    pool_maintain(tenant_id=tenant.pk, node=NODE)
    wait_for(lambda: not pool_members(tenant, status=None), what="the pool to empty")


# The workspaces' engine client and force-kill-at-teardown list, shared with their tests.
from tests.workspaces.conftest import engine, kill_after  # noqa: E402, F401
