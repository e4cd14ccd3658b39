"""Errors specific to execs (all DevBenchError subclasses with stable codes)."""

from __future__ import annotations

from core.errors import NotFound, QuotaExceeded, ValidationFailed


class ExecNotFound(NotFound):
    """Also what another tenant's exec answers (no existence leak)."""

    code = "exec_not_found"
    default_message = "Exec not found."


class ConcurrencyLimitExceeded(QuotaExceeded):
    code = "concurrency_limit_exceeded"
    default_message = "The workspace already runs as many execs as its policy allows."

    def __init__(self, message: str, *, limit: int, active: int) -> None:
        super().__init__(message, extra={"limit": limit, "active": active})


class InvalidCmd(ValidationFailed):
    code = "invalid_cmd"


class InvalidCwd(ValidationFailed):
    code = "invalid_cwd"


class InvalidEnv(ValidationFailed):
    code = "invalid_env"


class InvalidTimeout(ValidationFailed):
    code = "invalid_timeout"


class InvalidWait(ValidationFailed):
    code = "invalid_wait"


class InvalidSeq(ValidationFailed):
    code = "invalid_seq"


class InvalidTtySize(ValidationFailed):
    code = "invalid_tty_size"


class InvalidMessage(ValidationFailed):
    code = "invalid_message"
