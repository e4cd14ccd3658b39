"""The node agent's wire format, shared by the agent (server) and the remote driver.

Plain calls are ``POST /v1/<method>`` with a JSON object of keyword arguments
and answer ``{"result": ...}``; argument and result types come from the table
below (pydantic converts the runtime dataclasses both ways). Errors answer
with the error's HTTP status and ``{"error": {code, message, extra}}``, rebuilt
on the caller's side as the class with that code.

Streams: ``archive_get`` answers the tar stream as a chunked body (the path's
stat in the ``X-Path-Stat`` header; no last chunk: the stream broke), or on a
plain socket from an engine on a local socket, as the engine framed it (a
chunked one then ends the connection: ``agent._splice_out``),
``tree_entries`` a directory's entries the same way, as lines of JSON arrays
(``entry_lines``), and
``archive_put`` sends it as the request body (with a Content-Length when its size
is known, else chunked), both on keep-alive
connections the caller pools; ``exec_stream`` answers frames of
``<stream:1><length:4><data>``, a zero length frame ending the output;
``exec_open_tty`` upgrades the connection to raw tty output one way and
``<kind:1><length:4><payload>`` frames (stdin or resize) the other.
"""

from __future__ import annotations

import functools
import json
import struct
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import TypeAdapter

from core import fastjson
from core.errors import DevBenchError, EngineError, error_rebuilt
from workspaces.runtime.base import (
    CaptureSpec,
    ContainerInfo,
    ContainerSpec,
    ContainerStats,
    EngineInfo,
    ExecSpec,
    ExecState,
    ImageInfo,
    PathStat,
    RegistryAuth,
    TreeEntry,
    VolumeInfo,
)

API_PREFIX = "/v1/"
# ``POST /v1/hand_off/<name>`` with JSON arguments: start registered work on the node now
# (``agent.register_hand_off``); answers ``{"taken": bool}``.
HAND_OFF = "hand_off/"
# ``POST /v1/follow/<name>`` with JSON arguments: a registered stream of this process
# (``agent.register_follow``), sent as FRAME pieces of kind FOLLOW_PIECE, then an end
# frame (0, 0); a 404 with NOT_FOLLOWING when there is nothing to follow here.
FOLLOW = "follow/"
FOLLOW_PIECE = 1
NOT_FOLLOWING = "not_following"
STAT_HEADER = "X-Path-Stat"
UNKNOWN_METHOD = "unknown_method"  # the error code of a method this agent does not have
# An archive put's follow-up rename (JSON: src, dst, user), done by the agent once the put
# succeeded; the answer's result is then {"renamed": true}.
RENAME_HEADER = "X-Then-Rename"
EXEC_ID_HEADER = "X-Exec-Id"
UPGRADE = "devbench-tty"

FRAME = struct.Struct(">BI")  # stream or kind, payload length
TTY_STDIN = 0
TTY_RESIZE = 1

# method -> (argument types, result type); every plain (non-streaming) driver call.
CALLS: dict[str, tuple[dict[str, Any], Any]] = {
    "ping": ({}, None),
    "engine_info": ({}, EngineInfo),
    "image_inspect": ({"ref": str}, ImageInfo),
    "image_remove": ({"ref": str}, None),
    "image_pull": ({"ref": str, "auth": RegistryAuth | None}, ImageInfo),
    "image_push": ({"source": str, "ref": str, "auth": RegistryAuth | None}, str),
    "snapshot_capture": ({"spec": CaptureSpec}, ImageInfo),
    "volume_create": ({"name": str, "labels": dict[str, str]}, None),
    "volume_remove": ({"name": str}, None),
    "create": ({"spec": ContainerSpec}, ContainerInfo),
    "start": ({"container_id": str}, None),
    "stop": ({"container_id": str, "timeout_s": int}, None),
    "remove": ({"container_id": str, "force": bool}, None),
    "inspect": ({"container_id": str}, ContainerInfo),
    "pause": ({"container_id": str}, None),
    "unpause": ({"container_id": str}, None),
    "restart_policy_set": ({"container_id": str, "policy": str | None}, None),
    "list_by_labels": ({"labels": dict[str, str]}, list[ContainerInfo]),
    "volume_list_by_labels": ({"labels": dict[str, str]}, list[VolumeInfo]),
    "stats": ({"container_id": str}, ContainerStats),
    "exec_create": ({"container_id": str, "spec": ExecSpec}, str),
    "exec_inspect": ({"exec_id": str}, ExecState),
    "path_stat": ({"container_id": str, "path": str}, PathStat | None),
    "path_stat_chain": ({"container_id": str, "paths": list[str]}, list[PathStat | None]),
    "path_rename": ({"container_id": str, "src": str, "dst": str, "user": str}, None),
    "path_remove": (
        {"container_id": str, "path": str, "kind": str, "recursive": bool, "user": str},
        None,
    ),
}
STREAM_ARGS: dict[str, dict[str, Any]] = {
    "archive_get": {"container_id": str, "path": str},
    "archive_put": {"container_id": str, "path": str},
    "tree_entries": {"container_id": str, "path": str, "nested": bool},
    "exec_stream": {"exec_id": str},
    "exec_open_tty": {"container_id": str, "spec": ExecSpec},
}


