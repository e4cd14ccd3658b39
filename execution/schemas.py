"""Input and output models of execs, shared by REST (ninja) and MCP tools.

Field names follow the MCP roadmap: ``exec_start(container_id, cmd, cwd, env,
as_root, timeout_s, idempotency_key) -> exec_id, status`` and
``exec_poll(exec_id, after_seq, wait_s) -> messages, complete, exit_code, usage``.
``container_id`` is a workspace id (``ws_…``) or alias.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal, cast

from ninja import Field, Schema

from core.pagination import PageOut, PageQuery
from execution.models import Exec, ExecUsage
from execution.validation import MAX_WAIT_S, redact_env

if TYPE_CHECKING:
    from execution.services import ExecPollResult

ExecStatusName = Literal[
    "queued", "starting", "running", "completed", "failed", "timed_out", "cancelled", "lost"
]


def status_name(status: str) -> ExecStatusName:
    """A status as the schemas type it (ExecStatus values are exactly these names)."""
    return cast(ExecStatusName, str(status))


class ExecCommand(Schema):
    cmd: list[str] = Field(..., min_length=1, description="Program and arguments (no shell).")
    cwd: str | None = Field(None, description="Absolute working directory; default /workspace.")
    env: dict[str, str] | None = Field(None, description="Extra environment variables.")
    as_root: bool = Field(False, description="Run as root (uid 0) instead of uid 1000.")
    timeout_s: int | None = Field(
        None, ge=1, description="Kill the whole process tree after this many seconds."
    )
    idempotency_key: str | None = Field(
        None, max_length=200, description="Retrying with the same key returns the same exec."
    )
    queue: bool = Field(
        False,
        description="When the workspace runs its maximum of concurrent execs, wait in line "
        "instead of failing with concurrency_limit_exceeded.",
    )


class ExecStartBody(ExecCommand):
    """REST body of POST /workspaces/{id}/execs."""

    wait: bool = Field(
        False,
        description="Wait for the end and return stdout/stderr/exit_code (exec_run); "
        "otherwise return at once with the exec id (202).",
    )


class ExecStartIn(ExecCommand):
    """MCP exec_start / exec_run arguments."""

    container_id: str = Field(..., description="Workspace id (ws_…) or alias.")


class ExecPollIn(Schema):
    exec_id: str
    after_seq: int = Field(0, ge=0, description="Return output with a seq above this.")
    wait_s: float = Field(
        0, ge=0, le=MAX_WAIT_S, description="Wait up to this long for new output or the end."
    )


class ExecCancelIn(Schema):
    exec_id: str


class ExecListQuery(PageQuery):
    """REST query of exec_list: the page (the workspace is in the URL)."""


class ExecListIn(ExecListQuery):
    """MCP list_execs arguments: the workspace plus the page."""

    container_id: str = Field(..., description="Workspace id (ws_…) or alias.")


class ExecStartOut(Schema):
    exec_id: str
    status: ExecStatusName

    @classmethod
    def from_exec(cls, exec_: Exec) -> ExecStartOut:
        return cls(exec_id=exec_.public_id, status=status_name(exec_.status))


class ExecMessageOut(Schema):
    seq: int
    stream: Literal["stdout", "stderr"]
    data: str
    encoding: Literal["utf-8", "base64"] = Field(
        description="utf-8: data is the text; base64: the chunk is not valid UTF-8 "
        "(binary output), decode data to get the bytes."
    )


class ExecUsageOut(Schema):
    duration_ms: int | None
    stdout_bytes: int
    stderr_bytes: int

    @classmethod
    def from_usage(cls, usage: ExecUsage) -> ExecUsageOut:
        return cls(
            duration_ms=usage.duration_ms,
            stdout_bytes=usage.stdout_bytes,
            stderr_bytes=usage.stderr_bytes,
        )


class ExecPollOut(Schema):
    exec_id: str
    status: ExecStatusName
    complete: bool = Field(description="The exec has ended and every stored chunk was returned.")
    exit_code: int | None
    messages: list[ExecMessageOut]
    next_seq: int = Field(description="Pass as after_seq in the next poll.")
    truncated: bool = Field(description="The output cap dropped the oldest output.")
    first_seq: int = Field(description="Oldest seq still stored.")
    usage: ExecUsageOut
    error_code: str
    error: str


class ExecRunOut(Schema):
    exec_id: str
    status: ExecStatusName
    exit_code: int | None
    stdout: str
    stderr: str
    truncated: bool
    usage: ExecUsageOut
    error_code: str
    error: str


class ExecOut(Schema):
    exec_id: str
    workspace_id: str
    status: ExecStatusName
    cmd: list[str]
    cwd: str
    env: dict[str, str] = Field(description="Values of secret-looking names are redacted.")
    as_root: bool
    timeout_s: int | None
    exit_code: int | None
    error_code: str
    error: str
    truncated: bool
    last_seq: int
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    usage: ExecUsageOut

    @classmethod
    def from_exec(cls, exec_: Exec) -> ExecOut:
        """The one exec payload (REST, MCP and, with page extras, the web UI)."""
        return cls(
            exec_id=exec_.public_id,
            workspace_id=exec_.workspace.public_id,
            status=status_name(exec_.status),
            cmd=exec_.cmd,
            cwd=exec_.cwd,
            env=redact_env(exec_.env or {}),
            as_root=exec_.as_root,
            timeout_s=exec_.timeout_s,
            exit_code=exec_.exit_code,
            error_code=exec_.error_code,
            error=exec_.error,
            truncated=exec_.truncated,
            last_seq=exec_.last_seq,
            cancel_requested=exec_.cancel_requested_at is not None,
            created_at=exec_.created_at,
            started_at=exec_.started_at,
            finished_at=exec_.finished_at,
            usage=ExecUsageOut.from_usage(exec_.usage),
        )


class ExecListOut(PageOut[ExecOut]):
    """A page of a workspace's execs, newest first (REST exec_list, MCP list_execs)."""


class ExecPageOut(ExecOut):
    """The exec as the web UI's scripts get it: the payload plus what the page shows."""

    command: str = Field(description="What the user typed, or the argv joined.")
    stream_path: str = Field(description="The websocket path of its live output.")

    @classmethod
    def from_exec_page(cls, exec_: Exec, *, command: str) -> ExecPageOut:
        return cls(
            **ExecOut.from_exec(exec_).model_dump(),
            command=command,
            stream_path=f"/ws/execs/{exec_.public_id}/",
        )


class ExecEndOut(Schema):
    """How an exec ended: the websocket's last ("complete") message."""

    exec_id: str
    status: ExecStatusName
    exit_code: int | None
    last_seq: int
    truncated: bool
    first_seq: int
    usage: ExecUsageOut
    error_code: str
    error: str

    @classmethod
    def from_poll(cls, result: ExecPollResult) -> ExecEndOut:
        return cls(
            exec_id=result.exec_id,
            status=status_name(result.status),
            exit_code=result.exit_code,
            last_seq=result.next_seq,
            truncated=result.truncated,
            first_seq=result.first_seq,
            usage=ExecUsageOut.from_usage(result.usage),
            error_code=result.error_code,
            error=result.error,
        )
