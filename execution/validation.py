"""Checks on exec input, and redaction of secrets before anything is logged."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from execution.errors import (
    InvalidCmd,
    InvalidCwd,
    InvalidEnv,
    InvalidSeq,
    InvalidTimeout,
    InvalidWait,
)
from tenants.redaction import REDACTED, is_secret_name

# Set by the platform on every exec so its whole process tree can be found and
# killed; a caller may not set it.
MARKER_ENV = "DEVBENCH_EXEC_ID"

MAX_CMD_BYTES = 128 * 1024
MAX_ENV_BYTES = 128 * 1024
MAX_ENV_VARS = 256
MAX_WAIT_S = 30.0

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
# Beyond the audit's own list: names that often carry credentials in env variables.
_MORE_SECRET_NAMES = re.compile(r"(pass$|auth|signature|cert|dsn|conn)", re.IGNORECASE)


def looks_secret(name: str) -> bool:
    return is_secret_name(name) or bool(_MORE_SECRET_NAMES.search(name))


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """Names kept; values of secret-looking names replaced (for audit, logs and API output)."""
    return {name: (REDACTED if looks_secret(name) else value) for name, value in env.items()}


def validate_cmd(cmd: Any) -> list[str]:
    if not isinstance(cmd, list) or not cmd:
        raise InvalidCmd("cmd must be a non-empty list of strings.")
    if not all(isinstance(part, str) for part in cmd):
        raise InvalidCmd("Every item of cmd must be a string.")
    if not cmd[0]:
        raise InvalidCmd("cmd[0] (the program) must not be empty.")
    if any("\x00" in part for part in cmd):
        raise InvalidCmd("cmd must not contain NUL characters.")
    if sum(len(part.encode()) for part in cmd) > MAX_CMD_BYTES:
        raise InvalidCmd(f"cmd is longer than {MAX_CMD_BYTES} bytes; write a script file instead.")
    return list(cmd)


def validate_cwd(cwd: str | None) -> str:
    if cwd is None or cwd == "":
        return ""
    if not cwd.startswith("/") or "\x00" in cwd or len(cwd) > 4096:
        raise InvalidCwd(
            "cwd must be an absolute path inside the workspace container (e.g. /workspace)."
        )
    return cwd


def validate_env(env: Mapping[str, Any] | None) -> dict[str, str]:
    if not env:
        return {}
    if len(env) > MAX_ENV_VARS:
        raise InvalidEnv(f"At most {MAX_ENV_VARS} env variables.")
    total = 0
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise InvalidEnv(
                f"Env variable name {name!r} is not valid: use letters, digits and '_', "
                "not starting with a digit."
            )
        if name == MARKER_ENV:
            raise InvalidEnv(f"{MARKER_ENV} is set by DevBench.")
        if not isinstance(value, str) or "\x00" in value:
            raise InvalidEnv(f"Env variable {name} must be a string without NUL characters.")
        total += len(name) + len(value.encode())
    if total > MAX_ENV_BYTES:
        raise InvalidEnv(f"env is larger than {MAX_ENV_BYTES} bytes.")
    return dict(env)


def validate_timeout(timeout_s: int | None) -> int | None:
    if timeout_s is None:
        return None
    limit = settings.DEVBENCH_EXEC_MAX_TIMEOUT_S
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or not 1 <= timeout_s <= limit:
        raise InvalidTimeout(f"timeout_s must be a whole number of seconds from 1 to {limit}.")
    return timeout_s


def validate_wait(wait_s: float) -> float:
    if not 0 <= wait_s <= MAX_WAIT_S:
        raise InvalidWait(f"wait_s must be from 0 to {MAX_WAIT_S:g} seconds.")
    return float(wait_s)


def validate_after_seq(after_seq: int) -> int:
    if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
        raise InvalidSeq("after_seq must be 0 or a seq already received.")
    return after_seq
