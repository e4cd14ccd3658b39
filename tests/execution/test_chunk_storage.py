"""Stored output is compressed with lz4 where PostgreSQL has it (migration 0002)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from execution.models import ExecChunk
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
