"""Retention: finished execs and their output go after the tenant's ``exec_retention_days``.

Deleted in small batches, each its own short transaction (chunks first, then the
rows), so no writer waits long on a lock. Active execs are never touched. The
usage roll-up (``usage`` app) is written when an exec finishes, so purging rows
loses no usage numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from execution.models import TERMINAL_STATUSES, Exec, ExecChunk
from tenants.models import TenantPolicy


@dataclass
class PurgeReport:
    execs: int = 0
    chunks: int = 0
    tenants: dict[str, int] = field(default_factory=dict)


def exec_purge(*, now: datetime | None = None, batch_size: int | None = None) -> PurgeReport:
    """Delete every tenant's finished execs older than its policy's retention (0: kept)."""
    now = now or timezone.now()
    size = batch_size or settings.DEVBENCH_EXEC_PURGE_BATCH
    report = PurgeReport()
    policies = TenantPolicy.objects.filter(exec_retention_days__gt=0).select_related("tenant")
    for policy in policies:
        cutoff = now - timedelta(days=policy.exec_retention_days)
        old = Exec.objects.filter(
            tenant_id=policy.tenant_id, status__in=TERMINAL_STATUSES, finished_at__lt=cutoff
        )
        purged = 0
        while True:
            ids = list(old.order_by("pk").values_list("pk", flat=True)[:size])
            if not ids:
                break
            with transaction.atomic():
                # Chunks have nothing pointing at them: Django deletes them with one
                # DELETE ... WHERE exec_id IN (...), never loading them.
                _, counts = Exec.objects.filter(pk__in=ids).delete()
            purged += counts.get(Exec._meta.label, 0)
            report.chunks += counts.get(ExecChunk._meta.label, 0)
        if purged:
            report.tenants[policy.tenant.slug] = purged
            report.execs += purged
    return report
