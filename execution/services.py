"""Exec actions callers take: REST, MCP, websockets and web views call these.

Data path (DESIGN.md "Exec: the data path"): ``exec_start`` writes the row
and takes a slot under the workspace row lock, then the runner task goes to
the workspace's node queue on commit; output lands in ExecChunk rows that
``exec_poll`` (and the websocket consumer) read after a seq. Reads are in
``execution.selectors``; what the workers do (run, kill, reconcile) is in
``execution.worker``.
"""

from __future__ import annotations

import contextlib
import functools
import shlex
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from core.errors import IdempotencyKeyReused
from core.idempotency import idempotent_replay, made_at_plus_window
from core.prepared import PreparedGet
from execution import notify, state
from execution.errors import ConcurrencyLimitExceeded
from execution.models import SLOT_STATUSES, TERMINAL_STATUSES, Exec, ExecStatus, ExecUsage
from execution.selectors import ExecMessage, exec_get, exec_messages_after, exec_output
from execution.start_now import exec_start_now
from execution.tasks import SENDERS
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
from workspaces.models import Workspace, WorkspaceStatus
from workspaces.selectors import workspace_require_own
from workspaces.suspend import workspace_ready, workspace_touch

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
        workspace_require_own(actor=actor, workspace=workspace)
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
    existing = _idempotent_replay(actor=actor, workspace=workspace, cmd=cmd, key=idempotency_key)
    if existing is not None:
        return existing
    new_exec = functools.partial(
        _new_exec,
        actor=actor,
        cmd=cmd,
        cwd=cwd,
        env=env,
        as_root=as_root,
        timeout_s=timeout_s,
        idempotency_key=idempotency_key,
    )
    if idempotency_key is None and workspace.status == WorkspaceStatus.RUNNING:
        # A paused workspace is resumed, any other refused: by the general path.
        started = new_exec(workspace=workspace, status=ExecStatus.STARTING)
        if _exec_start_at_once(started, workspace=workspace):
            return started
    with transaction.atomic():
        locked = state.lock_workspace(workspace.pk)
        workspace_ready(workspace=locked)
        status = _admission(locked, queue=queue)
        # Only an idempotency key can collide (its unique constraint): without one, no
        # savepoint (two fewer round trips).
        try:
            with transaction.atomic() if idempotency_key else contextlib.nullcontext():
                exec_ = new_exec(workspace=locked, status=status)
                exec_.save(force_insert=True)
        except IntegrityError:
            # The same key, concurrently, on another workspace's lock.
            exec_ = None
        if exec_ is not None and status == ExecStatus.STARTING:
            state.dispatch(exec_, senders=SENDERS)
    if exec_ is not None and exec_.status == ExecStatus.QUEUED:
        state.admit_after_queueing(exec_, senders=SENDERS)
    if exec_ is None:
        assert idempotency_key is not None
        replay = _idempotent_replay(actor=actor, workspace=workspace, cmd=cmd, key=idempotency_key)
        assert replay is not None
        return replay
    return exec_


def _admission(locked: Workspace, *, queue: bool) -> ExecStatus:
    """How a new exec of the locked workspace enters: starting if a slot is free and
    nobody waits, queued if the caller will wait in line; else ConcurrencyLimitExceeded."""
    limit = state.slot_limit(locked)
    active, waiting = _slots_taken(locked)
    if waiting and active < limit:
        # Execs queued while a slot was free (its runner ended a moment ago): they go first.
        state.admit_waiting(locked, senders=SENDERS)
        active, waiting = _slots_taken(locked)
    if active < limit and not waiting:
        return ExecStatus.STARTING
    if queue:
        return ExecStatus.QUEUED
    raise ConcurrencyLimitExceeded(
        f"Workspace '{locked.public_id}' already runs {active} of {limit} concurrent "
        "execs; wait for one to end, cancel one, or pass queue=true.",
        limit=limit,
        active=active,
    )


