"""Stored output is compressed with lz4 where PostgreSQL has it (migration 0002); the
exec and chunk tables carry no index another one already covers (migration 0003)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from execution.models import Exec, ExecChunk
from tests.factories import ExecFactory


@pytest.mark.django_db
def test_chunk_data_is_compressed_with_lz4(tenant: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        assert cursor.fetchone() == (True,)  # Debian 12's PostgreSQL 15 is built with lz4
        exec_ = ExecFactory(workspace__tenant=tenant)
        data = b"0123456789abcdefghijklmnopqrstuvwxyz\n" * 2000  # compressible, stored out of line
        ExecChunk.objects.create(exec=exec_, seq=1, stream=1, data=data)
        table = ExecChunk._meta.db_table
        sql = f"SELECT pg_column_compression(data) FROM {table} WHERE exec_id = %s"  # noqa: S608
        cursor.execute(sql, [exec_.pk])
        assert cursor.fetchone() == ("lz4",)
    assert bytes(ExecChunk.objects.get(exec=exec_).data) == data


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("model", "column", "covering"),
    [
        (Exec, "workspace_id", ["workspace_id", "status"]),
        (ExecChunk, "exec_id", ["exec_id", "seq"]),
    ],
)
def test_no_index_of_a_column_another_index_leads_with(
    model: Any, column: str, covering: list[str]
) -> None:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    indexed = [c["columns"] for c in constraints.values() if c["index"] or c["unique"]]
    assert [column] not in indexed
    assert covering in indexed
    # The foreign key itself stays.
    assert any(c["foreign_key"] and c["columns"] == [column] for c in constraints.values())
