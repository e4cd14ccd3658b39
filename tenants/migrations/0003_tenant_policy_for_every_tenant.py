"""Every tenant has its policy: create the default one for tenants made without it."""

from django.db import migrations


def create_missing_policies(apps, schema_editor):
    Tenant = apps.get_model("tenants", "Tenant")
    TenantPolicy = apps.get_model("tenants", "TenantPolicy")
    missing = Tenant.objects.filter(policy__isnull=True)
    TenantPolicy.objects.bulk_create([TenantPolicy(tenant=tenant) for tenant in missing])


class Migration(migrations.Migration):
    dependencies = [("tenants", "0002_identity_rules")]

    operations = [migrations.RunPython(create_missing_policies, migrations.RunPython.noop)]
