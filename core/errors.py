"""The one error hierarchy of DevBench.

Services raise these; each interface (REST, MCP, websocket, web views) maps
them once to ``{"code", "message", "extra"}``. ``code`` is stable and
documented: clients branch on it, never on the message.

Two kinds of classes:

* **Families** (``NotFound``, ``Conflict``, ``ValidationFailed`` ...) carry the
  HTTP status and are what callers catch. They have no code and cannot be
  raised themselves.
* **Errors**: one subclass per stable code (``WorkspaceNotFound``,
  ``TenantNotFound`` ...), with a default message and, where the body carries
  more, typed keyword fields that become ``extra``. An app's errors live in its
  ``errors.py``; the ones here are shared by several apps or by the kernel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import pydantic

from core.validation import client_errors, refusal_code

M = TypeVar("M", bound=pydantic.BaseModel)


class DevBenchError(Exception):
    code: str  # set by every raisable error, never by a family
    http_status: int = 500
    default_message: str = "The request could not be completed."

    def __init__(self, message: str | None = None, *, extra: Mapping[str, Any] | None = None):
        if not getattr(self, "code", ""):
            raise TypeError(f"{type(self).__name__} is a family of errors: raise a subclass.")
        self.message = message or self.default_message
        self.extra: dict[str, Any] = dict(extra or {})
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


def present(**fields: Any) -> dict[str, Any]:
    """The fields that have a value: optional extras are left out, not sent as null."""
    return {name: value for name, value in fields.items() if value is not None}


# --- Families ----------------------------------------------------------------------


class AuthenticationFailed(DevBenchError):
    http_status = 401
    default_message = "Authentication credentials were missing or invalid."


class PermissionDenied(DevBenchError):
    http_status = 403
    default_message = "You do not have permission to perform this action."


class PolicyDenied(DevBenchError):
    http_status = 403
    default_message = "The tenant policy does not allow this."


class NotFound(DevBenchError):
    http_status = 404
    default_message = "Not found."


class Conflict(DevBenchError):
    http_status = 409
    default_message = "The request conflicts with the current state."


class PreconditionFailed(DevBenchError):
    http_status = 412
    default_message = "A precondition of the request was not met."


class ValidationFailed(DevBenchError):
    http_status = 422
    default_message = "The request is not valid."


class QuotaExceeded(DevBenchError):
    http_status = 429
    default_message = "A quota of the tenant policy is exhausted."


class EngineError(DevBenchError):
    """Root of everything the container engine reports."""

    http_status = 502
    default_message = "The container engine reported an error."


# --- Requests and transports ---------------------------------------------------------


class TokenMissing(AuthenticationFailed):
    code = "token_missing"
    default_message = "Authentication required."


class InvalidInput(ValidationFailed):
    """A request body or tool arguments that do not fit the schema, naming the fields.

    The code is the fields' own stable code when they share one (``invalid_alias``,
    ``invalid_cmd`` ..., the code of the field's error class in its app, see
    :data:`core.validation.FIELD_CODES`), else ``validation_failed``: a client
    branches on the same code whether the schema or the service refused the value.
    The refused input itself is never echoed (see :mod:`core.validation`).
    """

    code = "validation_failed"

    def __init__(self, errors: Iterable[Mapping[str, Any]], *, what: str) -> None:
        """``what`` is the noun of the message: "request" (REST, whose locs start with
        body/query/path/header) or "arguments" (MCP, websockets)."""
        errors = list(errors)
        details = client_errors(errors)
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in details)
        fallback = "body" if what == "request" else what
        super().__init__(f"Invalid {what}: {fields or fallback}.", extra={"errors": details})
        self.code = refusal_code(errors, skip=1 if what == "request" else 0)


class InvalidJson(DevBenchError):
    code = "invalid_json"
    http_status = 400
    default_message = "The request body is not valid JSON (RFC 8259: finite numbers, UTF-8)."


class PayloadTooLarge(DevBenchError):
    code = "payload_too_large"
    http_status = 413
    default_message = "The request body is too large."

    def __init__(self, *, max_bytes: int) -> None:
        super().__init__(
            f"The JSON body is larger than {max_bytes} bytes; send files as "
            "application/octet-stream or an archive.",
            extra={"max_bytes": max_bytes},
        )


class RouteNotFound(NotFound):
    """A path under the API prefix that no operation serves."""

    code = "route_not_found"
    default_message = "No API operation at this path."


class ResourceNotFound(NotFound):
    """A path or object the caller cannot name more precisely (no tenant to look in)."""

    code = "not_found"


class MethodNotAllowed(DevBenchError):
    code = "method_not_allowed"
    http_status = 405
    default_message = "This path does not support the method."


class HostNotAllowed(DevBenchError):
    code = "host_not_allowed"
    http_status = 400
    default_message = "The Host header is not allowed."


class OriginNotAllowed(PermissionDenied):
    code = "origin_not_allowed"
    default_message = "Requests from this Origin are not allowed."


class HttpStatusError(DevBenchError):
    """An HTTP error raised by the REST framework itself (e.g. 405), with its status."""

    code = "http_error"

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.http_status = status


class InternalError(DevBenchError):
    """What every interface answers for an unexpected failure; the details go to the log."""

    code = "internal_error"
    http_status = 500
    default_message = "Internal error; quote the request id when reporting it."

    def __init__(self, *, request_id: str) -> None:
        super().__init__(extra={"request_id": request_id})


class IdempotencyKeyReused(Conflict):
    """The key already named a different request (spawn or exec): the earlier object's id."""

    code = "idempotency_key_reused"

    def __init__(
        self, message: str, *, workspace_id: str | None = None, exec_id: str | None = None
    ) -> None:
        super().__init__(message, extra=present(workspace_id=workspace_id, exec_id=exec_id))


