"""Retention: old finished execs and their output go, recent and active ones stay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from execution.models import Exec, ExecChunk
from execution.retention import exec_purge
from tenants.models import TenantPolicy
from tests.factories import TenantFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


def _exec(workspace: Any, *, status: str, age_days: float, chunks: int = 3) -> Exec:
    finished = timezone.now() - timedelta(days=age_days)
    exec_ = Exec.objects.create(
        tenant=workspace.tenant,
        workspace=workspace,
        cmd=["true"],
        status=status,
        finished_at=finished if status not in ("running", "queued") else None,
        last_seq=chunks,
    )
    ExecChunk.objects.bulk_create(
        ExecChunk(exec=exec_, seq=i + 1, stream=1, data=b"x" * 100) for i in range(chunks)
    )
    return exec_


def test_purges_old_output_and_rows_keeps_recent_and_active() -> None:
    tenant, keeper = TenantFactory(), TenantFactory()
    TenantPolicy.objects.filter(tenant=tenant).update(exec_retention_days=7)
    TenantPolicy.objects.filter(tenant=keeper).update(exec_retention_days=0)  # keeps all
    ws, ws_keeper = WorkspaceFactory(tenant=tenant), WorkspaceFactory(tenant=keeper)
    old = [_exec(ws, status=s, age_days=8) for s in ("completed", "failed", "lost", "cancelled")]
    recent = _exec(ws, status="completed", age_days=6)
    running = _exec(ws, status="running", age_days=30)
    Exec.objects.filter(pk=running.pk).update(created_at=timezone.now() - timedelta(days=30))
    kept_forever = _exec(ws_keeper, status="completed", age_days=400)

    report = exec_purge(batch_size=3)  # several batches

    assert report.execs == 4 and report.chunks == 12
    assert report.tenants == {tenant.slug: 4}
    assert not Exec.objects.filter(pk__in=[e.pk for e in old]).exists()
    assert not ExecChunk.objects.filter(exec_id__in=[e.pk for e in old]).exists()
    for survivor in (recent, running, kept_forever):
        assert Exec.objects.filter(pk=survivor.pk).exists()
        assert ExecChunk.objects.filter(exec=survivor).count() == 3
    assert exec_purge().execs == 0  # nothing left to do
