from __future__ import annotations

from datetime import date

from ninja import Schema
from pydantic import Field


class UsageDayOut(Schema):
    day: date
    workspace_seconds_running: float
    workspace_seconds_paused: float = Field(description="Seconds workspaces spent paused (frozen).")
    exec_count: int
    exec_seconds: float = Field(description="Run time of the execs that ended that day.")
    cpu_seconds: float = Field(
        description="CPU time of the workspaces' processes (execs included), sampled by the meter."
    )
    storage_volume_bytes: int = Field(description="Peak size of the workspaces' volumes.")
    storage_snapshot_bytes: int = Field(
        description="Peak of what the tenant's ready snapshots add to their base images."
    )


class UsageQuery(Schema):
    since: date | None = Field(default=None, description="First day (UTC); default 30 days ago.")
    until: date | None = Field(default=None, description="Last day (UTC), included; default today.")
