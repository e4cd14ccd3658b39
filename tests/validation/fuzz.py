"""Hostile and careless values for fuzzing every input, and the checks every answer passes.

A value is drawn either from what the schema admits or, more often, from the
values that broke things before: NUL and other control characters, unpaired
surrogates, odd Unicode, huge and negative numbers, non-finite floats, wrong
JSON types.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import strategies as st

NASTY_TEXT = [
    "",
    "\x00",
    "a\x00b",
    "\x01\x1b[31m\x7f",
    "tab\there",
    "line\nbreak",
    "\u0085\u009f",
    "\ud800",
    "x\udfffy",
    "\u202e\ufeff\u200b",
    "🙂" * 3,
    "/workspace",
    "/workspace/.",
    "../../etc/passwd",
    "ws_",
    "Infinity",
    "NaN",
    "-1",
    "9223372036854775808",
    "1e400",
    "x" * 5000,
]
NASTY_NUMBERS: list[Any] = [
    -1,
    0,
    -(2**63),
    2**63,
    2**70,
    10**20,
    2**53,
    1.5,
    -0.0,
    1e308,
    math.inf,
    -math.inf,
    math.nan,
]
WRONG_TYPES: list[Any] = [None, True, False, [], [1, 2], {}, {"a": 1}, "yes", "big"]

nasty_text = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=40))
nasty_scalar = st.one_of(
    nasty_text,
    st.sampled_from(NASTY_NUMBERS),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WRONG_TYPES),
)


def nasty_value(depth: int = 1) -> st.SearchStrategy[Any]:
    if depth <= 0:
        return nasty_scalar
    inner = nasty_value(depth - 1)
    return st.one_of(
        nasty_scalar,
        st.lists(inner, max_size=3),
        st.dictionaries(nasty_text, inner, max_size=3),
    )


def query_text(value: Any) -> str:
    """How a value travels in a query string or path."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def strict_json(data: bytes | str) -> Any:
    """Parse an answer as RFC 8259 JSON: a ``NaN``/``Infinity`` in it fails the test."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"non-finite number {name} in a JSON answer")

    return json.loads(data, parse_constant=refuse)


def assert_error_shape(body: Any) -> None:
    assert isinstance(body, dict), body
    assert set(body) - {"request_id"} == {"code", "message", "extra"}, body
    assert isinstance(body.get("request_id", "-"), str) and body.get("request_id", "-"), body
    assert isinstance(body["code"], str) and body["code"], body
    assert isinstance(body["message"], str), body
    assert isinstance(body["extra"], dict), body


def has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, dict):
        return any(has_surrogate(k) or has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_surrogate(v) for v in value)
    return False