@functools.cache
def adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


def dump(tp: Any, value: Any) -> Any:
    return None if tp is None else adapter(tp).dump_python(value, mode="json")


def load(tp: Any, value: Any) -> Any:
    return None if tp is None else adapter(tp).validate_python(value)


def dump_args(types: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    return {name: dump(types[name], value) for name, value in kwargs.items()}


def load_args(types: dict[str, Any], raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or set(raw) - set(types):
        raise ValueError(f"arguments must be an object with keys from {sorted(types)}")
    return {name: load(types[name], value) for name, value in raw.items()}


_FIRST_LINE_ENTRIES = 32
_LINE_ENTRIES = 512


def entry_lines(entries: Iterable[TreeEntry]) -> Iterator[bytes]:
    """Entries as lines of JSON arrays of ``[relative, kind, size, mode, mtime, link]``:
    32 in the first line (the caller starts early), then twice as many each time up
    to 512 (fewer, larger writes). Names that are not UTF-8 keep their bytes: the
    standard JSON escapes lone surrogates and reads them back."""
    batch: list[tuple[str, str, int, int, float, str]] = []
    size = _FIRST_LINE_ENTRIES
    for e in entries:
        batch.append((e.relative, e.kind, e.size, e.mode, e.mtime, e.link))
        if len(batch) == size:
            yield json.dumps(batch, separators=(",", ":")).encode() + b"\n"
            batch = []
            size = min(size * 2, _LINE_ENTRIES)
    if batch:
        yield json.dumps(batch, separators=(",", ":")).encode() + b"\n"


def entries_of_line(line: bytes) -> list[TreeEntry]:
    """One line of ``entry_lines`` (ValueError if it is not one)."""
    try:
        try:
            rows = fastjson.loads(line)
        except ValueError:
            rows = json.loads(line)  # a name that is not UTF-8: orjson refuses its surrogates
        return [
            TreeEntry(relative=relative, kind=kind, size=size, mode=mode, mtime=mtime, link=link)
            for relative, kind, size, mode, mtime, link in rows
        ]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a line of entries: {line[:80]!r}") from exc


def error_body(exc: DevBenchError) -> dict[str, Any]:
    return {"error": exc.as_dict()}


class AgentError(EngineError):
    """An answer of a node agent that carries no error this process knows."""

    code = "node_agent_error"


def error_from(body: Any, status: int) -> DevBenchError:
    """The error the agent raised, as the same class (by its code) where this process
    knows it; the agent's HTTP status is kept. The agent's errors are its driver's, so an
    engine error's class is taken over another family's with the same code (a missing
    path is ``EnginePathNotFound``, as from a local engine)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not error.get("code"):
        exc: DevBenchError = AgentError(f"The node agent answered HTTP {status}.")
    else:
        extra = error.get("extra")
        exc = error_rebuilt(
            code=str(error["code"]),
            message=str(error.get("message") or "The node agent reported an error."),
            extra=extra if isinstance(extra, dict) else {},
            family=EngineError,
        )
    exc.http_status = status
    return exc
