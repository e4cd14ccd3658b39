"""Pieces of hand-written SQL built from a model's fields, for the statements the ORM
cannot make (several writes in one statement: ``execution.state``,
``workspaces.provisioning``)."""

from __future__ import annotations

from typing import Any

from django.db import connection, models
from django.db.models import Field


def column_assignments(
    model: type[models.Model], values: dict[str, Any]
) -> tuple[list[str], list[Any]]:
    """``column = %s`` for each of ``model``'s fields in ``values`` (by field name), and
    their parameters as the database takes them."""
    columns, params = [], []
    for name, value in values.items():
        field = model._meta.get_field(name)
        assert isinstance(field, Field)
        columns.append(f"{connection.ops.quote_name(str(field.column))} = %s")
        params.append(field.get_db_prep_save(value, connection))
    return columns, params
