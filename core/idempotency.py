"""Idempotency keys: one rule for every kind of row a key can make (workspaces, execs).

A key returns the row it made for ``DEVBENCH_IDEMPOTENCY_TTL_S`` seconds; after
that it is released (set to NULL on the row) and the same key makes a new row.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db.models import Model, QuerySet
from django.utils import timezone

M = TypeVar("M", bound=Model)


def key_window() -> timedelta:
    return timedelta(seconds=settings.DEVBENCH_IDEMPOTENCY_TTL_S)


def idempotent_replay(
    rows: QuerySet[M], *, key: str | None, expires_at: Callable[[M], datetime | None]
) -> M | None:
    """The row an unexpired ``key`` already made among ``rows`` (one tenant's), if any.

    An expired key is released here, so this request makes a new row.
    """
    if key is None:
        return None
    row = rows.filter(idempotency_key=key).first()
    if row is None:
        return None
    expiry = expires_at(row)
    if expiry is not None and expiry <= timezone.now():
        rows.filter(pk=row.pk).update(idempotency_key=None)
        return None
    return row


def made_at_plus_window(row: Any) -> datetime:
    """The expiry of a key on a row that records only when it was made."""
    made: datetime = row.created_at
    return made + key_window()
