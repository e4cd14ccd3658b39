"""Output chunks compressed with lz4 instead of PostgreSQL's default pglz.

Chunks (up to 64 KiB of mostly text) are stored out of line and compressed. pglz
costs the database several times the CPU of lz4 for every byte stored and read
back, and the store of an exec's output runs behind every streamed byte. Servers
built without lz4 (it is optional before PostgreSQL 16) keep pglz; values
already stored keep their compression until rewritten.
"""

from __future__ import annotations

from collections.abc import Callable

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor


def _lz4_available(schema_editor: BaseDatabaseSchemaEditor) -> bool:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def _set_compression(method: str) -> Callable[[Apps, BaseDatabaseSchemaEditor], None]:
    def apply(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
        if schema_editor.connection.vendor != "postgresql" or not _lz4_available(schema_editor):
            return
        table = apps.get_model("execution", "ExecChunk")._meta.db_table
        quote = schema_editor.quote_name
        schema_editor.execute(
            f"ALTER TABLE {quote(table)} ALTER COLUMN {quote('data')} SET COMPRESSION {method}"
        )

    return apply


class Migration(migrations.Migration):
    dependencies = [("execution", "0001_initial")]

    operations = [
        migrations.RunPython(_set_compression("lz4"), _set_compression("pglz")),
    ]
