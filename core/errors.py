"""The one error hierarchy of DevBench.

Services raise these; each interface (REST, MCP, websocket, web views) maps
them once. ``code`` is stable and documented: clients branch on it, never on
the message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar


class DevBenchError(Exception):
    default_code: ClassVar[str] = "error"
    default_status: ClassVar[int] = 500
    default_message: ClassVar[str] = "The request could not be completed."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        http_status: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.code = code or self.default_code
        self.http_status = http_status or self.default_status
        self.extra: dict[str, Any] = extra or {}
        super().__init__(self.message)

    def as_dict(self) -> dict[str, Any]:
        """The error body of every interface; with the id of the request being served
        (also in the ``X-Request-ID`` header), which an operator finds in the logs."""
        from core.request_context import current

        body: dict[str, Any] = {"code": self.code, "message": self.message, "extra": self.extra}
        request_id = current().request_id
        if request_id:
            body["request_id"] = request_id
        return body


class AuthenticationFailed(DevBenchError):
    default_code = "token_invalid"
    default_status = 401
    default_message = "Authentication credentials were missing or invalid."


class PermissionDenied(DevBenchError):
    default_code = "permission_denied"
    default_status = 403
    default_message = "You do not have permission to perform this action."


class PolicyDenied(DevBenchError):
    default_code = "policy_denied"
    default_status = 403
    default_message = "The tenant policy does not allow this."


class NotFound(DevBenchError):
    default_code = "not_found"
    default_status = 404
    default_message = "Not found."


class Conflict(DevBenchError):
    default_code = "conflict"
    default_status = 409
    default_message = "The request conflicts with the current state."


class PreconditionFailed(DevBenchError):
    default_code = "precondition_failed"
    default_status = 412
    default_message = "A precondition of the request was not met."


class ValidationFailed(DevBenchError):
    default_code = "validation_failed"
    default_status = 422
    default_message = "The request is not valid."


class QuotaExceeded(DevBenchError):
    default_code = "quota_exceeded"
    default_status = 429
    default_message = "A quota of the tenant policy is exhausted."


class EngineError(DevBenchError):
    """Root of everything the container engine reports."""

    default_code = "engine_error"
    default_status = 502
    default_message = "The container engine reported an error."


class EngineUnavailable(EngineError):
    default_code = "engine_unavailable"
    default_status = 503
    default_message = "The container engine cannot be reached."


class EngineTimeout(EngineError):
    default_code = "engine_timeout"
    default_status = 504
    default_message = "The container engine did not answer in time."


class ImageNotFound(EngineError):
    default_code = "image_not_found"
    default_status = 422
    default_message = "The image is not present on the engine."


class ContainerGone(EngineError):
    default_code = "container_gone"
    default_status = 410
    default_message = "The container no longer exists on the engine."


class InternalError(DevBenchError):
    """What every interface answers for an unexpected failure; the details go to the log."""

    default_code = "internal_error"
    default_status = 500
    default_message = "Internal error; quote the request id when reporting it."

    def __init__(self, *, request_id: str) -> None:
        super().__init__(extra={"request_id": request_id})


def invalid_input(errors: Iterable[Mapping[str, Any]], *, what: str) -> ValidationFailed:
    """``validation_failed`` naming the offending fields, from pydantic-style errors.

    ``what`` is the noun of the message: "request" (REST) or "arguments" (MCP).
    """
    details = [
        {"loc": list(e.get("loc", [])), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in errors
    ]
    fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in details)
    fallback = "body" if what == "request" else what
    return ValidationFailed(f"Invalid {what}: {fields or fallback}.", extra={"errors": details})
