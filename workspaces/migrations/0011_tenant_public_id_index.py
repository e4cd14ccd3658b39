"""A workspace is found by (tenant, public_id) through one index on both.

As ``execution/0004``: the index on the tenant alone could be taken for the lookup of
every request naming a workspace and then read every workspace the tenant ever had.
The new index (and (tenant, status)) lead with the tenant, so the tenant's own goes;
the foreign key stays as it is.
"""

import django.db.models.deletion
from django.db import migrations, models

_OLD = "workspaces_workspace_tenant_id_3f0f8d80"


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0008_policy_warm_pool"),
        ("workspaces", "0010_node_agent_socket"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="workspace",
            index=models.Index(
                fields=["tenant", "public_id"], name="workspaces__tenant__905c9e_idx"
            ),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{_OLD}"',
                    reverse_sql=(
                        f'CREATE INDEX IF NOT EXISTS "{_OLD}" ON "workspaces_workspace" ("tenant_id")'
                    ),
                )
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="workspace",
                    name="tenant",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="workspaces",
                        to="tenants.tenant",
                    ),
                ),
            ],
        ),
    ]
