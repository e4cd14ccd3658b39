"""Errors specific to execs (all DevBenchError subclasses with stable codes)."""

from __future__ import annotations

from core.errors import QuotaExceeded


class ConcurrencyLimitExceeded(QuotaExceeded):
    default_code = "concurrency_limit_exceeded"
    default_status = 429
    default_message = "The workspace already runs as many execs as its policy allows."
