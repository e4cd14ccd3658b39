"""Model rows as JSON values and back, for work handed to another process with the rows
its starter already holds (``execution.runner_row``, ``workspaces.provision_row``).

Only a row's own columns travel; :func:`row_load` builds the instance as a query would
(``Model.from_db``), and raises on a row that does not decode (another version's
columns), for the receiver to read the row itself instead.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, models

M = TypeVar("M", bound=models.Model)

_JSON_TYPES = (str, int, float, bool, type(None), list, dict)


def row_dump(instance: models.Model) -> dict[str, Any]:
    """The instance's columns as JSON values; TypeError for a value JSON cannot carry."""
    return {
        field.attname: _json_value(getattr(instance, field.attname))
        for field in instance._meta.concrete_fields
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, _JSON_TYPES):
        return value
    raise TypeError(f"{type(value).__name__} is not carried as JSON")


def row_load(model: type[M], data: Any) -> M:
    """``model``'s instance of ``row_dump``'s ``data``: KeyError, TypeError, ValueError or
    ValidationError if it does not decode."""
    if not isinstance(data, dict):
        raise TypeError(f"{model.__name__}: not an object")
    fields = model._meta.concrete_fields
    values = [field.to_python(data[field.attname]) for field in fields]
    return model.from_db(DEFAULT_DB_ALIAS, [field.attname for field in fields], values)
