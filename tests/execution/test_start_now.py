"""An exec that can start at once is admitted in one pipelined round trip, under the
same rules as the general path: never past the slot limit, never ahead of a queued
exec, never in a workspace that does not run, and with the same rows for its runner."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, transaction

from execution import services, state
from execution.errors import ConcurrencyLimitExceeded
from execution.models import Exec, ExecStatus
from execution.start_now import exec_start_now
from execution.state import Senders
from tenants.models import TenantPolicy
from tests.factories import ExecFactory, WorkspaceFactory
from workspaces.errors import WorkspaceNotRunning
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, dict[str, Any] | None]]:
    """The runners exec_start sends (none really runs)."""
    runs: list[tuple[int, str, dict[str, Any] | None]] = []
    recording = Senders(
        run=lambda pk, queue, row=None: runs.append((pk, queue, row)),
        kill=lambda pk, queue: None,
    )
    monkeypatch.setattr(services, "SENDERS", recording)
    return runs


@pytest.fixture
def workspace(tenant: Any) -> Workspace:
    return WorkspaceFactory(tenant=tenant, container_id="c0ffee", node="local")


def _limit(tenant: Any, n: int) -> None:
    TenantPolicy.objects.filter(tenant=tenant).update(max_concurrent_execs=n)


def _locks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records each time the general path locks a workspace (and still locks it)."""
    locked: list[int] = []
    original = state.lock_workspace

    def lock_workspace(workspace_id: int) -> Workspace:
        locked.append(workspace_id)
        return original(workspace_id)

    monkeypatch.setattr(state, "lock_workspace", lock_workspace)
    return locked


def _unsaved(workspace: Workspace, **fields: Any) -> Exec:
    return Exec(
        tenant_id=workspace.tenant_id,
        workspace=workspace,
        cmd=["true"],
        status=ExecStatus.STARTING,
        node=workspace.node,
        **fields,
    )


def test_an_exec_that_can_start_needs_no_general_path_and_carries_its_rows(
    actor: Any, workspace: Workspace, sent: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    locks = _locks(monkeypatch)
    exec_ = services.exec_start(
        actor=actor, workspace=workspace, cmd=["echo", "hi"], env={"A": "1"}
    )
    assert locks == []  # admitted without the general path's lock-count-insert
    stored = Exec.objects.get(pk=exec_.pk)
    assert (stored.status, stored.cmd, stored.env, stored.node) == (
        ExecStatus.STARTING,
        ["echo", "hi"],
        {"A": "1"},
        "local",
    )
    assert stored.public_id == exec_.public_id and stored.dispatched_at is not None
    assert stored.created_at == exec_.created_at
    assert (stored.created_by_id, stored.actor_id) == (actor.user_id, actor.actor_id)
    # Its runner got the rows as read under the lock: the same as the general path sends.
    assert [(pk, queue) for pk, queue, _ in sent] == [(exec_.pk, "node.local")]
    row = sent[0][2]
    assert row is not None
    with transaction.atomic():  # the general path (no pipeline inside a transaction)
        general = services.exec_start(actor=actor, workspace=workspace, cmd=["echo", "hi"])
    assert locks == [workspace.pk]
    general_row = sent[1][2]
    assert general_row is not None
    assert row["workspace"] == general_row["workspace"]
    assert row["policy"] == general_row["policy"]
    assert row["tenant"] == general_row["tenant"]
    assert set(row["exec"]) == set(general_row["exec"])
    assert row["exec"]["id"] == exec_.pk and general_row["exec"]["id"] == general.pk


def test_a_full_workspace_refuses_or_queues_as_before(
    actor: Any, tenant: Any, workspace: Workspace, sent: list[Any]
) -> None:
    _limit(tenant, 1)
    first = services.exec_start(actor=actor, workspace=workspace, cmd=["sleep", "9"])
    assert first.status == ExecStatus.STARTING
    with pytest.raises(ConcurrencyLimitExceeded) as refused:
        services.exec_start(actor=actor, workspace=workspace, cmd=["true"])
    assert refused.value.extra == {"limit": 1, "active": 1}
    queued = services.exec_start(actor=actor, workspace=workspace, cmd=["true"], queue=True)
    assert queued.status == ExecStatus.QUEUED
    # A slot frees; the queued exec goes first, a new one does not overtake it.
    Exec.objects.filter(pk=first.pk).update(status=ExecStatus.COMPLETED)
    assert exec_start_now(_unsaved(workspace), workspace=workspace) is False
    later = services.exec_start(actor=actor, workspace=workspace, cmd=["true"], queue=True)
    queued.refresh_from_db()
    assert (queued.status, later.status) == (ExecStatus.STARTING, ExecStatus.QUEUED)
    assert [pk for pk, _, _ in sent] == [first.pk, queued.pk]
    assert Exec.objects.filter(workspace=workspace).count() == 3


@pytest.mark.parametrize(
    "change",
    [{"status": "stopped"}, {"container_id": ""}],
    ids=["stopped meanwhile", "no container"],
)
def test_a_workspace_that_does_not_run_gets_nothing_written(
    actor: Any, workspace: Workspace, sent: list[Any], change: dict[str, str]
) -> None:
    # The caller's copy still says running: the row, read under the lock, decides.
    Workspace.objects.filter(pk=workspace.pk).update(**change)
    assert exec_start_now(_unsaved(workspace), workspace=workspace) is False
    assert not Exec.objects.filter(workspace=workspace).exists()
    with pytest.raises(WorkspaceNotRunning):
        services.exec_start(actor=actor, workspace=workspace, cmd=["true"])
    assert sent == [] and not Exec.objects.filter(workspace=workspace).exists()


def test_not_inside_a_transaction_nor_with_an_idempotency_key(
    workspace: Workspace,
) -> None:
    with transaction.atomic():
        assert exec_start_now(_unsaved(workspace), workspace=workspace) is False
    assert exec_start_now(_unsaved(workspace, idempotency_key="k1"), workspace=workspace) is False
    assert not Exec.objects.filter(workspace=workspace).exists()
    assert exec_start_now(_unsaved(workspace), workspace=workspace) is True
    assert Exec.objects.filter(workspace=workspace).count() == 1


def test_simultaneous_starts_never_take_more_than_the_free_slots(
    tenant: Any, workspace: Workspace
) -> None:
    _limit(tenant, 4)
    ExecFactory(tenant=tenant, workspace=workspace, status=ExecStatus.RUNNING)
    barrier = threading.Barrier(8)
    admitted: list[bool] = []

    def start() -> None:
        try:
            barrier.wait()
            admitted.append(exec_start_now(_unsaved(workspace), workspace=workspace))
        finally:
            connection.close()  # each thread had its own connection, like separate processes

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(admitted) == [False] * 5 + [True] * 3
    assert Exec.objects.filter(workspace=workspace, status=ExecStatus.STARTING).count() == 3
