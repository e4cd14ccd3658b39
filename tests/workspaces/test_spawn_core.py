import pytest

from tenants.models import AuditEvent
from tenants.principal import system_principal
from workspaces.models import WorkspaceStatus
from workspaces.runtime import get_driver
from workspaces.services import workspace_kill, workspace_spawn

pytestmark = [pytest.mark.docker, pytest.mark.integration]


def test_spawn_runs_a_confined_container_and_kill_removes_it(live_worker, tenant):
    actor = system_principal(tenant)
    workspace = workspace_spawn(actor=actor, alias="first")
    assert workspace.status == WorkspaceStatus.RUNNING
    info = get_driver().inspect(workspace.container_id)
    assert info.running
    assert info.labels["devbench.workspace"] == workspace.public_id
    assert info.labels["devbench.tenant"] == tenant.slug
    mounts = {m["Destination"]: m for m in info.raw["Mounts"]}
    assert mounts["/workspace"]["Name"] == workspace.volume_name
    assert not any("docker.sock" in (m.get("Source") or "") for m in info.raw["Mounts"])
    assert AuditEvent.objects.filter(
        action="workspace.spawn", outcome="success", target_id=workspace.public_id
    ).exists()

    workspace_kill(actor=actor, workspace=workspace)
    assert workspace.status == WorkspaceStatus.REMOVED
    assert get_driver().list_by_labels({"devbench.workspace": workspace.public_id}) == []