def _exec_start_at_once(exec_: Exec, *, workspace: Workspace) -> bool:
    """Start ``exec_`` (unsaved) in one round trip if it can start at once
    (``execution.start_now``); False if the general path must decide."""
    # Activity is noted first, as the general path's gate does (every few seconds).
    workspace_touch(workspace=workspace)
    if not exec_start_now(exec_, workspace=workspace):
        return False
    state.dispatch(exec_, senders=SENDERS)
    return True


def _new_exec(
    *,
    actor: Principal,
    workspace: Workspace,
    cmd: list[str],
    cwd: str,
    env: dict[str, str],
    as_root: bool,
    timeout_s: int | None,
    status: ExecStatus,
    idempotency_key: str | None,
) -> Exec:
    """The exec row to insert (unsaved), on the workspace's node; with the workspace's
    tenant and policy if they are loaded (its runner need not read them again)."""
    exec_ = Exec(
        tenant_id=workspace.tenant_id,
        workspace=workspace,
        cmd=cmd,
        cwd=cwd,
        env=env,
        as_root=as_root,
        timeout_s=timeout_s,
        status=status,
        node=workspace.node,
        idempotency_key=idempotency_key,
        created_by_id=actor.user_id,
        actor_id=actor.actor_id,
        dispatched_at=timezone.now() if status == ExecStatus.STARTING else None,
    )
    if Workspace.tenant.is_cached(workspace):
        Exec.tenant.field.set_cached_value(exec_, workspace.tenant)
    return exec_


def _slots_taken(workspace: Workspace) -> tuple[int, int]:
    """How many execs of the (locked) workspace hold a slot, and how many wait for one."""
    with connection.cursor() as cursor:
        cursor.execute(_SLOTS_SQL, [*_SLOTS_PARAMS, workspace.pk, *_SLOTS_PARAMS])
        active, waiting = cursor.fetchone()
    return int(active), int(waiting)


# Counted by every exec's start, under the workspace's lock: plain SQL (the ORM's
# aggregate took three times as long to build as to run). PostgreSQL and SQLite.
_SLOTS_PARAMS = [str(status) for status in (*SLOT_STATUSES, ExecStatus.QUEUED)]
_ACTIVE = ", ".join(["%s"] * len(SLOT_STATUSES))
_SLOTS_SQL = (
    f"SELECT count(*) FILTER (WHERE status IN ({_ACTIVE})), "  # noqa: S608
    "count(*) FILTER (WHERE status = %s) "
    f"FROM {Exec._meta.db_table} WHERE workspace_id = %s AND status IN ({_ACTIVE}, %s)"
)


def _idempotent_replay(
    *, actor: Principal, workspace: Workspace, cmd: list[str], key: str | None
) -> Exec | None:
    """The exec an unexpired key already started; the same key for another command (or
    workspace) is idempotency_key_reused."""
    if key is None:
        return None  # not even a queryset to build
    existing = idempotent_replay(
        Exec.objects.filter(tenant=actor.tenant), key=key, expires_at=made_at_plus_window
    )
    if existing is None:
        return None
    if existing.workspace_id != workspace.pk or existing.cmd != cmd:
        raise IdempotencyKeyReused(
            "This idempotency_key was already used for a different exec.",
            exec_id=existing.public_id,
        )
    return existing


def _refresh(exec_: Exec) -> Exec:
    """The row again, checked like :func:`_reconcile_one`."""
    exec_.refresh_from_db()
    _reconcile_one(exec_)
    return exec_


def _reconcile_one(exec_: Exec) -> None:
    """A running exec whose heartbeat is stale is marked lost on the spot, so a client
    looking at it learns at once (no need to wait for the periodic job)."""
    if exec_.status == ExecStatus.RUNNING and _stale(exec_.heartbeat_at):
        state.mark_lost(
            exec_, stale_after_s=float(settings.DEVBENCH_EXEC_STALE_AFTER_S), senders=SENDERS
        )
        exec_.refresh_from_db()


def _stale(heartbeat_at: datetime | None) -> bool:
    stale_after_s = float(settings.DEVBENCH_EXEC_STALE_AFTER_S)
    return heartbeat_at is not None and heartbeat_at < timezone.now() - timedelta(
        seconds=stale_after_s
    )


