"""SQLite (embedded mode) with django-prometheus's query metrics, without a new class
per cursor (django-prometheus builds its counting cursor class in every
``create_cursor()``; see ``core/db/postgresql/base.py``)."""

from __future__ import annotations

from typing import Any

from django_prometheus.db.backends.sqlite3 import base as prometheus_base

from core.db import exporting_cursor


class DatabaseWrapper(prometheus_base.DatabaseWrapper):
    def create_cursor(self, name: str | None = None) -> Any:
        return self.connection.cursor(
            factory=exporting_cursor(self.CURSOR_CLASS, self.alias, self.vendor)
        )
