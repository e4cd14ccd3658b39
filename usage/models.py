"""What each tenant used, kept apart from the rows it is measured on.

``WorkspaceRun`` records each interval a workspace was running (or paused), so
workspace-seconds per day are exact and survive the workspace. ``UsageDay``
accumulates what is counted as it happens (execs, when they end) or sampled
(storage, CPU time), per tenant and UTC day; exec retention never touches it.
"""

from __future__ import annotations

from django.db import models

from tenants.models import Tenant
from workspaces.models import Workspace


class RunState(models.TextChoices):
    RUNNING = "running"
    PAUSED = "paused"


class WorkspaceRun(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="workspace_runs")
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="runs")
    state = models.CharField(max_length=10, choices=RunState.choices, default=RunState.RUNNING)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    # The container's CPU time (ns) at the last meter reading of this run.
    cpu_ns = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["tenant", "started_at"]),
            models.Index(fields=["tenant", "ended_at"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace"],
                condition=models.Q(ended_at__isnull=True),
                name="workspace_run_one_open",
            )
        ]

    def __str__(self) -> str:
        return f"{self.workspace_id} {self.state} from {self.started_at:%Y-%m-%d %H:%M:%S}"


class UsageDay(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="usage_days")
    day = models.DateField()
    exec_count = models.PositiveIntegerField(default=0)
    exec_seconds = models.FloatField(default=0.0)  # run time of the execs that ended that day
    cpu_seconds = models.FloatField(default=0.0)  # CPU time of the workspaces' processes
    storage_volume_bytes = models.PositiveBigIntegerField(default=0)  # peak of the day
    storage_snapshot_bytes = models.PositiveBigIntegerField(default=0)  # peak of the day

    class Meta:
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "day"], name="usage_day_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day}"