def _ended(exec_: Exec) -> bool:
    """Whether the exec has ended, from its status alone (a waiter reads the whole row
    once, at the end); a running one whose heartbeat is stale is reconciled first."""
    row = _STATUS.get(id=exec_.pk)
    if row is None:
        return True  # deleted: the final read says so
    if row.status == ExecStatus.RUNNING and _stale(row.heartbeat_at):
        return _refresh(exec_).is_terminal
    return row.status in TERMINAL_STATUSES


# Read by every wait for an exec's end, at least once a second: compiled once.
_STATUS = PreparedGet(Exec, "id", refine=lambda qs: qs.only("status", "heartbeat_at"))


def exec_poll(
    *, actor: Principal, exec_id: str, after_seq: int = 0, wait_s: float = 0
) -> ExecPollResult:
    """Output after ``after_seq`` (in seq order) and the state; with ``wait_s`` (at most 30),
    wait for new output or the end, returning as soon as either is there."""
    after_seq = validate_after_seq(after_seq)
    wait_s = validate_wait(wait_s)
    exec_ = exec_get(actor=actor, exec_id=exec_id, with_workspace=False)  # its answer has none
    found: list[ExecMessage] = []
    fresh = True  # just read: the first check needs no second read of the row

    def check() -> bool:
        nonlocal found, fresh
        # Status first: if it is terminal, every chunk is already stored.
        if fresh:
            fresh = False
            _reconcile_one(exec_)
        else:
            _refresh(exec_)
        # A terminal exec's last_seq is its last stored chunk (the end is written after
        # every chunk): a client that has read that far has nothing more to fetch.
        if exec_.is_terminal and after_seq >= exec_.last_seq:
            found = []
        else:
            found = exec_messages_after(exec_pk=exec_.pk, after_seq=after_seq)
        return bool(found) or exec_.is_terminal

    def news(message: dict[str, Any]) -> bool:
        return _announces_end(message) or int(message.get("last_seq") or 0) > after_seq

    notify.wait_until(exec_.public_id, check, timeout_s=wait_s, wake_on=news)
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


def _announces_end(message: dict[str, Any]) -> bool:
    return message.get("status") in TERMINAL_STATUSES


def exec_wait(*, exec_: Exec, timeout_s: float) -> Exec:
    """Block until the exec is terminal or ``timeout_s`` passes; returns it refreshed."""
    _wait_for_end(exec_, timeout_s=timeout_s, just_started=False)
    exec_.refresh_from_db()
    return exec_


def _wait_for_end(exec_: Exec, *, timeout_s: float, just_started: bool) -> dict[str, Any] | None:
    """Block until the exec is terminal or ``timeout_s`` passes; the message announcing
    the end, if that is how the wait learnt of it. ``just_started``: the caller has just
    created the exec (no need to look before waiting)."""
    announced: list[dict[str, Any]] = []

    def ends_on(message: dict[str, Any]) -> bool:
        # The end is announced once it is committed: no read of the row needed.
        if _announces_end(message):
            announced.append(message)
            return True
        return False

    notify.wait_until(
        exec_.public_id,
        lambda: _ended(exec_),
        timeout_s=timeout_s,
        # Only the end's message can end the wait: the others (output, progress) are not
        # worth a read of the row. The periodic check covers a message that is lost.
        wake_on=_never,
        ends_on=ends_on,
        check_first=not just_started,
    )
    return announced[-1] if announced else None


def _never(message: dict[str, Any]) -> bool:
    return False


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
            senders=SENDERS,
        ) and state.request_cancel(exec_):
            state.send_kill(exec_, senders=SENDERS)
    return exec_wait(exec_=exec_, timeout_s=CANCEL_WAIT_S)


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
    end = _wait_for_end(
        exec_, timeout_s=float(exec_.timeout_s or timeout_s) + RUN_GRACE_S, just_started=True
    )
    # The runner's end message carries what the answer needs; any other end is read.
    if end is None or not state.take_final_state(exec_, end):
        exec_.refresh_from_db()
    output = state.final_output(end) if end is not None else None
    stdout, stderr = output if output is not None else exec_output(exec_pk=exec_.pk)
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
