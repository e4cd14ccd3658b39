"""The one input validation layer: what any string or number from a client may hold.

Every REST body, query and path parameter and every MCP tool argument is a field
of a model built from these types, so one rule holds on every interface and the
OpenAPI schema (and the MCP input schemas) state it:

* ``Text``: any string that can be stored — no NUL (PostgreSQL text and jsonb
  refuse it) and no lone surrogate (not encodable as UTF-8, so neither the
  database nor the engine can take it). Newlines and tabs are fine (commands,
  env values, paths).
* ``Line``: a single-line token (ids, aliases, keys, names, filters): ``Text``
  without any control character (C0, DEL, C1), so it can be shown and logged
  as it is. A field with a pattern of its own (aliases, env names, absolute
  paths) folds the same character rule into it.
* Numbers carry bounds (``ge``/``le``) at their field; ``MAX_SAFE_INT`` is the
  bound of counters and offsets (the largest integer every JSON client reads
  exactly, and within PostgreSQL's bigint); floats are finite.
* Bodies and tool arguments are :class:`InputModel` (strict: ``"yes"`` is not
  a boolean, ``"big"`` is not an object); query strings are
  :class:`QueryModel` (a query string has no types, so ``"true"`` is a boolean
  there).

:func:`escape_unstorable` is the other half: values that reach the audit log
or a message are escaped so recording a refusal can never fail.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, StringConstraints

# The largest integer a JSON client (IEEE double) reads exactly; below bigint's max.
MAX_SAFE_INT = 2**53 - 1
# Columns declared as PostgreSQL integer.
MAX_INT32 = 2**31 - 1

# The rules as JSON Schema patterns, which pydantic enforces and the schemas publish
# (ECMA-262, Python and Rust read them alike). Unpaired surrogates need no rule of
# their own: a constrained string refuses them (``string_unicode``).
TEXT_PATTERN = r"^[^\u0000]*$"
LINE_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f]*$"

Text = Annotated[str, StringConstraints(pattern=TEXT_PATTERN)]
Line = Annotated[str, StringConstraints(pattern=LINE_PATTERN)]

# Retrying with the same key repeats nothing (spawn, exec_start; body field or header).
IdempotencyKey = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=LINE_PATTERN)
]


_LINE_RE = re.compile(LINE_PATTERN[1:-1])  # fullmatch: a final newline is no exception


def is_line(value: str, *, max_length: int) -> bool:
    """Whether ``value`` is a ``Line`` of at most ``max_length`` (for lookups by a name or id
    that did not come through a model: such a value can name nothing)."""
    return (
        len(value) <= max_length
        and _LINE_RE.fullmatch(value) is not None
        and (value.isascii() or not any("\ud800" <= c <= "\udfff" for c in value))
    )


def only_declared_keys(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` of a dict field with a key pattern: other keys are refused.

    Pydantic publishes a key pattern as ``patternProperties``, which alone lets any
    other key through; the server refuses them, so the schema says so too.
    """
    for branch in [schema, *schema.get("anyOf", [])]:
        if "patternProperties" in branch:
            branch["additionalProperties"] = False


# The messages clients read for the two rules, instead of the pattern itself.
_PATTERN_MESSAGES = {
    TEXT_PATTERN: "Must not contain NUL characters.",
    LINE_PATTERN: "Must not contain control characters (including NUL, tab and newline).",
}


# The stable code a refusal of one of these fields answers with (the services used
# these codes before the schemas checked the same rules; clients branch on them).
# Any other field, or errors on fields of different codes: ``validation_failed``.
FIELD_CODES = {
    "alias": "invalid_alias",
    "image": "invalid_image_reference",
    "ttl_s": "invalid_ttl",
    "limits": "invalid_limits",
    "idempotency_key": "invalid_idempotency_key",
    "Idempotency-Key": "invalid_idempotency_key",
    "cmd": "invalid_cmd",
    "cwd": "invalid_cwd",
    "env": "invalid_env",
    "timeout_s": "invalid_timeout",
    "wait_s": "invalid_wait",
    "after_seq": "invalid_seq",
    "path": "invalid_path",
    "destination": "invalid_path",
    "mode": "invalid_mode",
    "max_entries": "invalid_max_entries",
}


