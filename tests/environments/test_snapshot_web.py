"""The snapshots tab and the spawn form's snapshot choice, through the Django test client."""

from __future__ import annotations

from functools import partial

import pytest

from tests.environments.conftest import BUSYBOX, sh, spawn
from tests.factories import MembershipFactory, TenantFactory, UserFactory
from tests.processes import wait_for
from tests.web.conftest import messages_of, signed_in
from workspaces.models import Snapshot, Workspace, WorkspaceStatus

pytestmark = [pytest.mark.docker, pytest.mark.integration]


def test_take_list_spawn_fork_and_delete_from_the_pages(live_worker, actor, tenant, kill_after):
    member = UserFactory()
    MembershipFactory(user=member, tenant=tenant, role="member")
    web = signed_in(member)
    source = spawn(actor, kill_after, image=BUSYBOX, alias="webbox")
    sh(source, "echo from-web > /workspace/note")
    tab = f"/t/{tenant.slug}/workspaces/{source.public_id}/snapshots"

    page = web.get(tab).content.decode()
    assert "No snapshots of this workspace yet." in page and 'id="snapshot-form"' in page
    taken = web.post(tab + "/take", {"name": "before-change"}, follow=True)
    snapshot = Snapshot.objects.get(tenant=tenant)
    assert [text for _, text in messages_of(taken)] == [
        f"Snapshot before-change ({snapshot.public_id}) was taken."
    ]
    page = web.get(tab).content.decode()
    assert f'data-snapshot="{snapshot.public_id}"' in page and "before-change" in page

    # The spawn form offers it; choosing it spawns from it whatever the image field says.
    listing = web.get(f"/t/{tenant.slug}/workspaces/").content.decode()
    assert f'<option value="{snapshot.public_id}">before-change' in listing
    web.post(
        f"/t/{tenant.slug}/workspaces/spawn",
        {"image": "ignored/when:snapshot", "snapshot": snapshot.public_id},
    )
    made = Workspace.objects.filter(tenant=tenant, snapshot=snapshot).get()
    kill_after.append(made)

    forked = web.post(f"/t/{tenant.slug}/workspaces/{source.public_id}/fork", {"alias": "webfork"})
    fork_ws = Workspace.objects.get(tenant=tenant, alias="webfork")
    kill_after.append(fork_ws)
    assert forked["Location"] == f"/t/{tenant.slug}/workspaces/{fork_ws.public_id}/"
    for workspace in (made, fork_ws):
        wait_for(partial(_running, workspace.pk), what="spawn from the page")
        workspace.refresh_from_db()
        assert sh(workspace, "cat /workspace/note") == "from-web\n"

    refused = web.post(f"/t/{tenant.slug}/snapshots/{snapshot.public_id}/delete", follow=True)
    assert any("kill them first" in text for _, text in messages_of(refused))
    assert Snapshot.objects.filter(pk=snapshot.pk).exists()


def test_another_tenants_member_gets_not_found(live_worker, actor, tenant, kill_after):
    source = spawn(actor, kill_after, image=BUSYBOX)
    from workspaces.snapshots.services import snapshot_create

    snapshot = snapshot_create(actor=actor, workspace=source, name="private")
    other = TenantFactory()
    stranger = UserFactory()
    MembershipFactory(user=stranger, tenant=other, role="admin")
    web = signed_in(stranger)
    for url in (
        f"/t/{other.slug}/snapshots/{snapshot.public_id}/delete",
        f"/t/{other.slug}/snapshots/{snapshot.public_id}/spawn",
    ):
        response = web.post(url)
        assert response.status_code == 404
        assert "snapshot_not_found" in response.content.decode()
    assert "private" not in web.get(f"/t/{other.slug}/workspaces/").content.decode()
    assert Snapshot.objects.filter(pk=snapshot.pk).exists()
    assert not Workspace.objects.filter(tenant=other).exists()


def _running(pk: int) -> bool:
    return bool(Workspace.objects.get(pk=pk).status == WorkspaceStatus.RUNNING)
