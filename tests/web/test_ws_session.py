"""Websockets opened by the web pages: the session user acts in the tenant the page names."""

from __future__ import annotations

import pytest

from core.errors import NotFound
from execution import ws_auth
from tests.factories import MembershipFactory, TenantFactory, UserFactory, WorkspaceFactory
from workspaces.selectors import workspace_get

pytestmark = pytest.mark.django_db


def _scope(user, query=""):
    return {"user": user, "query_string": query.encode(), "headers": []}


def _lookup(ref):
    return lambda principal: workspace_get(actor=principal, ref=ref)


def test_the_page_tenant_decides_where_the_session_user_acts(tenant, other_tenant):
    member = UserFactory()
    MembershipFactory(user=member, tenant=tenant, role="viewer")
    mine = WorkspaceFactory(tenant=tenant)
    theirs = WorkspaceFactory(tenant=other_tenant)

    principal, found = ws_auth.resolve(
        _scope(member, f"tenant={tenant.slug}"), _lookup(mine.public_id)
    )
    assert found == mine and principal.tenant == tenant and principal.scopes == {"read"}
    # another tenant's slug, or its object under mine: not found, like a missing one
    with pytest.raises(NotFound) as slug:
        ws_auth.resolve(_scope(member, f"tenant={other_tenant.slug}"), _lookup(theirs.public_id))
    assert slug.value.code == "tenant_not_found"
    with pytest.raises(NotFound) as obj:
        ws_auth.resolve(_scope(member, f"tenant={tenant.slug}"), _lookup(theirs.public_id))
    assert obj.value.code == "workspace_not_found"
    # without the parameter the user's tenants are searched, as before
    assert ws_auth.resolve(_scope(member), _lookup(mine.public_id))[1] == mine


def test_a_superuser_streams_in_a_tenant_they_are_not_a_member_of():
    admin = UserFactory(is_superuser=True, is_staff=True)
    tenant = TenantFactory()
    workspace = WorkspaceFactory(tenant=tenant)
    with pytest.raises(NotFound):
        ws_auth.resolve(_scope(admin), _lookup(workspace.public_id))
    principal, found = ws_auth.resolve(
        _scope(admin, f"tenant={tenant.slug}"), _lookup(workspace.public_id)
    )
    assert found == workspace and principal.has_scope("write")