def refusal_code(errors: Iterable[Mapping[str, Any]], *, skip: int = 0) -> str:
    """The code of a validation refusal: the fields' own code when they share one.

    ``skip`` leading loc items are not field names (REST: ``body``/``query``/``path``).
    """
    codes = set()
    for error in errors:
        names = [p for p in list(error.get("loc", []))[skip:] if isinstance(p, str)]
        codes.add(next((FIELD_CODES[n] for n in names if n in FIELD_CODES), "validation_failed"))
    return codes.pop() if len(codes) == 1 else "validation_failed"


def client_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic errors as answered to clients: loc, msg, type; never the input itself.

    The input is left out so nothing a client sent (a NUL, ``Infinity``, a secret)
    is echoed into a JSON answer.
    """
    result = []
    for error in errors:
        message = str(error.get("msg", ""))
        ctx = error.get("ctx") or {}
        if error.get("type") == "string_pattern_mismatch":
            message = _PATTERN_MESSAGES.get(str(ctx.get("pattern")), message)
        result.append(
            {
                "loc": [
                    p if isinstance(p, int) else escape_unstorable(str(p))
                    for p in error.get("loc", [])
                ],
                "msg": escape_unstorable(message),
                "type": str(error.get("type", "")),
            }
        )
    return result


class InputModel(BaseModel):
    """A request body or MCP tool arguments: JSON in, so types are checked strictly."""

    # Patterns run on pydantic's Rust engine, where (as in ECMA-262, unlike Python's re)
    # ``$`` is the end of the text, never before a final newline.
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")


class QueryModel(BaseModel):
    """Query-string parameters: text in, so ``"5"`` is a number and ``"true"`` a boolean."""

    model_config = ConfigDict(allow_inf_nan=False)


# --- Reading JSON bodies ------------------------------------------------------------


def json_loads_strict(data: bytes | str) -> Any:
    """JSON as RFC 8259 defines it: ``NaN``/``Infinity``, numbers that overflow to
    infinity (``1e400``), lone surrogates and nesting beyond 1024 levels are refused
    (``orjson.JSONDecodeError``, a ``ValueError``)."""
    return orjson.loads(data)


# --- Recording what was refused -------------------------------------------------------


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_unstorable(value: Any, *, _depth: int = 0) -> Any:
    """A copy of a JSON-like value that any store or log accepts.

    Control characters (except tab and newline), NUL and unpaired surrogates in
    strings and keys become visible ``\\xNN``/``\\uNNNN`` escapes; non-finite floats
    become strings; anything else is turned into text the same way.
    """
    if _depth > 20:
        return "…"
    if isinstance(value, str):
        return _ESCAPED.sub(_escape_char, value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {
            escape_unstorable(str(k)): escape_unstorable(v, _depth=_depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [escape_unstorable(v, _depth=_depth + 1) for v in value]
    return escape_unstorable(str(value), _depth=_depth + 1)


_ESCAPED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def safe_errors(errors: Any, *, input_limit: int = 200) -> list[dict[str, Any]]:
    """Pydantic-style errors reduced to loc/msg/type, plus the refused input, escaped and cut.

    For the audit log: enough to see what was sent, never enough to fail storing it.
    """
    result: list[dict[str, Any]] = []
    for error in errors:
        item: dict[str, Any] = {
            "loc": [escape_unstorable(p) for p in error.get("loc", [])],
            "type": escape_unstorable(error.get("type", "")),
        }
        if "input" in error and not isinstance(error["input"], dict | list):
            text = escape_unstorable(repr(error["input"]))
            item["input"] = text[:input_limit]
        result.append(item)
    return result
