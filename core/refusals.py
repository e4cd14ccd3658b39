"""Every refused input is audited, on every interface, with escaped values.

A refusal by the validation layer happens before any service runs, so no
service's :func:`tenants.audit.audited` sees it; REST and MCP record it here
instead, as ``input.invalid`` with the interface, the operation and the
refused fields (their input escaped and cut, see
:func:`core.validation.safe_errors`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from core.validation import safe_errors

logger = logging.getLogger("devbench.audit")

ACTION = "input.invalid"


def audit_invalid_input(
    *, actor: Any, interface: str, operation: str, errors: Iterable[Mapping[str, Any]]
) -> None:
    from tenants.audit import audit_record
    from tenants.models import AuditEvent
    from tenants.principal import Principal

    try:
        audit_record(
            actor=actor if isinstance(actor, Principal) else None,
            action=ACTION,
            outcome=AuditEvent.Outcome.ERROR,
            error_code="validation_failed",
            details={
                "interface": interface,
                "operation": operation[:300],
                "errors": safe_errors(list(errors)[:20]),
            },
        )
    except Exception:
        # Values are escaped, so this is the database itself failing: the client still
        # gets its refusal (not a 500), and the log says what could not be recorded.
        logger.exception("could not audit a refused %s input to %s", interface, operation[:300])
