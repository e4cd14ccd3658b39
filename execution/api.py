"""REST: run commands in workspaces and read their output (parse, call a service, format)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Status

from execution import selectors, services
from execution.schemas import (
    ExecOut,
    ExecPollOut,
    ExecPollQuery,
    ExecRef,
    ExecRunOut,
    ExecStartBody,
)
from execution.status import system_status_get
from tenants.principal import Principal
from tenants.schemas import SystemStatusOut
from workspaces.schemas import WorkspaceRef
from workspaces.selectors import workspace_get

router = Router(tags=["execution"])


def _principal(request: HttpRequest) -> Principal:
    principal = request.auth  # type: ignore[attr-defined]
    assert isinstance(principal, Principal)
    return principal


@router.get(
    "/system/status", response=SystemStatusOut, operation_id="system_status", tags=["identity"]
)
def system_status(request: HttpRequest) -> dict[str, object]:
    """Engine reachability and versions, the caller's scopes, the tenant's workspace and
    exec counts by status, and its policy: what a client checks before starting work."""
    return system_status_get(actor=_principal(request)).as_payload()


@router.post(
    "/workspaces/{workspace_id}/execs",
    response={200: ExecRunOut, 202: ExecOut},
    operation_id="exec_start",
)
def exec_start(
    request: HttpRequest, workspace_id: WorkspaceRef, payload: ExecStartBody
) -> Status[Any]:
    """Run a command in a running workspace.

    Answers 202 with the exec at once; poll ``GET /execs/{id}`` or stream
    ``/ws/execs/{id}/``. With ``wait: true`` it waits for the end and answers
    200 with stdout, stderr and exit_code (the exec_run tool).
    """
    actor = _principal(request)
    workspace = workspace_get(actor=actor, ref=workspace_id)
    args = payload.model_dump(exclude={"wait"})
    if payload.wait:
        return Status(200, services.exec_run(actor=actor, workspace=workspace, **args))
    exec_ = services.exec_start(actor=actor, workspace=workspace, **args)
    return Status(202, ExecOut.from_exec(exec_))


@router.get("/workspaces/{workspace_id}/execs", response=list[ExecOut], operation_id="exec_list")
def exec_list(request: HttpRequest, workspace_id: WorkspaceRef) -> list[ExecOut]:
    """The workspace's execs, newest first."""
    actor = _principal(request)
    workspace = workspace_get(actor=actor, ref=workspace_id)
    return [
        ExecOut.from_exec(e) for e in selectors.exec_list(actor=actor, workspace=workspace)[:200]
    ]


@router.get("/execs/{exec_id}", response=ExecPollOut, operation_id="exec_poll")
def exec_poll(
    request: HttpRequest, exec_id: ExecRef, params: Query[ExecPollQuery]
) -> services.ExecPollResult:
    """Output after ``after_seq`` plus the exec's state. With ``wait_s`` (at most 30) the
    answer waits for new output or the end, and comes as soon as either is there."""
    return services.exec_poll(
        actor=_principal(request),
        exec_id=exec_id,
        after_seq=params.after_seq,
        wait_s=params.wait_s,
    )


@router.get("/execs/{exec_id}/detail", response=ExecOut, operation_id="exec_get")
def exec_get(request: HttpRequest, exec_id: ExecRef) -> ExecOut:
    """The exec itself: command, status, timings, output accounting."""
    return ExecOut.from_exec(selectors.exec_get(actor=_principal(request), exec_id=exec_id))


@router.post("/execs/{exec_id}/cancel", response=ExecOut, operation_id="exec_cancel")
def exec_cancel(request: HttpRequest, exec_id: ExecRef) -> ExecOut:
    """Cancel: a queued exec never runs; a running one has its whole process tree killed."""
    return ExecOut.from_exec(services.exec_cancel(actor=_principal(request), exec_id=exec_id))
