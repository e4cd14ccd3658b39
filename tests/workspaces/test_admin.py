"""The workspace admin: scoped to the tenants a user administers; kills via the service."""

import pytest
from django.test import Client

from tenants.models import AuditEvent
from tests.factories import MembershipFactory, TenantFactory, UserFactory, WorkspaceFactory
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup():
    a, b = TenantFactory(), TenantFactory()
    admin_a = UserFactory(is_staff=True)
    MembershipFactory(user=admin_a, tenant=a, role="admin")
    mine = WorkspaceFactory(tenant=a, alias="mine-box", status="error")
    theirs = WorkspaceFactory(tenant=b, alias="their-box", status="error")
    client = Client()
    client.force_login(admin_a)
    return client, mine, theirs


def test_lists_and_pages_only_own_tenants_workspaces(setup):
    client, mine, theirs = setup
    page = client.get("/admin/workspaces/workspace/").content.decode()
    assert "mine-box" in page and "their-box" not in page
    assert client.get(f"/admin/workspaces/workspace/{mine.pk}/change/").status_code == 200
    assert client.get(f"/admin/workspaces/workspace/{theirs.pk}/change/").status_code == 302
    assert client.get("/admin/workspaces/workspace/add/").status_code == 403


@pytest.mark.docker
def test_kill_action_goes_through_the_service(setup):
    client, mine, theirs = setup
    response = client.post(
        "/admin/workspaces/workspace/",
        {"action": "kill_workspaces", "_selected_action": [mine.pk, theirs.pk]},
    )
    assert response.status_code == 302
    assert Workspace.objects.get(pk=mine.pk).status == "removed"
    assert Workspace.objects.get(pk=theirs.pk).status == "error"  # not selectable by this admin
    event = AuditEvent.objects.get(action="workspace.kill")
    assert event.target_id == mine.public_id and event.actor_kind == "session"
