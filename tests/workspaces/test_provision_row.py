"""The new workspace's rows handed to its node's worker with the spawn's hand-off: decoded
exactly as the worker's own query returns them, never used when they are not that
workspace's; and the row marked running with its open usage run in one statement."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import TestCase
from django.utils import timezone

from tenants.models import TenantPolicy
from tests.factories import WorkspaceFactory, columns_of
from usage.models import WorkspaceRun
from workspaces import provisioning, services
from workspaces.models import Workspace, WorkspaceStatus
from workspaces.provision_row import provision_row, provision_workspace

pytestmark = pytest.mark.django_db


def _spawned_row(actor: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """A workspace as a spawn inserts it, and the arguments its hand-off sent."""
    TenantPolicy.objects.filter(tenant=tenant).update(
        cpu_limit=Decimal("1.50"), node_labels={}, exec_output_cap_bytes=12345
    )
    sent: list[dict[str, Any]] = []

    def taken(node: str, work: str, args: dict[str, Any]) -> bool:
        sent.append(args)
        return True

    monkeypatch.setattr(provisioning, "node_hand_off", taken)
    with TestCase.captureOnCommitCallbacks(execute=True):  # handed off on commit
        workspace = services.workspace_spawn(
            actor=actor, image="devbench/busybox:latest", wait=False, alias="rowed"
        )
    assert [args["workspace_pk"] for args in sent] == [workspace.pk]
    return workspace, sent[0].get("row")


def test_the_handed_off_row_decodes_to_what_the_worker_would_load(
    actor: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    workspace, row = _spawned_row(actor, tenant, monkeypatch)
    assert row is not None
    wired = json.loads(json.dumps(row))  # as the agent carries it
    with django_assert_num_queries(0):
        built = provision_workspace(wired, workspace_pk=workspace.pk)
        assert built is not None
        built_policy = built.tenant.policy
    loaded = Workspace.all_objects.select_related("tenant", "tenant__policy").get(pk=workspace.pk)
    for mine, theirs in [
        (built, loaded),
        (built.tenant, loaded.tenant),
        (built_policy, loaded.tenant.policy),
    ]:
        assert columns_of(mine) == columns_of(theirs)
        assert not mine._state.adding
    assert built.status == WorkspaceStatus.CREATING and built.alias == "rowed"
    assert built_policy.cpu_limit == Decimal("1.50") and built_policy.tenant is built.tenant


def test_a_row_that_is_not_the_workspaces_or_does_not_decode_is_not_used(
    actor: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace, row = _spawned_row(actor, tenant, monkeypatch)
    assert row is not None
    assert provision_workspace(row, workspace_pk=workspace.pk + 1) is None
    for bad in [
        {**row, "policy": None},
        {k: v for k, v in row.items() if k != "tenant"},
        {**row, "workspace": {**row["workspace"], "created_at": "not a time"}},
        {**row, "workspace": {**row["workspace"], "tenant_id": row["workspace"]["tenant_id"] + 1}},
        {**row, "policy": {**row["policy"], "cpu_limit": "many"}},
    ]:
        assert provision_workspace(bad, workspace_pk=workspace.pk) is None, bad


def test_no_row_without_the_tenant_loaded_or_with_another_tenants_policy(
    tenant: Any, django_assert_num_queries: Any
) -> None:
    workspace = WorkspaceFactory(tenant=tenant)
    plain = Workspace.objects.get(pk=workspace.pk)
    policy = TenantPolicy.objects.get(tenant=tenant)
    other = TenantPolicy.objects.exclude(tenant=tenant).first() or WorkspaceFactory().tenant.policy
    with django_assert_num_queries(0):
        assert provision_row(plain, policy) is None  # never a query to make one
    loaded = Workspace.objects.select_related("tenant").get(pk=workspace.pk)
    assert provision_row(loaded, other) is None
    assert provision_row(loaded, policy) is not None


def test_a_provision_with_a_row_reads_nothing_before_the_engine(
    actor: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    workspace, row = _spawned_row(actor, tenant, monkeypatch)

    class Stop(Exception):
        pass

    def engine_reached(*args: Any, **kwargs: Any) -> Any:
        raise Stop

    monkeypatch.setattr(provisioning, "_create_or_adopt_container", engine_reached)
    with django_assert_num_queries(0), pytest.raises(Stop):
        provisioning.workspace_provision(workspace_id=workspace.pk, row=row)


def _creating(tenant: Any) -> Workspace:
    return WorkspaceFactory(
        tenant=tenant, status=WorkspaceStatus.CREATING, created_at=timezone.now()
    )


def test_marking_running_opens_one_running_run_in_one_statement(
    tenant: Any, django_assert_num_queries: Any
) -> None:
    workspace = _creating(tenant)
    now = timezone.now()
    with django_assert_num_queries(1):
        assert provisioning._mark_running(workspace, container_id="c0ffee", now=now)
    stored = Workspace.objects.get(pk=workspace.pk)
    assert (stored.status, stored.container_id, stored.updated_at) == ("running", "c0ffee", now)
    runs = list(WorkspaceRun.objects.filter(workspace=workspace))
    assert [(r.state, r.started_at, r.ended_at, r.tenant_id) for r in runs] == [
        ("running", now, None, tenant.pk)
    ]
    # Not creating any more: nothing changes, no run opens.
    assert not provisioning._mark_running(workspace, container_id="other", now=now)
    assert Workspace.objects.get(pk=workspace.pk).container_id == "c0ffee"
    assert WorkspaceRun.objects.filter(workspace=workspace).count() == 1


def test_marking_running_closes_an_open_run_of_another_state_and_keeps_a_running_one(
    tenant: Any,
) -> None:
    paused = _creating(tenant)
    earlier = timezone.now() - timedelta(minutes=5)
    WorkspaceRun.objects.create(tenant=tenant, workspace=paused, state="paused", started_at=earlier)
    now = timezone.now()
    assert provisioning._mark_running(paused, container_id="c1", now=now)
    runs = list(WorkspaceRun.objects.filter(workspace=paused).order_by("id"))
    assert [(r.state, r.ended_at) for r in runs] == [("paused", now), ("running", None)]

    running = _creating(tenant)
    WorkspaceRun.objects.create(
        tenant=tenant, workspace=running, state="running", started_at=earlier
    )
    assert provisioning._mark_running(running, container_id="c2", now=now)
    runs = list(WorkspaceRun.objects.filter(workspace=running))
    assert [(r.state, r.started_at, r.ended_at) for r in runs] == [("running", earlier, None)]
