"""Exec actions. REST, MCP, websockets and tasks all call these.

Data path (DESIGN.md "Exec: the data path"): ``exec_start`` writes the row
and takes a slot under the workspace row lock, then the runner task goes to
the workspace's node queue on commit; output lands in ExecChunk rows that
``exec_poll`` (and the websocket consumer) read after a seq.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from core.errors import Conflict, NotFound
from execution import notify, state
from execution.errors import ConcurrencyLimitExceeded
from execution.models import SLOT_STATUSES, Exec, ExecStatus, ExecUsage
from execution.selectors import (
    ExecMessage,
    exec_get,
    exec_list,
    exec_messages_after,
    exec_output,
)
from execution.validation import (
    redact_env,
    validate_after_seq,
    validate_cmd,
    validate_cwd,
    validate_env,
    validate_timeout,
    validate_wait,
)
from tenants.audit import audited
from tenants.principal import Principal
from tenants.selectors import tenant_policy_get
from workspaces.models import Workspace
from workspaces.selectors import workspace_require_running

# Reads live in selectors; re-exported so every interface imports exec_* from here.
__all__ = [
    "ExecPollResult",
    "ExecRunResult",
    "ExecUsage",
    "exec_cancel",
    "exec_get",
    "exec_list",
    "exec_poll",
    "exec_reconcile",
    "exec_run",
    "exec_start",
]

# exec_cancel waits this long for the exec to reach its terminal state.
CANCEL_WAIT_S = 10.0
# exec_run waits for the timeout plus this much (queueing, start, kill, drain).
RUN_GRACE_S = 30.0


@dataclass(frozen=True)
class ExecPollResult:
    exec_id: str
    status: str
    complete: bool
    exit_code: int | None
    messages: list[ExecMessage]
    # Pass as after_seq next time.
    next_seq: int
    truncated: bool
    first_seq: int
    usage: ExecUsage
    error_code: str
    error: str


@dataclass(frozen=True)
class ExecRunResult:
    exec_id: str
    status: str
    exit_code: int | None
    stdout: str
    stderr: str
    truncated: bool
    usage: ExecUsage
    error_code: str
    error: str


def _audit_cmd(cmd: list[str]) -> str:
    text = shlex.join(cmd)
    return text if len(text) <= 2000 else text[:2000] + "…"


def exec_start(
    *,
    actor: Principal,
    workspace: Workspace,
    cmd: list[str],
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    as_root: bool = False,
    timeout_s: int | None = None,
    idempotency_key: str | None = None,
    queue: bool = False,
) -> Exec:
    """Create an exec and hand it to a runner; with ``queue``, wait in line for a free slot.

    Without ``queue``, a workspace already running ``max_concurrent_execs``
    execs answers ConcurrencyLimitExceeded. A repeated ``idempotency_key``
    returns the exec it first created.
    """
    actor.require_scope("write")
    cmd = validate_cmd(cmd)
    cwd = validate_cwd(cwd)
    env = validate_env(env)
    timeout_s = validate_timeout(timeout_s)
    details: dict[str, Any] = {
        "workspace": workspace.public_id,
        "cmd": _audit_cmd(cmd),
        "cwd": cwd,
        "env": redact_env(env),
        "as_root": as_root,
        "timeout_s": timeout_s,
        "queue": queue,
    }
    with audited(actor=actor, action="exec.start", target_type="exec", details=details) as audit:
        if workspace.tenant_id != actor.tenant.pk:
            raise NotFound("Workspace not found.", code="workspace_not_found")
        exec_ = _exec_create(
            actor=actor,
            workspace=workspace,
            cmd=cmd,
            cwd=cwd,
            env=env,
            as_root=as_root,
            timeout_s=timeout_s,
            idempotency_key=idempotency_key or None,
            queue=queue,
        )
        audit.target_id = exec_.public_id
        audit.details["status"] = str(exec_.status)
    return exec_


def _exec_create(
    *,
    actor: Principal,
    workspace: Workspace,
    cmd: list[str],
    cwd: str,
    env: dict[str, str],
    as_root: bool,
    timeout_s: int | None,
    idempotency_key: str | None,
    queue: bool,
) -> Exec:
    if idempotency_key is not None:
        existing = _idempotent_replay(
            actor=actor, workspace=workspace, cmd=cmd, key=idempotency_key
        )
        if existing is not None:
            return existing
    with transaction.atomic():
        locked = state.lock_workspace(workspace.pk)
        workspace_require_running(workspace=locked)
        state.admit_waiting(locked)
        limit = tenant_policy_get(tenant=locked.tenant).max_concurrent_execs
        active = Exec.objects.filter(workspace=locked, status__in=SLOT_STATUSES).count()
        waiting = Exec.objects.filter(workspace=locked, status=ExecStatus.QUEUED).exists()
        if active < limit and not waiting:
            status = ExecStatus.STARTING
        elif queue:
            status = ExecStatus.QUEUED
        else:
            raise ConcurrencyLimitExceeded(
                f"Workspace '{locked.public_id}' already runs {active} of {limit} concurrent "
                "execs; wait for one to end, cancel one, or pass queue=true.",
                extra={"limit": limit, "active": active},
            )
        try:
            with transaction.atomic():
                exec_ = Exec.objects.create(
                    tenant=locked.tenant,
                    workspace=locked,
                    cmd=cmd,
                    cwd=cwd,
                    env=env,
                    as_root=as_root,
                    timeout_s=timeout_s,
                    status=status,
                    node=locked.node,
                    idempotency_key=idempotency_key,
                    created_by_id=actor.user_id,
                    actor_id=actor.actor_id,
                    dispatched_at=timezone.now() if status == ExecStatus.STARTING else None,
                )
        except IntegrityError:
            # The same key, concurrently, on another workspace's lock.
            exec_ = None
        if exec_ is not None and status == ExecStatus.STARTING:
            state.dispatch(exec_)
    if exec_ is None:
        assert idempotency_key is not None
        replay = _idempotent_replay(actor=actor, workspace=workspace, cmd=cmd, key=idempotency_key)
        assert replay is not None
        return replay
    return exec_


def _idempotent_replay(
    *, actor: Principal, workspace: Workspace, cmd: list[str], key: str
) -> Exec | None:
    existing = Exec.objects.filter(tenant=actor.tenant, idempotency_key=key).first()
    if existing is None:
        return None
    if existing.workspace_id != workspace.pk or existing.cmd != cmd:
        raise Conflict(
            "This idempotency_key was already used for a different exec.",
            code="idempotency_key_reused",
            extra={"exec_id": existing.public_id},
        )
    return existing


def _refresh(exec_: Exec) -> Exec:
    exec_.refresh_from_db()
    _reconcile_one(exec_)
    return exec_


def exec_poll(
    *, actor: Principal, exec_id: str, after_seq: int = 0, wait_s: float = 0
) -> ExecPollResult:
    """Output after ``after_seq`` (in seq order) and the state; with ``wait_s`` (at most 30),
    wait for new output or the end, returning as soon as either is there."""
    after_seq = validate_after_seq(after_seq)
    wait_s = validate_wait(wait_s)
    exec_ = exec_get(actor=actor, exec_id=exec_id)
    found: list[ExecMessage] = []

    def check() -> bool:
        nonlocal found
        # Status first: if it is terminal, every chunk is already stored.
        _refresh(exec_)
        found = exec_messages_after(exec_pk=exec_.pk, after_seq=after_seq)
        return bool(found) or exec_.is_terminal

    notify.wait_until(exec_.public_id, check, timeout_s=wait_s)
    next_seq = found[-1].seq if found else after_seq
    return ExecPollResult(
        exec_id=exec_.public_id,
        status=str(exec_.status),
        complete=exec_.is_terminal and next_seq >= exec_.last_seq,
        exit_code=exec_.exit_code,
        messages=found,
        next_seq=next_seq,
        truncated=exec_.truncated,
        first_seq=exec_.first_seq,
        usage=exec_.usage,
        error_code=exec_.error_code,
        error=exec_.error,
    )


def exec_wait(*, exec_: Exec, timeout_s: float) -> Exec:
    """Block until the exec is terminal or ``timeout_s`` passes; returns it refreshed."""
    notify.wait_until(exec_.public_id, lambda: _refresh(exec_).is_terminal, timeout_s=timeout_s)
    return exec_


def exec_cancel(*, actor: Principal, exec_id: str) -> Exec:
    """Cancel an exec: a queued or starting one never runs, a running one has its whole
    process tree killed. Cancelling a finished exec changes nothing."""
    actor.require_scope("write")
    with audited(actor=actor, action="exec.cancel", target_type="exec", target_id=exec_id):
        exec_ = exec_get(actor=actor, exec_id=exec_id)
        if exec_.is_terminal:
            return exec_
        if not state.finish(
            exec_,
            ExecStatus.CANCELLED,
            from_statuses=(ExecStatus.QUEUED, ExecStatus.STARTING),
        ) and state.request_cancel(exec_):
            _send_kill(exec_)
    return exec_wait(exec_=exec_, timeout_s=CANCEL_WAIT_S)


def _send_kill(exec_: Exec) -> None:
    from execution.tasks import exec_kill_task

    pk, queue = exec_.pk, state.runner_queue(exec_.node)
    transaction.on_commit(lambda: exec_kill_task.apply_async(args=[pk], queue=queue))


def exec_run(
    *,
    actor: Principal,
    workspace: Workspace,
    cmd: list[str],
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    as_root: bool = False,
    timeout_s: int | None = None,
    idempotency_key: str | None = None,
    queue: bool = False,
) -> ExecRunResult:
    """Start an exec and wait for it: its status, exit code and (kept) output.

    Without ``timeout_s`` the exec gets DEVBENCH_EXEC_RUN_DEFAULT_TIMEOUT_S,
    so the call always ends. If the exec is still not finished after the
    timeout plus a grace period (e.g. queued behind others), the current
    state is returned and the exec carries on: poll it by ``exec_id``.
    """
    timeout_s = timeout_s or settings.DEVBENCH_EXEC_RUN_DEFAULT_TIMEOUT_S
    exec_ = exec_start(
        actor=actor,
        workspace=workspace,
        cmd=cmd,
        cwd=cwd,
        env=env,
        as_root=as_root,
        timeout_s=timeout_s,
        idempotency_key=idempotency_key,
        queue=queue,
    )
    exec_wait(exec_=exec_, timeout_s=float(exec_.timeout_s or timeout_s) + RUN_GRACE_S)
    stdout, stderr = exec_output(exec_pk=exec_.pk)
    return ExecRunResult(
        exec_id=exec_.public_id,
        status=str(exec_.status),
        exit_code=exec_.exit_code,
        stdout=stdout.decode("utf-8", errors="replace"),
        stderr=stderr.decode("utf-8", errors="replace"),
        truncated=exec_.truncated,
        usage=exec_.usage,
        error_code=exec_.error_code,
        error=exec_.error,
    )


# --- runner side (called by tasks) ----------------------------------------------


def exec_execute(*, exec_pk: int, worker: str = "") -> None:
    """Run an admitted exec to its end (the runner task). Safe to call twice: only the
    call that moves it from starting to running runs it."""
    from execution.runner import run_exec

    exec_ = Exec.objects.select_related("workspace", "tenant").filter(pk=exec_pk).first()
    if exec_ is None or exec_.status != ExecStatus.STARTING:
        return
    run_exec(exec_, worker=worker)


def exec_kill_processes(*, exec_pk: int) -> None:
    """Kill what is left of an exec in its container (cancel, or a lost runner's exec)."""
    from execution.proctree import kill_process_tree
    from execution.runner import exec_user
    from workspaces.runtime import get_driver

    exec_ = Exec.objects.select_related("workspace").filter(pk=exec_pk).first()
    if exec_ is None or not exec_.workspace.container_id:
        return
    if exec_.status not in (ExecStatus.RUNNING, ExecStatus.LOST):
        return
    kill_process_tree(
        driver=get_driver(),
        container_id=exec_.workspace.container_id,
        exec_public_id=exec_.public_id,
        user=exec_user(exec_),
    )


@dataclass(frozen=True)
class ReconcileReport:
    lost: list[str]
    redispatched: list[str]
    admitted: list[str]


def _mark_lost(exec_: Exec, *, stale_after_s: float) -> bool:
    cutoff = timezone.now() - timedelta(seconds=stale_after_s)
    lost = state.finish(
        exec_,
        ExecStatus.LOST,
        from_statuses=(ExecStatus.RUNNING,),
        extra=Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True),
        error_code="runner_lost",
        error=(
            f"The worker running this exec stopped answering (no heartbeat for "
            f"{stale_after_s:g} s); output stored until then is kept."
        ),
    )
    if lost:
        _send_kill(exec_)
    return lost


