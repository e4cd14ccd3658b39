"""How apps declare MCP tools, and the one place MCP maps errors.

Each app's ``mcp.py`` makes a :class:`ToolSet` and declares its tools with
``@tools.tool(...)``: the shared pydantic input model (the one REST uses), an
output model, a title, its behaviour hints (a preset: READ, ADD, RUN...) and an agent-oriented
docstring (what the tool does, when to use it, its limits). A handler gets a
:class:`ToolCall` (who acts, request facts, progress) and the validated
arguments, calls ONE service or selector and returns what the output model
describes. Sync handlers run on the request's thread (the ORM and the engine
client block; see ``core.mcp.lane``); async handlers (long waits with
progress) hop to it with :meth:`ToolCall.run`.

Errors are mapped here, once: a ``DevBenchError`` becomes a tool result with
``isError: true`` whose text content is the REST body
``{"code", "message", "extra"}`` as JSON, and which carries no structured
content (clients such as the TypeScript SDK check structured content against
the tool's output schema, which describes success); invalid arguments become
``validation_failed`` naming the fields; anything else is logged with the
request id and answered with a generic ``internal_error``.

Identity comes from the transport, never from SDK context variables: the HTTP
endpoint authenticates and puts the principal into the ASGI scope; stdio
passes an ``authenticate`` callable through the server lifespan.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Generic, TypeVar, Union, get_args, get_origin

import anyio
from django.core.exceptions import ImproperlyConfigured
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, ConfigDict, ValidationError

from core import request_context
from core.errors import (
    DevBenchError,
    InternalError,
    InvalidInput,
    TokenMissing,
    ValidationFailed,
)
from core.mcp.lane import BlockingLane
from core.refusals import audit_invalid_input
from core.request_context import RequestContext
from core.validation import json_loads_strict

logger = logging.getLogger("devbench.mcp")

# Keys the HTTP endpoint sets in the ASGI scope, and stdio in the lifespan state.
PRINCIPAL_KEY = "devbench.principal"
LANE_KEY = "devbench.lane"
AUTHENTICATE_KEY = "devbench.authenticate"

# Waiting tools (exec_run, exec_poll) tell the client they are alive this often.
PROGRESS_INTERVAL_S = 1.0

TOOL_CALLS = Counter(
    "devbench_mcp_tool_calls_total", "MCP tool calls by tool and outcome code.", ["tool", "outcome"]
)
TOOL_SECONDS = Histogram(
    "devbench_mcp_tool_call_seconds", "MCP tool call duration (seconds).", ["tool"]
)

T = TypeVar("T")
# Who acts: the transport's authentication decides (the tenants app's Principal).
P = TypeVar("P")


# --- Declaring tools -------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall(Generic[P]):
    """What a handler knows about the call besides its arguments."""

    principal: P
    lane: BlockingLane
    context: Context[Any, Any]

    @property
    def request(self) -> RequestContext:
        return self.lane.request

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Call a blocking service from an async handler."""
        return await self.lane.run(fn, *args, **kwargs)

    async def progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        """A progress notification; a no-op when the client sent no progress token."""
        await self.context.report_progress(progress, total, message)

    async def run_reporting(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        total_s: float | None,
        label: str,
        interval_s: float = PROGRESS_INTERVAL_S,
        **kwargs: Any,
    ) -> T:
        """Call a blocking service that waits, sending progress (seconds waited) meanwhile.

        When the client cancels the call, this returns at once: the waiting ends
        for the client, while what the service waits for (an exec) carries on.
        """
        started = time.monotonic()

        async def heartbeat() -> None:
            while True:
                await anyio.sleep(interval_s)
                waited = round(time.monotonic() - started, 1)
                await self.progress(waited, total_s, f"{label} ({waited:g} s)")

        failure: Exception | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(heartbeat)
            try:
                result = await self.run(fn, *args, **kwargs)
            except Exception as exc:
                # Raised outside the group, or anyio would wrap it in an ExceptionGroup
                # and the one error mapping would no longer recognise it.
                failure = exc
            finally:
                group.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return result


Handler = Callable[[ToolCall[Any], Any], Any]


@dataclass(frozen=True)
class Hints:
    """The four MCP behaviour hints of a tool; tools use the presets below."""

    read_only: bool
    destructive: bool
    idempotent: bool
    open_world: bool


