"""The exec's rows handed to its runner with the hand-off: decoded exactly as the
runner's own query returns them, never used when they are not that exec's, and sent
by the start that has them."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import TestCase
from django.utils import timezone

from execution import services, worker
from execution.models import Exec, ExecStatus
from execution.runner_row import runner_exec, runner_row
from execution.state import Senders
from tenants.models import TenantPolicy
from tests.factories import ExecFactory, WorkspaceFactory, columns_of

pytestmark = pytest.mark.django_db


def _started_exec(actor: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Exec, Any]:
    """An exec as ``exec_start`` creates it, and the row its dispatch sent."""
    TenantPolicy.objects.filter(tenant=tenant).update(
        cpu_limit=Decimal("1.50"), node_labels={"disk": "ssd"}, exec_output_cap_bytes=12345
    )
    workspace = WorkspaceFactory(
        tenant=tenant,
        container_id="c0ffee",
        expires_at=timezone.now() + timedelta(hours=1),
        labels={"team": "ünïcode"},
    )
    sent: list[tuple[int, str, dict[str, Any] | None]] = []
    recording = Senders(
        run=lambda pk, queue, row=None: sent.append((pk, queue, row)),
        kill=lambda pk, queue: None,
    )
    monkeypatch.setattr(services, "SENDERS", recording)
    with TestCase.captureOnCommitCallbacks(execute=True):  # dispatch sends on commit
        exec_ = services.exec_start(
            actor=actor,
            workspace=workspace,
            cmd=["sh", "-c", "echo ü"],
            env={"A": "1"},
            cwd="/tmp",
            timeout_s=30,
        )
    assert [(pk, queue) for pk, queue, _ in sent] == [(exec_.pk, f"node.{workspace.node}")]
    return exec_, sent[0][2]


def test_the_handed_off_row_decodes_to_what_the_runner_would_load(
    actor: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    exec_, row = _started_exec(actor, tenant, monkeypatch)
    assert row is not None
    wired = json.loads(json.dumps(row))  # as the agent carries it

    with django_assert_num_queries(0):
        built = runner_exec(wired, exec_pk=exec_.pk)
        assert built is not None
        built_policy = built.tenant.policy
        built_workspace = built.workspace
    loaded = worker._WITH_POLICY.get(id=exec_.pk)
    assert loaded is not None
    pairs = [
        (built, loaded),
        (built_workspace, loaded.workspace),
        (built.tenant, loaded.tenant),
        (built_policy, loaded.tenant.policy),
    ]
    for mine, theirs in pairs:
        assert columns_of(mine) == columns_of(theirs)
        assert {k: type(v) for k, v in columns_of(mine).items()} == {
            k: type(v) for k, v in columns_of(theirs).items()
        }
        assert not mine._state.adding and mine._state.db == "default"
    assert built.status == ExecStatus.STARTING
    assert built_policy.cpu_limit == Decimal("1.50") and built_policy.exec_output_cap_bytes == 12345
    assert built_policy.tenant is built.tenant


def test_a_row_that_is_not_the_execs_or_does_not_decode_is_not_used(
    actor: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    exec_, row = _started_exec(actor, tenant, monkeypatch)
    assert row is not None
    assert runner_exec(row, exec_pk=exec_.pk + 1) is None  # another exec's
    broken: list[dict[str, Any]] = [
        {**row, "policy": None},
        {k: v for k, v in row.items() if k != "workspace"},
        {**row, "exec": {**row["exec"], "created_at": "not a time"}},
        {**row, "exec": {k: v for k, v in row["exec"].items() if k != "cmd"}},
        {**row, "exec": {**row["exec"], "workspace_id": row["exec"]["workspace_id"] + 1}},
        {**row, "policy": {**row["policy"], "cpu_limit": "many"}},
    ]
    for bad in broken:
        assert runner_exec(bad, exec_pk=exec_.pk) is None, bad


def test_no_row_for_an_exec_loaded_without_its_workspace_and_policy(
    tenant: Any, django_assert_num_queries: Any
) -> None:
    exec_ = ExecFactory(tenant=tenant, workspace=WorkspaceFactory(tenant=tenant))
    plain = Exec.objects.get(pk=exec_.pk)
    with django_assert_num_queries(0):
        assert runner_row(plain) is None  # never a query to make one
    with_workspace = Exec.objects.select_related("workspace", "tenant").get(pk=exec_.pk)
    with django_assert_num_queries(0):
        assert runner_row(with_workspace) is None  # the policy is not loaded


def test_no_row_when_a_column_is_not_json(
    actor: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A column type JSON cannot carry (a later model's) means no row, never a failed
    hand-off: the runner reads the exec itself."""
    exec_, row = _started_exec(actor, tenant, monkeypatch)
    assert row is not None
    exec_.workspace.container_id = uuid.uuid4()  # type: ignore[assignment]
    assert runner_row(exec_) is None


def test_the_runner_reads_its_exec_only_without_a_row(
    actor: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    exec_, row = _started_exec(actor, tenant, monkeypatch)
    ran: list[Exec] = []
    monkeypatch.setattr(worker, "run_exec", lambda e, **kw: ran.append(e))
    with django_assert_num_queries(0):
        worker.exec_execute(exec_pk=exec_.pk, senders=services.SENDERS, row=row)
    with django_assert_num_queries(1):
        worker.exec_execute(exec_pk=exec_.pk, senders=services.SENDERS)
    with django_assert_num_queries(1):  # a row that is not its own: read as without one
        worker.exec_execute(exec_pk=exec_.pk, senders=services.SENDERS, row={"exec": 1})
    assert [e.pk for e in ran] == [exec_.pk] * 3
    assert ran[0].cmd == ran[1].cmd == ["sh", "-c", "echo ü"]
    assert ran[0].tenant.policy.exec_output_cap_bytes == 12345


def test_a_row_of_an_exec_no_longer_starting_runs_nothing(
    actor: Any, tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row is the exec when it was admitted; the runner still goes by its status."""
    exec_, row = _started_exec(actor, tenant, monkeypatch)
    assert row is not None
    ran: list[Exec] = []
    monkeypatch.setattr(worker, "run_exec", lambda e, **kw: ran.append(e))
    stale = {**row, "exec": {**row["exec"], "status": ExecStatus.CANCELLED.value}}
    worker.exec_execute(exec_pk=exec_.pk, senders=services.SENDERS, row=stale)
    assert ran == []
