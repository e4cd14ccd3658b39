"""Input and output models of execs, shared by REST (ninja) and MCP tools.

Field names follow the MCP roadmap: ``exec_start(container_id, cmd, cwd, env,
as_root, timeout_s, idempotency_key) -> exec_id, status`` and
``exec_poll(exec_id, after_seq, wait_s) -> messages, complete, exit_code, usage``.
``container_id`` is a workspace id (``ws_…``) or alias.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from django.conf import settings
from ninja import Field, Schema
from pydantic import StringConstraints, field_validator

from core.validation import (
    LINE_PATTERN,
    MAX_SAFE_INT,
    TEXT_PATTERN,
    InputModel,
    Line,
    QueryModel,
    Text,
    only_declared_keys,
)
from execution.models import Exec, ExecUsage
from execution.shell import MAX_TTY_SIZE
from execution.validation import (
    MARKER_ENV,
    MAX_CMD_BYTES,
    MAX_ENV_BYTES,
    MAX_ENV_VARS,
    MAX_WAIT_S,
    redact_env,
)
from workspaces.schemas import WorkspaceRef

if TYPE_CHECKING:
    from execution.services import ExecPollResult

# An exec id (ex_…), in a path or an argument.
ExecRef = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=LINE_PATTERN)]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")]
AbsolutePath = Annotated[str, StringConstraints(max_length=4096, pattern=r"^/[^\u0000]*$")]
MAX_CMD_ARGS = 4096


def _env_schema(schema: dict[str, Any]) -> None:
    only_declared_keys(schema)
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "object":
            branch["not"] = {"required": [MARKER_ENV]}


ExecStatusName = Literal[
    "queued", "starting", "running", "completed", "failed", "timed_out", "cancelled", "lost"
]


def status_name(status: str) -> ExecStatusName:
    """A status as the schemas type it (ExecStatus values are exactly these names)."""
    return cast(ExecStatusName, str(status))


class ExecCommand(InputModel):
    cmd: list[Text] = Field(
        ...,
        min_length=1,
        max_length=MAX_CMD_ARGS,
        # The program may not be empty; the arguments may.
        json_schema_extra={
            "prefixItems": [{"type": "string", "minLength": 1, "pattern": TEXT_PATTERN}]
        },
        description="Program and arguments (no shell); the program (cmd[0]) is not empty, "
        f"and all of it is at most {MAX_CMD_BYTES} bytes.",
    )
    cwd: AbsolutePath | None = Field(
        None, description="Absolute working directory; default /workspace."
    )
    env: dict[EnvName, Text] | None = Field(
        None,
        max_length=MAX_ENV_VARS,
        json_schema_extra=_env_schema,
        description=f"Extra environment variables (at most {MAX_ENV_VARS}, "
        f"{MAX_ENV_BYTES} bytes in all; {MARKER_ENV} is set by DevBench).",
    )
    as_root: bool = Field(False, description="Run as root (uid 0) instead of uid 1000.")
    timeout_s: int | None = Field(
        None,
        ge=1,
        le=settings.DEVBENCH_EXEC_MAX_TIMEOUT_S,
        description="Kill the whole process tree after this many seconds.",
    )
    idempotency_key: Line | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Retrying with the same key returns the same exec.",
    )

    @field_validator("env")
    @classmethod
    def _no_marker(cls, env: dict[str, str] | None) -> dict[str, str] | None:
        if env and MARKER_ENV in env:
            raise ValueError(f"{MARKER_ENV} is set by DevBench")
        return env

    @field_validator("cmd")
    @classmethod
    def _program_not_empty(cls, cmd: list[str]) -> list[str]:
        # The schema says it with prefixItems; a model checks it here.
        if not cmd[0]:
            raise ValueError("cmd[0] (the program) must not be empty")
        return cmd

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

    container_id: WorkspaceRef = Field(..., description="Workspace id (ws_…) or alias.")


class ExecPollQuery(QueryModel):
    """REST query of GET /execs/{id}."""

    after_seq: int = Field(
        0, ge=0, le=MAX_SAFE_INT, description="Return output with a seq above this."
    )
    wait_s: float = Field(
        0, ge=0, le=MAX_WAIT_S, description="Wait up to this long for new output or the end."
    )


class ShellQuery(QueryModel):
    """Query of the shell websocket: the terminal's size."""

    rows: int = Field(24, ge=1, le=MAX_TTY_SIZE)
    cols: int = Field(80, ge=1, le=MAX_TTY_SIZE)


class ShellResizeIn(InputModel):
    """``{"type": "resize", "rows", "cols"}`` on the shell websocket."""

    type: Literal["resize"]
    rows: int = Field(ge=1, le=MAX_TTY_SIZE)
    cols: int = Field(ge=1, le=MAX_TTY_SIZE)


class ExecPollIn(ExecPollQuery):
    exec_id: ExecRef


class ExecCancelIn(InputModel):
    exec_id: ExecRef


class ExecListIn(InputModel):
    container_id: WorkspaceRef


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


class ExecListOut(Schema):
    """MCP list_execs: the newest execs of a workspace."""

    execs: list[ExecOut]
    truncated: bool = Field(description="The workspace has older execs than these.")


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
