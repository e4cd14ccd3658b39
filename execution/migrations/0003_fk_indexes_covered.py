"""The exec's workspace and the chunk's exec lose their single-column indexes.

Each is the leading column of an index the table already has, (workspace, status) and
the unique (exec, seq), which serves every lookup and cascade by it; every index is
written again on each status change of an exec (none is a HOT update) and on each
stored chunk. Only the indexes go: the foreign keys stay as they are (Django's own
AlterField would drop and re-validate them, a scan of both tables).
"""

import django.db.models.deletion
from django.db import migrations, models

_INDEXES = [
    ("execution_exec", "workspace_id", "execution_exec_workspace_id_31fb9000"),
    ("execution_execchunk", "exec_id", "execution_execchunk_exec_id_2503ecaa"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("execution", "0002_chunk_data_lz4"),
        ("workspaces", "0010_node_agent_socket"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{index}"',
                    reverse_sql=f'CREATE INDEX IF NOT EXISTS "{index}" ON "{table}" ("{column}")',
                )
                for table, column, index in _INDEXES
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="exec",
                    name="workspace",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="execs",
                        to="workspaces.workspace",
                    ),
                ),
                migrations.AlterField(
                    model_name="execchunk",
                    name="exec",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="chunks",
                        to="execution.exec",
                    ),
                ),
            ],
        ),
    ]
