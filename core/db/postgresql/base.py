"""PostgreSQL with django-prometheus's query metrics, without a new class per connect.

django-prometheus builds its metrics-counting cursor class afresh in every
``get_connection_params()``, and Django calls that on every ``connect()``. With
the connection pool, that is every request and every task (the connection goes
back to the pool at their end), and the class is thrown away: the pool made its
connections with the parameters of its first call. Building a class (and its
generic base's bookkeeping) was ~6 % of a simple GET's CPU. The class depends
only on the cursor class, alias and vendor, so it is built once per combination.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base as django_base
from django_prometheus.db.backends.postgresql import base as prometheus_base

from core.db import exporting_cursor


class DatabaseWrapper(prometheus_base.DatabaseWrapper):
    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = django_base.DatabaseWrapper.get_connection_params(self)
        params["cursor_factory"] = exporting_cursor(
            params["cursor_factory"], self.alias, self.vendor
        )
        return params
