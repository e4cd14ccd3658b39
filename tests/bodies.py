"""Comparing error bodies across requests: each carries its own request id."""

from __future__ import annotations

from typing import Any


def error_body(response: Any) -> dict[str, Any]:
    """The JSON error body without ``request_id`` (which differs per request by design)."""
    body = dict(response.json())
    assert body.pop("request_id", None), "every error body carries its request id"
    return body
