"""Usage per tenant and day, for REST, the admin, the web page and quotas."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Q
from django.utils import timezone

from tenants.models import Tenant
from tenants.principal import Principal
from usage.errors import InvalidRange
from usage.models import RunState, UsageDay, WorkspaceRun

MAX_DAYS = 366


@dataclass(frozen=True)
class DayUsage:
    day: date
    workspace_seconds_running: float
    workspace_seconds_paused: float
    exec_count: int
    exec_seconds: float
    cpu_seconds: float
    storage_volume_bytes: int
    storage_snapshot_bytes: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def usage_days(*, tenant: Tenant, since: date, until: date) -> list[DayUsage]:
    """One entry per UTC day from ``since`` to ``until`` (both included), oldest first."""
    if until < since:
        raise InvalidRange("until must not be before since.")
    if (until - since).days >= MAX_DAYS:
        raise InvalidRange(f"At most {MAX_DAYS} days at once.", max_days=MAX_DAYS)
    start, end = _start_of(since), _start_of(until + timedelta(days=1))
    now = timezone.now()
    seconds: dict[tuple[date, str], float] = {}
    runs = WorkspaceRun.objects.filter(tenant=tenant, started_at__lt=end).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gt=start)
    )
    for run in runs.values("state", "started_at", "ended_at"):
        run_start, run_end = max(run["started_at"], start), min(run["ended_at"] or now, end)
        day = run_start.date()
        while _start_of(day) < run_end:
            lo = max(run_start, _start_of(day))
            hi = min(run_end, _start_of(day + timedelta(days=1)))
            if hi > lo:
                key = (day, run["state"])
                seconds[key] = seconds.get(key, 0.0) + (hi - lo).total_seconds()
            day += timedelta(days=1)
    rows = {
        u.day: u for u in UsageDay.objects.filter(tenant=tenant, day__gte=since, day__lte=until)
    }
    result = []
    day = since
    while day <= until:
        row = rows.get(day)
        result.append(
            DayUsage(
                day=day,
                workspace_seconds_running=round(seconds.get((day, RunState.RUNNING), 0.0), 3),
                workspace_seconds_paused=round(seconds.get((day, RunState.PAUSED), 0.0), 3),
                exec_count=row.exec_count if row else 0,
                exec_seconds=round(row.exec_seconds, 3) if row else 0.0,
                cpu_seconds=round(row.cpu_seconds, 3) if row else 0.0,
                storage_volume_bytes=row.storage_volume_bytes if row else 0,
                storage_snapshot_bytes=row.storage_snapshot_bytes if row else 0,
            )
        )
        day += timedelta(days=1)
    return result


def usage_list(
    *, actor: Principal, since: date | None = None, until: date | None = None
) -> list[DayUsage]:
    """The actor's tenant's usage per day (default: the last 30 days); read scope."""
    actor.require_scope("read")
    until = until or timezone.now().date()
    since = since or until - timedelta(days=29)
    return usage_days(tenant=actor.tenant, since=since, until=until)


def usage_total(*, tenant: Tenant, since: date, until: date | None = None) -> DayUsage:
    """Sums over a period (storage: the peak), e.g. for a quota check."""
    days = usage_days(tenant=tenant, since=since, until=until or timezone.now().date())
    return DayUsage(
        day=since,
        workspace_seconds_running=sum(d.workspace_seconds_running for d in days),
        workspace_seconds_paused=sum(d.workspace_seconds_paused for d in days),
        exec_count=sum(d.exec_count for d in days),
        exec_seconds=sum(d.exec_seconds for d in days),
        cpu_seconds=sum(d.cpu_seconds for d in days),
        storage_volume_bytes=max((d.storage_volume_bytes for d in days), default=0),
        storage_snapshot_bytes=max((d.storage_snapshot_bytes for d in days), default=0),
    )
