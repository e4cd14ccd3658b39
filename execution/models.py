"""Execs (commands run in a workspace) and their stored output.

The database is the source of truth for output: the runner stores every
chunk before it tells anyone about it, so a client, web process or worker
can die without losing what was already produced.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import models
from django.utils import timezone

from tenants.models import Tenant
from workspaces.models import Workspace, new_public_id


def new_exec_id() -> str:
    return new_public_id("ex_")


class ExecStatus(models.TextChoices):
    # Waiting for a free slot of the workspace (exec_start with queue=true).
    QUEUED = "queued"
    # Holds a slot; the runner task is on its way to a worker.
    STARTING = "starting"
    RUNNING = "running"
    COMPLETED = "completed"  # the process exited on its own (any exit code)
    FAILED = "failed"  # it could not be run (bad cmd/cwd, engine error, workspace gone)
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    LOST = "lost"  # its runner died (found by reconciliation)


TERMINAL_STATUSES = (
    ExecStatus.COMPLETED,
    ExecStatus.FAILED,
    ExecStatus.TIMED_OUT,
    ExecStatus.CANCELLED,
    ExecStatus.LOST,
)
# Statuses that occupy one of the workspace's max_concurrent_execs slots.
SLOT_STATUSES = (ExecStatus.STARTING, ExecStatus.RUNNING)
ACTIVE_STATUSES = (ExecStatus.QUEUED, *SLOT_STATUSES)


class Stream(models.IntegerChoices):
    STDOUT = 1, "stdout"  # the engine's stream numbers
    STDERR = 2, "stderr"


@dataclass(frozen=True)
class ExecUsage:
    duration_ms: int | None  # from start to end (or to now while running)
    stdout_bytes: int  # produced, including any the output cap dropped
    stderr_bytes: int


class Exec(models.Model):
    public_id = models.CharField(max_length=32, unique=True, default=new_exec_id)
    # No index of its own: (tenant, public_id) below leads with it.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="execs", db_index=False
    )
    # No index of its own: (workspace, status) below serves every lookup by workspace, and
    # each index is one more write on every status change (none of which is a HOT update).
    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="execs", db_index=False
    )
    cmd = models.JSONField()
    cwd = models.CharField(max_length=4096, blank=True)
    # Values are replaced by their redacted form once the exec has ended.
    env = models.JSONField(default=dict, blank=True)
    as_root = models.BooleanField(default=False)
    timeout_s = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(
        max_length=10, choices=ExecStatus.choices, default=ExecStatus.STARTING
    )
    exit_code = models.IntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    error = models.TextField(blank=True)
    # Output accounting: bytes produced per stream (stored or not), the last
    # stored seq, the oldest one still stored, and whether the cap dropped any.
    stdout_bytes = models.PositiveBigIntegerField(default=0)
    stderr_bytes = models.PositiveBigIntegerField(default=0)
    last_seq = models.PositiveIntegerField(default=0)
    first_seq = models.PositiveIntegerField(default=1)
    truncated = models.BooleanField(default=False)
    node = models.CharField(max_length=100, default="local")
    worker = models.CharField(max_length=200, blank=True)
    engine_exec_id = models.CharField(max_length=100, blank=True)
    # NULL (not "") for "no key": the conditional unique constraint relies on it.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    actor_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="exec_unique_idempotency_key",
            ),
        ]
        indexes = [
            models.Index(fields=["workspace", "status"]),
            models.Index(fields=["status", "heartbeat_at"]),
            # The lookup of every request naming an exec (tenant_id = … AND public_id = …).
            # With only an index on tenant, PostgreSQL picks it whenever its statistics
            # predate the tenant's growth (they estimate one row) and then reads every exec
            # of the tenant to find one.
            models.Index(fields=["tenant", "public_id"]),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def usage(self) -> ExecUsage:
        duration = None
        if self.started_at is not None:
            end = self.finished_at or timezone.now()
            duration = int((end - self.started_at).total_seconds() * 1000)
        return ExecUsage(
            duration_ms=duration, stdout_bytes=self.stdout_bytes, stderr_bytes=self.stderr_bytes
        )


class ExecChunk(models.Model):
    """A run of output of one stream, at most 256 KiB; ``seq`` counts from 1 per exec."""

    # No index of its own: the unique (exec, seq) below serves every lookup by exec.
    exec = models.ForeignKey(Exec, on_delete=models.CASCADE, related_name="chunks", db_index=False)
    seq = models.PositiveIntegerField()
    stream = models.PositiveSmallIntegerField(choices=Stream.choices)
    data = models.BinaryField()

    class Meta:
        ordering = ["exec", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["exec", "seq"], name="exec_chunk_unique_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.exec_id}#{self.seq}"
