"""Template pages: make one from a Dockerfile, follow its log, spawn it from the form;
another tenant's member gets not found; the admin is tenant-scoped."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.factories import MembershipFactory, TenantFactory, UserFactory
from tests.web.conftest import signed_in
from tests.workspaces.conftest import wait_for
from workspaces.models import Template, Workspace

pytestmark = [pytest.mark.docker, pytest.mark.integration]


def test_make_follow_and_spawn_a_template_from_the_pages(live_worker, tenant, kill_after):
    member = UserFactory()
    MembershipFactory(user=member, tenant=tenant, role="member")
    web = signed_in(member)
    base = f"/t/{tenant.slug}/templates/"
    assert "No templates yet." in web.get(base).content.decode()
    made = web.post(
        base + "new",
        {"name": "web-tool", "dockerfile": "FROM devbench/busybox\r\nRUN echo from-the-page\r\n"},
    )
    template = Template.objects.get(tenant=tenant, name="web-tool")
    assert made["Location"] == f"{base}{template.public_id}/"
    page = web.get(made["Location"]).content.decode()
    assert 'id="build-log"' in page and "FROM devbench/busybox" in page

    def done() -> dict | None:
        body = web.get(f"{base}{template.public_id}/log?offset=0").json()
        return body if body["done"] else None

    body = wait_for(done, what="the build")
    assert body["status"] == "ready" and "from-the-page" in body["text"]

    listing = web.get(f"/t/{tenant.slug}/workspaces/").content.decode()
    assert '<option value="web-tool">web-tool</option>' in listing
    web.post(f"/t/{tenant.slug}/workspaces/spawn", {"template": "web-tool"})
    workspace = Workspace.objects.get(tenant=tenant, template=template)
    kill_after.append(workspace)

    stranger = UserFactory()
    other = TenantFactory()
    MembershipFactory(user=stranger, tenant=other, role="admin")
    outsider = signed_in(stranger)
    for response in (
        outsider.get(f"/t/{other.slug}/templates/{template.public_id}/"),
        outsider.get(f"/t/{other.slug}/templates/{template.public_id}/log"),
        outsider.post(f"/t/{other.slug}/templates/{template.public_id}/delete"),
        outsider.post(f"/t/{other.slug}/templates/{template.public_id}/rebuild"),
    ):
        assert response.status_code == 404
    assert "web-tool" not in outsider.get(f"/t/{other.slug}/templates/").content.decode()


@pytest.mark.django_db
def test_admin_lists_only_own_tenants_templates():
    a, b = TenantFactory(), TenantFactory()
    admin_a = UserFactory(is_staff=True)
    MembershipFactory(user=admin_a, tenant=a, role="admin")
    mine = Template.objects.create(tenant=a, name="mine-tpl", image="devbench/busybox:latest")
    theirs = Template.objects.create(tenant=b, name="their-tpl", image="devbench/busybox:latest")
    client = Client()
    client.force_login(admin_a)
    page = client.get("/admin/workspaces/template/").content.decode()
    assert "mine-tpl" in page and "their-tpl" not in page
    assert client.get(f"/admin/workspaces/template/{theirs.pk}/change/").status_code == 302
    client.post(
        "/admin/workspaces/template/",
        {"action": "delete_templates", "_selected_action": [mine.pk, theirs.pk]},
    )
    assert not Template.objects.filter(pk=mine.pk).exists()
    assert Template.objects.filter(pk=theirs.pk).exists()
