"""Every refused input is audited, on every interface, with escaped values.

A refusal by the validation layer happens before any service runs, so no
service's audit sees it; REST and MCP report it here instead, and the
recorder the tenants app registers (:func:`register_recorder`, from its
``AppConfig.ready``; core imports no app) stores it as ``input.invalid`` with
the interface, the operation and the refused fields (their input escaped and
cut, see :func:`core.validation.safe_errors`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from core.validation import safe_errors

logger = logging.getLogger("devbench.audit")

ACTION = "input.invalid"

# (actor, details) -> None; the actor is whatever the transport authenticated (or None).
Recorder = Callable[[Any, dict[str, Any]], None]
_recorders: list[Recorder] = []


def register_recorder(recorder: Recorder) -> None:
    if recorder not in _recorders:
        _recorders.append(recorder)


def audit_invalid_input(
    *, actor: Any, interface: str, operation: str, errors: Iterable[Mapping[str, Any]]
) -> None:
    details = {
        "interface": interface,
        "operation": operation[:300],
        "errors": safe_errors(list(errors)[:20]),
    }
    for recorder in _recorders:
        try:
            recorder(actor, details)
        except Exception:
            # Values are escaped, so this is the database itself failing: the client still
            # gets its refusal (not a 500), and the log says what could not be recorded.
            logger.exception("could not audit a refused %s input to %s", interface, operation[:300])