def _reconcile_one(exec_: Exec) -> None:
    """On-demand check while a client looks at the exec (no periodic job needed)."""
    if exec_.status != ExecStatus.RUNNING or exec_.heartbeat_at is None:
        return
    stale_after_s = float(settings.DEVBENCH_EXEC_STALE_AFTER_S)
    if exec_.heartbeat_at < timezone.now() - timedelta(seconds=stale_after_s):
        _mark_lost(exec_, stale_after_s=stale_after_s)
        exec_.refresh_from_db()


def exec_reconcile(*, stale_after_s: float | None = None) -> ReconcileReport:
    """Periodic repair: running execs without a heartbeat become ``lost``; starting ones no
    worker claimed get their task again; queued ones are admitted where slots are free."""
    stale = float(
        stale_after_s if stale_after_s is not None else settings.DEVBENCH_EXEC_STALE_AFTER_S
    )
    now = timezone.now()
    lost: list[str] = []
    for exec_ in Exec.objects.filter(
        status=ExecStatus.RUNNING, heartbeat_at__lt=now - timedelta(seconds=stale)
    ):
        if _mark_lost(exec_, stale_after_s=stale):
            lost.append(exec_.public_id)
    redispatched: list[str] = []
    redispatch_cutoff = now - timedelta(seconds=settings.DEVBENCH_EXEC_REDISPATCH_AFTER_S)
    for exec_ in Exec.objects.filter(
        status=ExecStatus.STARTING, dispatched_at__lt=redispatch_cutoff
    ):
        with transaction.atomic():
            if Exec.objects.filter(pk=exec_.pk, status=ExecStatus.STARTING).update(
                dispatched_at=now
            ):
                state.dispatch(exec_)
                redispatched.append(exec_.public_id)
    admitted: list[str] = []
    workspace_ids = set(
        Exec.objects.filter(status=ExecStatus.QUEUED).values_list("workspace_id", flat=True)
    )
    for workspace_id in workspace_ids:
        with transaction.atomic():
            admitted += [
                e.public_id for e in state.admit_waiting(state.lock_workspace(workspace_id))
            ]
    return ReconcileReport(lost=lost, redispatched=redispatched, admitted=admitted)
