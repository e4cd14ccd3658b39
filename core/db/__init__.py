"""Database backends: django-prometheus's, with its per-connect costs taken out."""

from __future__ import annotations

import functools

from django_prometheus.db.common import ExportingCursorWrapper


@functools.cache
def exporting_cursor(cursor_class: type, alias: str, vendor: str) -> type:
    """django-prometheus's query-counting cursor class, built once per combination."""
    return ExportingCursorWrapper(cursor_class, alias, vendor)
