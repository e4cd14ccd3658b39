"""An exec is found by (tenant, public_id) through one index on both.

Every request naming an exec asks for ``tenant_id = … AND public_id = …``. With an index
on the tenant alone, PostgreSQL takes it whenever its statistics predate a tenant's
growth (they estimate one row for a tenant it has not seen) and then reads every exec
of that tenant to find one. The index on both replaces the tenant's own: it leads with
the tenant, so it serves every lookup by tenant too. Only the old index goes: the
foreign key stays as it is (Django's AlterField would drop and re-validate it).
"""

import django.db.models.deletion
from django.db import migrations, models

_OLD = "execution_exec_tenant_id_a1eea8d9"


class Migration(migrations.Migration):
    dependencies = [
        ("execution", "0003_fk_indexes_covered"),
        ("tenants", "0008_policy_warm_pool"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="exec",
            index=models.Index(
                fields=["tenant", "public_id"], name="execution_e_tenant__d02003_idx"
            ),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{_OLD}"',
                    reverse_sql=f'CREATE INDEX IF NOT EXISTS "{_OLD}" ON "execution_exec" ("tenant_id")',
                )
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="exec",
                    name="tenant",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="execs",
                        to="tenants.tenant",
                    ),
                ),
            ],
        ),
    ]
