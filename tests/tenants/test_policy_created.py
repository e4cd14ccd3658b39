"""A tenant is created with its policy; reading the policy never writes."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tenants.models import Tenant, TenantPolicy
from tenants.selectors import tenant_policy_get
from tenants.services import tenant_create
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def test_every_way_of_creating_a_tenant_creates_its_policy() -> None:
    made = [
        Tenant.objects.create(slug="plain", name="Plain"),
        tenant_create(slug="serviced"),
        TenantFactory(policy__max_workspaces=3),
    ]
    assert TenantPolicy.objects.filter(tenant__in=made).count() == 3
    assert made[2].policy.max_workspaces == 3


def test_reading_the_policy_only_reads() -> None:
    tenant = TenantFactory()
    with CaptureQueriesContext(connection) as queries:
        policy = tenant_policy_get(tenant=tenant)
    assert policy.tenant_id == tenant.pk
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["SELECT"]
    TenantPolicy.objects.filter(tenant=tenant).delete()
    with pytest.raises(TenantPolicy.DoesNotExist):
        tenant_policy_get(tenant=tenant)
    assert not TenantPolicy.objects.filter(tenant=tenant).exists()


def test_the_data_migration_gives_older_tenants_their_policy() -> None:
    older = TenantFactory()
    TenantPolicy.objects.filter(tenant=older).delete()
    migration = importlib.import_module("tenants.migrations.0003_tenant_policy_for_every_tenant")
    migration.create_missing_policies(apps, None)
    assert TenantPolicy.objects.filter(tenant=older).count() == 1
    migration.create_missing_policies(apps, None)  # idempotent
    assert TenantPolicy.objects.filter(tenant=older).count() == 1