# Reads only; calling again changes nothing.
READ = Hints(read_only=True, destructive=False, idempotent=True, open_world=False)
# Creates something new on every call (a workspace, an attachment, a directory).
ADD = Hints(read_only=False, destructive=False, idempotent=False, open_world=False)
# Changes state, and calling again with the same arguments changes nothing more.
REPEATABLE_CHANGE = Hints(read_only=False, destructive=False, idempotent=True, open_world=False)
# Replaces or removes something; calling again changes nothing more.
REPEATABLE_DESTROY = Hints(read_only=False, destructive=True, idempotent=True, open_world=False)
# Removes or moves something; calling again is not the same (the source is gone).
DESTROY = Hints(read_only=False, destructive=True, idempotent=False, open_world=False)
# Runs a caller's command: it may do anything, including reach the network.
RUN = Hints(read_only=False, destructive=True, idempotent=False, open_world=True)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    title: str
    description: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    annotations: ToolAnnotations
    handler: Handler

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)


def closed_model(model: type[BaseModel]) -> type[BaseModel]:
    """``model`` refusing arguments it does not declare (``extra_forbidden``).

    Tools share their models with REST queries, where unknown parameters are ignored
    as HTTP does; a tool's arguments are one JSON object, so a misspelt one is refused
    (and the input schema says ``additionalProperties: false``).
    """
    if model.model_config.get("extra") == "forbid":
        return model
    config = ConfigDict(**{**model.model_config, "extra": "forbid"})
    return type(model.__name__, (model,), {"model_config": config, "__module__": model.__module__})


class ToolSet:
    """The tools of one app; ``core.mcp.server`` collects every app's set."""

    def __init__(self) -> None:
        self.specs: list[ToolSpec] = []

    def tool(
        self,
        *,
        input: type[BaseModel],
        output: type[BaseModel],
        title: str,
        hints: Hints,
        name: str | None = None,
    ) -> Callable[[Callable[[ToolCall[Any], Any], T]], Callable[[ToolCall[Any], Any], T]]:
        """Declare a tool; the handler's docstring is the description agents read."""

        def decorator(fn: Callable[[ToolCall[Any], Any], T]) -> Callable[[ToolCall[Any], Any], T]:
            description = inspect.cleandoc(fn.__doc__ or "")
            tool_name = name or fn.__name__
            if not description:
                raise ImproperlyConfigured(f"MCP tool {tool_name} needs a docstring.")
            self.specs.append(
                ToolSpec(
                    name=tool_name,
                    title=title,
                    description=description,
                    input_model=closed_model(input),
                    output_model=output,
                    annotations=ToolAnnotations(
                        title=title,
                        read_only_hint=hints.read_only,
                        destructive_hint=hints.destructive,
                        idempotent_hint=hints.idempotent,
                        open_world_hint=hints.open_world,
                    ),
                    handler=fn,
                )
            )
            return fn

        return decorator


class _DevBenchTool(Tool):
    """A tool whose schema is a shared model and whose run() maps errors itself."""

    async def run(
        self, arguments: dict[str, Any], context: Context[Any, Any], convert_result: bool = False
    ) -> Any:
        return await self.fn(arguments, context)


def object_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True)
    schema.setdefault("type", "object")
    return schema


def build_tool(spec: ToolSpec) -> Tool:
    async def invoke(arguments: dict[str, Any], context: Context[Any, Any]) -> CallToolResult:
        return await _invoke(spec, arguments, context)

    return _DevBenchTool(
        fn=invoke,
        name=spec.name,
        title=spec.title,
        description=spec.description,
        parameters=object_schema(spec.input_model),
        fn_metadata=FuncMetadata(
            arg_model=ArgModelBase, output_schema=object_schema(spec.output_model)
        ),
        is_async=True,
        context_kwarg=None,
        annotations=spec.annotations,
    )


# --- Calling tools ---------------------------------------------------------------


