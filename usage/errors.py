"""Errors of usage reports (codes are part of the API)."""

from __future__ import annotations

from core.errors import ValidationFailed


class InvalidRange(ValidationFailed):
    code = "invalid_range"

    def __init__(self, message: str, *, max_days: int | None = None) -> None:
        super().__init__(message, extra={} if max_days is None else {"max": max_days})
