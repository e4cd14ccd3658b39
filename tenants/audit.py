"""Audit trail: one AuditEvent per mutating action or denied request.

Services wrap each action in :func:`audited`; it records success, denial
(PermissionDenied/PolicyDenied/AuthenticationFailed/NotFound for the actor)
or error with the stable error code, on every interface alike.

Details are redacted (:mod:`tenants.redaction`) before they are stored, and
each event is also written as one JSON object per line to the
``devbench.audit`` logger, for log shipping. Rows older than
``AUDIT_RETENTION_DAYS`` are purged by a periodic task.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core import request_context
from core.errors import (
    AuthenticationFailed,
    DevBenchError,
    PermissionDenied,
    PolicyDenied,
    QuotaExceeded,
)
from core.validation import escape_unstorable
from tenants.models import AuditEvent
from tenants.redaction import redact

if TYPE_CHECKING:
    from tenants.models import Tenant
    from tenants.principal import Principal

logger = logging.getLogger("devbench.audit")

_DENIALS = (PermissionDenied, PolicyDenied, AuthenticationFailed, QuotaExceeded)


@dataclass
class AuditScope:
    """Filled in by the action while it runs (e.g. the id of what it created)."""

    target_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def audit_record(
    *,
    actor: Principal | None,
    action: str,
    outcome: str,
    tenant: Tenant | None = None,
    target_type: str = "",
    target_id: str = "",
    error_code: str = "",
    details: dict[str, Any] | None = None,
    actor_kind: str | None = None,
    actor_id: str | None = None,
) -> AuditEvent:
    """Store one event (details redacted) and log it as a JSON line.

    ``actor_kind``/``actor_id`` describe who acted when there is no principal
    (a refused token, a membership rule); they default to the actor's.
    """
    ctx = request_context.current()
    event = AuditEvent.objects.create(
        tenant=tenant if tenant is not None else (actor.tenant if actor else None),
        actor_kind=_safe(actor_kind or (actor.kind if actor else "anonymous"), 20),
        actor_id=_safe(
            actor_id if actor_id is not None else (actor.actor_id if actor else ""), 200
        ),
        action=_safe(action, 100),
        target_type=_safe(target_type, 50),
        target_id=_safe(target_id, 100),
        outcome=outcome,
        error_code=_safe(error_code, 50),
        ip=ctx.ip,
        user_agent=_safe(ctx.user_agent, 300),
        request_id=_safe(ctx.request_id, 64),
        details=escape_unstorable(redact(details or {})),
    )
    logger.info(audit_event_json(event))
    return event


def _safe(value: object, max_length: int) -> str:
    """A column value any database stores: escaped (a refused NUL is still recorded), cut."""
    return str(escape_unstorable(str(value)))[:max_length]


def audit_event_json(event: AuditEvent) -> str:
    """One line of JSON per event: stable keys, ISO time, already-redacted details."""
    return json.dumps(
        {
            "type": "audit",
            "id": event.pk,
            "time": event.created_at.isoformat(),
            "tenant": event.tenant.slug if event.tenant_id and event.tenant else None,
            "actor_kind": event.actor_kind,
            "actor_id": event.actor_id,
            "action": event.action,
            "target_type": event.target_type,
            "target_id": event.target_id,
            "outcome": event.outcome,
            "error_code": event.error_code,
            "ip": event.ip,
            "user_agent": event.user_agent,
            "request_id": event.request_id,
            "details": event.details,
        },
        default=str,
        sort_keys=True,
    )


@contextmanager
def audited(
    *,
    actor: Principal,
    action: str,
    target_type: str = "",
    target_id: str = "",
    details: dict[str, Any] | None = None,
) -> Iterator[AuditScope]:
    """Record the outcome of the wrapped action; exceptions propagate unchanged."""
    scope = AuditScope(target_id=target_id, details=dict(details or {}))
    try:
        yield scope
    except DevBenchError as exc:
        outcome = (
            AuditEvent.Outcome.DENIED if isinstance(exc, _DENIALS) else AuditEvent.Outcome.ERROR
        )
        audit_record(
            actor=actor,
            action=action,
            outcome=outcome,
            target_type=target_type,
            target_id=scope.target_id,
            error_code=exc.code,
            details=scope.details,
        )
        raise
    except Exception:
        audit_record(
            actor=actor,
            action=action,
            outcome=AuditEvent.Outcome.ERROR,
            target_type=target_type,
            target_id=scope.target_id,
            error_code="internal_error",
            details=scope.details,
        )
        raise
    audit_record(
        actor=actor,
        action=action,
        outcome=AuditEvent.Outcome.SUCCESS,
        target_type=target_type,
        target_id=scope.target_id,
        details=scope.details,
    )


def audit_refused_input(actor: object, details: dict[str, Any]) -> None:
    """Records a refusal of the validation layer (registered with :mod:`core.refusals`)."""
    from tenants.principal import Principal

    audit_record(
        actor=actor if isinstance(actor, Principal) else None,
        action="input.invalid",
        outcome=AuditEvent.Outcome.ERROR,
        error_code="validation_failed",
        details=details,
    )