class InvalidIdempotencyKey(ValidationFailed):
    code = "invalid_idempotency_key"


class InvalidCursor(ValidationFailed):
    """A list's ``cursor`` that this list did not hand out (``core.pagination``)."""

    code = "invalid_cursor"
    default_message = "The cursor is not one this list handed out; start again without a cursor."


class InvalidLimit(ValidationFailed):
    """A list's ``limit`` out of range, given to a service directly (the interfaces'
    schemas refuse it before)."""

    code = "invalid_limit"


# --- The container engine ----------------------------------------------------------


class EngineRefused(EngineError):
    code = "engine_error"

    def __init__(self, message: str, *, engine_status: int, container_id: str | None) -> None:
        super().__init__(
            message, extra={"engine_status": engine_status, "container_id": container_id}
        )


class EngineConflict(EngineRefused):
    """The engine answered 409 (e.g. a name or a state clash)."""

    code = "engine_conflict"
    http_status = 409


class EngineUnavailable(EngineError):
    code = "engine_unavailable"
    http_status = 503
    default_message = "The container engine cannot be reached."


class EngineTimeout(EngineError):
    code = "engine_timeout"
    http_status = 504
    default_message = "The container engine did not answer in time."


class ImageNotFound(EngineError):
    code = "image_not_found"
    http_status = 422
    default_message = "The image is not present on the engine."

    def __init__(self, message: str | None = None, *, image: str | None) -> None:
        super().__init__(message, extra={"image": image})


class ContainerGone(EngineError):
    code = "container_gone"
    http_status = 410
    default_message = "The container no longer exists on the engine."

    def __init__(self, message: str | None = None, *, container_id: str | None) -> None:
        super().__init__(message, extra={"container_id": container_id})


class ExecStreamBroken(EngineError):
    code = "exec_stream_broken"
    default_message = "The exec stream broke."


class StoredError(EngineError):
    """A stored error code that no class claims (a row written by an older version)."""

    code = "workspace_error"


def error_rebuilt(
    *,
    code: str,
    message: str,
    extra: Mapping[str, Any],
    family: type[DevBenchError] = DevBenchError,
) -> DevBenchError:
    """An error stored by its code (e.g. on a workspace row), rebuilt as an instance of the
    class that has that code, so callers catch it by its family as when it was raised.

    Codes are shared across families (``not_found`` is a missing workspace, a missing
    path in a form and a missing path in the engine): a class of ``family`` is taken
    first, where the error is known to come from one (the engine's, from a node agent).
    """
    cls = _class_of(code, family) or _class_of(code, DevBenchError) or StoredError
    exc = DevBenchError.__new__(cls)
    DevBenchError.__init__(exc, message, extra=extra)  # not cls.__init__: its fields are gone
    exc.code = code
    return exc


def _class_of(code: str, family: type[DevBenchError]) -> type[DevBenchError] | None:
    """The class nearest ``family`` (breadth first) whose code is ``code``."""
    pending: list[type[DevBenchError]] = [family]
    while pending:
        candidate = pending.pop(0)
        if getattr(candidate, "code", None) == code:
            return candidate
        pending.extend(candidate.__subclasses__())
    return None


# --- Rate limits -------------------------------------------------------------------


class RateLimited(DevBenchError):
    """Too many requests for a credential or a tenant; ``retry_after_s`` (also in
    ``extra`` and, on HTTP, the ``Retry-After`` header) says when to try again."""

    code = "rate_limited"
    http_status = 429
    default_message = "Too many requests; retry later."

    def __init__(self, *, scope: str, limit: str, retry_after_s: int) -> None:
        super().__init__(
            f"Too many requests for this {scope}; retry in {retry_after_s} s.",
            extra={"scope": scope, "limit": limit, "retry_after_s": retry_after_s},
        )
        self.retry_after_s = retry_after_s


class MetricsForbidden(PermissionDenied):
    code = "metrics_forbidden"
    default_message = "Metrics are for allowed networks or the metrics token."


def parse_input(
    model: type[M], data: Any, *, what: str = "arguments", strict: bool | None = None
) -> M:
    """``data`` read through an input model, or its refusal (for websockets and forms).

    Forms send text, so they pass ``strict=False``; JSON messages keep the model's
    strictness.
    """
    try:
        return model.model_validate(data, strict=strict)
    except pydantic.ValidationError as exc:
        raise InvalidInput(exc.errors(include_url=False), what=what) from exc
