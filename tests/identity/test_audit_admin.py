"""The audit log in the admin: read-only, and a tenant admin sees only their tenants' events."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tenants.audit import audit_record
from tenants.models import AuditEvent, MembershipRule
from tenants.principal import system_principal
from tests.factories import MembershipFactory, MembershipRuleFactory, TenantFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup() -> dict[str, Any]:
    alpha, bravo = TenantFactory(slug="alpha"), TenantFactory(slug="bravo")
    admin_a = UserFactory(username="admin-a", is_staff=True)
    MembershipFactory(user=admin_a, tenant=alpha, role="admin")
    mine = audit_record(
        actor=system_principal(alpha),
        action="workspace.spawn",
        outcome="success",
        target_type="workspace",
        target_id="ws_alpha",
        details={"env": {"DB_PASSWORD": "pw-alpha"}, "owner": "ann@alpha.test"},
    )
    theirs = audit_record(
        actor=system_principal(bravo),
        action="bravo.secret-action",
        outcome="denied",
        error_code="bravo_only_code",
        target_id="ws_bravo",
    )
    client = Client()
    client.force_login(admin_a)
    return {"alpha": alpha, "bravo": bravo, "mine": mine, "theirs": theirs, "client": client}


def test_list_shows_only_own_tenant_and_filters_leak_nothing(setup):
    page = setup["client"].get("/admin/tenants/auditevent/").content.decode()
    assert "ws_alpha" in page
    assert "ws_bravo" not in page
    # Neither the other tenant's name nor its action or error code appear as filter choices.
    assert "bravo" not in page
    assert "bravo_only_code" not in page


def test_filters_and_search_work(setup):
    c = setup["client"]
    assert "ws_alpha" in c.get("/admin/tenants/auditevent/?q=ws_alpha").content.decode()
    assert "ws_alpha" not in c.get("/admin/tenants/auditevent/?outcome=denied").content.decode()
    by_action = c.get("/admin/tenants/auditevent/?action=workspace.spawn").content.decode()
    assert "ws_alpha" in by_action
    # Filtering by the other tenant's id shows nothing of it.
    other = c.get(f"/admin/tenants/auditevent/?tenant={setup['bravo'].pk}").content.decode()
    assert "ws_bravo" not in other


def test_detail_is_read_only_and_redacted(setup):
    c = setup["client"]
    response = c.get(f"/admin/tenants/auditevent/{setup['mine'].pk}/change/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "[redacted]" in body and "pw-alpha" not in body
    assert "a***@alpha.test" in body
    assert 'name="_save"' not in body  # view only
    # No way to change or delete evidence.
    url = f"/admin/tenants/auditevent/{setup['mine'].pk}/"
    assert c.post(url + "change/", {"action": "forged"}).status_code == 403
    assert c.post(url + "delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.get(pk=setup["mine"].pk).action == "workspace.spawn"
    assert c.get("/admin/tenants/auditevent/add/").status_code == 403


def test_other_tenants_event_is_not_found(setup):
    response = setup["client"].get(f"/admin/tenants/auditevent/{setup['theirs'].pk}/change/")
    assert response.status_code == 302  # the admin's "does not exist" redirect


def test_superuser_sees_every_tenant(setup):
    root = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(root)
    page = client.get("/admin/tenants/auditevent/").content.decode()
    assert "ws_alpha" in page and "ws_bravo" in page


def test_membership_rules_are_tenant_scoped(setup):
    c = setup["client"]
    MembershipRuleFactory(value="alpha-devs", tenant=setup["alpha"])
    theirs = MembershipRuleFactory(value="bravo-devs", tenant=setup["bravo"])
    page = c.get("/admin/tenants/membershiprule/").content.decode()
    assert "alpha-devs" in page and "bravo-devs" not in page
    assert c.get(f"/admin/tenants/membershiprule/{theirs.pk}/change/").status_code == 302
    # A rule can only target a tenant the admin manages.
    response = c.post(
        "/admin/tenants/membershiprule/add/",
        {
            "provider_id": "corp",
            "claim": "groups",
            "value": "x",
            "tenant": setup["bravo"].pk,
            "role": "owner",
            "active": "on",
        },
    )
    assert response.status_code == 200  # the form is shown again with an error
    assert not MembershipRule.objects.filter(value="x").exists()
    response = c.post(
        "/admin/tenants/membershiprule/add/",
        {
            "provider_id": "corp",
            "claim": "groups",
            "value": "y",
            "tenant": setup["alpha"].pk,
            "role": "member",
            "active": "on",
        },
    )
    assert response.status_code == 302
    assert MembershipRule.objects.filter(value="y", tenant=setup["alpha"]).exists()