async def _invoke(
    spec: ToolSpec, arguments: Mapping[str, Any], context: Context[Any, Any]
) -> CallToolResult:
    started = time.perf_counter()
    lane, own_lane = _lane(context)
    request = lane.request
    outcome = "ok"
    try:
        principal = await _principal(context, lane)
        try:
            args = validate_arguments(spec.input_model, arguments)
        except ValidationFailed as exc:
            refused = exc.__cause__
            errors = refused.errors() if isinstance(refused, ValidationError) else []
            await lane.run(
                audit_invalid_input,
                actor=principal,
                interface="mcp",
                operation=spec.name,
                errors=errors,
            )
            raise
        call = ToolCall(principal=principal, lane=lane, context=context)
        if spec.is_async:
            result = await spec.handler(call, args)
            structured = await lane.run(_dump, spec.output_model, result)
        else:
            structured = await lane.run(_call_and_dump, spec, call, args)
        return CallToolResult(
            content=[TextContent(type="text", text=json.dumps(structured))],
            structured_content=structured,
        )
    except DevBenchError as exc:
        outcome = exc.code
        return error_result(exc)
    except Exception:
        outcome = "internal_error"
        logger.exception("MCP tool %s failed (request %s)", spec.name, request.request_id)
        return error_result(InternalError(request_id=request.request_id))
    finally:
        if own_lane:
            lane.close()
        TOOL_CALLS.labels(spec.name, outcome).inc()
        TOOL_SECONDS.labels(spec.name).observe(time.perf_counter() - started)


def _call_and_dump(spec: ToolSpec, call: ToolCall[Any], args: BaseModel) -> dict[str, Any]:
    return _dump(spec.output_model, spec.handler(call, args))


def _dump(model: type[BaseModel], result: Any) -> dict[str, Any]:
    """Runs on the worker thread: output schemas may read related rows."""
    instance = result if isinstance(result, model) else model.model_validate(result)
    return instance.model_dump(mode="json", by_alias=True)


def error_result(exc: DevBenchError) -> CallToolResult:
    """The MCP face of an error: the REST body (code, message, extra) as JSON text.

    No ``structuredContent``: a client validates structured content against the
    tool's output schema (the success shape), and the official TypeScript SDK
    throws instead of returning the result when it does not match. JSON text
    content is the one place every client passes through untouched.
    """
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(exc.as_dict()))],
        is_error=True,
    )


def validate_arguments(model: type[BaseModel], arguments: Mapping[str, Any]) -> Any:
    """Arguments are JSON, so checked strictly (``"yes"`` is not a boolean)."""
    try:
        return model.model_validate(_pre_parse(model, arguments), strict=True)
    except ValidationError as exc:
        raise InvalidInput(exc.errors(include_url=False), what="arguments") from exc


def _pre_parse(model: type[BaseModel], arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Accept lists and objects sent as JSON text, as some clients do."""
    parsed = dict(arguments)
    for key, value in arguments.items():
        field = model.model_fields.get(key)
        if field is None or _takes_text(field.annotation) or not isinstance(value, str):
            continue
        if value.lstrip()[:1] in ("[", "{"):
            # Not JSON after all: validation rejects it and names the field.
            with contextlib.suppress(ValueError, RecursionError):
                parsed[key] = json_loads_strict(value)
    return parsed


def _takes_text(annotation: Any) -> bool:
    """Whether a field accepts a string as it is (then JSON text stays text)."""
    if annotation is str:
        return True
    if get_origin(annotation) is Annotated:
        return _takes_text(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return any(_takes_text(arg) for arg in get_args(annotation))
    return False


def _lane(context: Context[Any, Any]) -> tuple[BlockingLane, bool]:
    """The HTTP request's lane, or (stdio, in-process) one for this call: (lane, owned)."""
    http_request = context.request_context.request
    if http_request is not None:
        lane = http_request.scope.get(LANE_KEY)
        if isinstance(lane, BlockingLane):
            return lane, False
    request = RequestContext(request_id=request_context.new_request_id(), user_agent="mcp-stdio")
    return BlockingLane(request), True


async def _principal(context: Context[Any, Any], lane: BlockingLane) -> object:
    http_request = context.request_context.request
    if http_request is not None:
        principal = http_request.scope.get(PRINCIPAL_KEY)
    else:
        state = context.request_context.lifespan_context
        authenticate: Callable[[], object] | None = (
            state.get(AUTHENTICATE_KEY) if isinstance(state, Mapping) else None
        )
        # stdio re-checks the token on every call, so a revoked token stops working.
        principal = await lane.run(authenticate) if authenticate else None
    if principal is None:
        raise TokenMissing("Authentication required.")
    return principal
