"""Structured logs: one JSON object per line, with the request id of what caused it.

Every record, ours and the libraries' (Django, Celery, daphne/uvicorn), goes
through structlog's ``ProcessorFormatter``: it gets a timestamp, level, logger
name, the current request id (:mod:`core.request_context`: set at the
edge of each HTTP, MCP and websocket request and in each Celery task caused by
one) and is scrubbed of secrets (bearer tokens, API tokens, JWTs, ``token=…``
in query strings, passwords) before it is written.

``LOG_FORMAT=plain`` gives readable lines for a terminal instead of JSON.
"""

from __future__ import annotations

from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

from core import request_context


def add_request_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    if "request_id" in event_dict:
        return event_dict
    request_id = request_context.current().request_id
    # Django logs a failed response (django.request) after the middleware has unbound the
    # context; the request itself still carries its id.
    request_id = request_id or getattr(event_dict.get("request"), "request_id", "")
    if request_id:
        event_dict["request_id"] = request_id
    return event_dict


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Scrub every value (the message with its arguments merged in, and the extras, objects
    such as a request turned into their text first)."""
    from tenants.redaction import redact

    for key, value in list(event_dict.items()):
        if key in ("timestamp", "level", "logger") or value is None:
            continue
        if not isinstance(value, str | dict | list | tuple | bool | int | float):
            value = str(value)
        event_dict[key] = redact(value)
    return event_dict


# Processors for records of the standard library (how all our code logs) and for
# structlog's own loggers alike.
_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.stdlib.ExtraAdder(),
    add_request_context,
]


def formatter(fmt: str = "json") -> dict[str, Any]:
    """A ``logging.config`` formatter entry for settings.LOGGING."""
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "plain"
        else structlog.processors.JSONRenderer(sort_keys=True, default=str)
    )
    return {
        "()": structlog.stdlib.ProcessorFormatter,
        "foreign_pre_chain": _SHARED,
        "processors": [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
    }


def configure_structlog() -> None:
    """Let ``structlog.get_logger()`` loggers go through the same formatter."""
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
