"""The cursor of the list contract: opaque, signed, bound to its list (``core.pagination``)."""

from __future__ import annotations

import pytest

from core.errors import InvalidCursor, InvalidLimit
from core.pagination import (
    MAX_CURSOR_LENGTH,
    cursor_decode,
    cursor_encode,
    limit_check,
    page_from_query,
)


def test_a_cursor_round_trips_in_its_own_scope_only() -> None:
    cursor = cursor_encode(["2026-12-01T10:00:00+00:00", 42], scope="workspace_list:1")
    assert cursor_decode(cursor, scope="workspace_list:1") == ["2026-12-01T10:00:00+00:00", 42]
    for scope in ("workspace_list:2", "snapshot_list:1", "exec_list:1:7"):
        with pytest.raises(InvalidCursor):
            cursor_decode(cursor, scope=scope)


@pytest.mark.parametrize(
    "cursor",
    ["", "forged", "a:b", "WyJ4Il0:", "WyJ4Il0:" + "A" * 43, "\x00", "é" * 10],
)
def test_anything_but_a_cursor_we_signed_is_invalid_cursor(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        cursor_decode(cursor, scope="workspace_list:1")


def test_a_tampered_position_is_refused() -> None:
    cursor = cursor_encode(["2026-12-01T10:00:00+00:00", 42], scope="s")
    payload, signature = cursor.rsplit(":", 1)
    other = cursor_encode(["2026-12-01T10:00:00+00:00", 43], scope="s").rsplit(":", 1)[0]
    with pytest.raises(InvalidCursor):
        cursor_decode(f"{other}:{signature}", scope="s")
    assert payload != other


def test_limits_and_query_strings() -> None:
    limit_check(1)
    limit_check(500)
    for bad in (0, -1, 501):
        with pytest.raises(InvalidLimit):
            limit_check(bad)
    limit_check(10_000, max_limit=10_000)
    assert page_from_query({}).cursor is None and page_from_query({}).limit == 50
    assert page_from_query({"cursor": ""}).cursor is None
    with pytest.raises(InvalidCursor):
        page_from_query({"cursor": "x" * (MAX_CURSOR_LENGTH + 1)})
