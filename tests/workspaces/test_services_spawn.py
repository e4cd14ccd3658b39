"""Spawn and kill through the real worker, engine and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections, transaction
from django.utils import timezone

from core.errors import (
    Conflict,
    DevBenchError,
    EngineTimeout,
    ImageNotFound,
    PermissionDenied,
    PolicyDenied,
    QuotaExceeded,
    ValidationFailed,
)
from tenants.models import AuditEvent, TenantPolicy
from tenants.principal import Principal, system_principal
from tests.execution.helpers import container_run
from tests.factories import WorkspaceFactory
from tests.processes import wait_for
from tests.workspaces.conftest import status_of
from workspaces.models import Workspace, WorkspaceStatus
from workspaces.provisioning import workspace_provision, workspace_provision_enqueue
from workspaces.runtime import get_driver
from workspaces.services import (
    workspace_attach,
    workspace_kill,
    workspace_spawn,
    workspace_wait_running,
)

pytestmark = [pytest.mark.docker, pytest.mark.integration]

BUSYBOX = "devbench/busybox:latest"


def _containers(tenant) -> list:
    return get_driver().list_by_labels({"devbench.tenant": tenant.slug})


def test_spawn_waits_for_the_worker_and_applies_limits(live_worker, actor, tenant, kill_after):
    workspace = workspace_spawn(
        actor=actor, image="devbench/busybox", limits={"memory_mb": 64, "cpus": 0.5, "pids": 32}
    )
    kill_after.append(workspace)
    assert workspace.status == WorkspaceStatus.RUNNING
    assert workspace.image_ref == BUSYBOX
    assert workspace.node == "local"
    assert workspace.limits == {"memory_mb": 64, "cpus": 0.5, "pids": 32}
    host = get_driver().inspect(workspace.container_id).raw["HostConfig"]
    assert host["Memory"] == host["MemorySwap"] == 64 * 1024 * 1024
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 32
    assert host["CgroupnsMode"] == "private"
    # Inside, its own cgroups are the root of every hierarchy: the host's tree is not visible.
    cgroups = container_run(workspace, "cat", "/proc/self/cgroup").splitlines()
    assert cgroups and all(line.endswith(":/") for line in cgroups), cgroups
    assert host["RestartPolicy"]["Name"] in ("", "no")  # ephemeral: not restarted
    assert workspace.expires_at is not None and workspace.ttl_s == 3600
    # The task ran in the worker process, not here.
    assert "workspaces.provision[" in live_worker.log_path.read_text()


def test_spawn_without_waiting_returns_creating_then_runs(live_worker, actor, kill_after):
    workspace = workspace_spawn(actor=actor, image=BUSYBOX, wait=False)
    kill_after.append(workspace)
    assert workspace.status == WorkspaceStatus.CREATING
    assert workspace.container_id == ""
    running = workspace_wait_running(workspace=workspace)
    assert running.status == WorkspaceStatus.RUNNING
    assert get_driver().inspect(running.container_id).running


def test_twenty_concurrent_spawns_with_one_key_make_one_container(
    live_worker, actor, tenant, kill_after
):
    results: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(20)

    def spawn() -> None:
        try:
            start.wait()
            workspace = workspace_spawn(actor=actor, image=BUSYBOX, idempotency_key="retry-me")
            results.append(workspace.public_id)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=spawn) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    kill_after.extend(Workspace.objects.filter(tenant=tenant))
    assert errors == []
    assert len(results) == 20 and len(set(results)) == 1
    assert Workspace.objects.filter(tenant=tenant).count() == 1
    assert len(_containers(tenant)) == 1
    replays = AuditEvent.objects.filter(action="workspace.spawn", details__replayed=True)
    assert replays.count() == 19


def test_idempotency_key_reuse_and_expiry(live_worker, actor, tenant, kill_after):
    first = workspace_spawn(actor=actor, image=BUSYBOX, idempotency_key="k1", wait=False)
    kill_after.append(first)
    with pytest.raises(Conflict) as excinfo:
        workspace_spawn(actor=actor, image="devbench/base", idempotency_key="k1", wait=False)
    assert excinfo.value.code == "idempotency_key_reused"
    # Past its window the key makes a new workspace.
    Workspace.objects.filter(pk=first.pk).update(
        idempotency_expires_at=timezone.now() - timedelta(seconds=1)
    )
    second = workspace_spawn(actor=actor, image=BUSYBOX, idempotency_key="k1", wait=False)
    kill_after.append(second)
    assert second.pk != first.pk
    first.refresh_from_db()
    assert first.idempotency_key is None


def test_quota_is_race_free(live_worker, actor, tenant, kill_after):
    TenantPolicy.objects.filter(tenant=tenant).update(max_workspaces=3)
    outcomes: list[str] = []
    start = threading.Barrier(6)

    def spawn() -> None:
        try:
            start.wait()
            workspace_spawn(actor=actor, image=BUSYBOX, wait=False)
            outcomes.append("ok")
        except QuotaExceeded as exc:
            outcomes.append(exc.code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=spawn) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    kill_after.extend(Workspace.objects.filter(tenant=tenant))
    assert sorted(outcomes) == ["ok"] * 3 + ["workspace_quota_exceeded"] * 3
    assert (
        AuditEvent.objects.filter(
            action="workspace.spawn", outcome="denied", error_code="workspace_quota_exceeded"
        ).count()
        == 3
    )


def test_policy_and_input_errors_create_nothing(live_worker, actor, tenant):
    TenantPolicy.objects.filter(tenant=tenant).update(max_ttl_s=600)
    cases: list[tuple[dict[str, Any], type[DevBenchError], str]] = [
        ({"image": "busybox"}, PolicyDenied, "image_not_allowed"),
        ({"image": "devbench/nothing-here"}, ImageNotFound, "image_not_found"),
        ({"image": "devbench/Upper"}, ValidationFailed, "invalid_image_reference"),
        ({"limits": {"memory_mb": 4096}}, PolicyDenied, "policy_denied"),
        ({"ttl_s": 601}, PolicyDenied, "policy_denied"),
        ({"alias": "Not Valid"}, ValidationFailed, "invalid_alias"),
        ({"alias": "ws_looks_like_an_id"}, ValidationFailed, "invalid_alias"),
        ({"idempotency_key": "x" * 201}, ValidationFailed, "invalid_idempotency_key"),
    ]
    for kwargs, error, code in cases:
        with pytest.raises(error) as excinfo:
            workspace_spawn(actor=actor, wait=False, **kwargs)
        assert excinfo.value.code == code, kwargs
    assert not Workspace.objects.filter(tenant=tenant).exists()
    reader = Principal(user=None, tenant=tenant, scopes=frozenset({"read"}), kind="token")
    with pytest.raises(PermissionDenied):
        workspace_spawn(actor=reader, wait=False)


def test_alias_names_one_live_workspace(live_worker, actor, kill_after):
    first = workspace_spawn(actor=actor, image=BUSYBOX, alias="dev", wait=False)
    kill_after.append(first)
    with pytest.raises(Conflict) as excinfo:
        workspace_spawn(actor=actor, image=BUSYBOX, alias="dev", wait=False)
    assert excinfo.value.code == "alias_in_use"
    workspace_wait_running(workspace=first)
    workspace_kill(actor=actor, workspace=first)
    second = workspace_spawn(actor=actor, image=BUSYBOX, alias="dev", wait=False)
    kill_after.append(second)


def test_provisioning_error_is_raised_by_the_waiter(live_worker, tenant):
    """The worker fails; the waiting process raises the same error, code and class."""
    workspace = WorkspaceFactory(
        tenant=tenant, status="creating", image_id="sha256:" + "0" * 64, volume_name=""
    )
    workspace.volume_name = f"devbench-test-{workspace.public_id}-data"
    workspace.save()
    workspace_provision_enqueue(workspace=workspace)
    with pytest.raises(ImageNotFound) as excinfo:
        workspace_wait_running(workspace=workspace)
    assert excinfo.value.code == "image_not_found"
    workspace.refresh_from_db()
    assert workspace.status == WorkspaceStatus.ERROR and workspace.error_code == "image_not_found"
    assert get_driver().volume_list_by_labels({"devbench.workspace": workspace.public_id}) == []
    assert AuditEvent.objects.filter(
        action="workspace.provision", outcome="error", target_id=workspace.public_id
    ).exists()


def test_waiting_is_bounded_and_refused_inside_a_transaction(live_worker, actor, kill_after):
    with pytest.raises(EngineTimeout) as excinfo:
        workspace_spawn(actor=actor, image=BUSYBOX, wait_timeout_s=0)
    assert excinfo.value.code == "spawn_timeout"
    kill_after.append(Workspace.objects.get(public_id=excinfo.value.extra["workspace_id"]))
    with transaction.atomic(), pytest.raises(RuntimeError, match="inside a transaction"):
        workspace_spawn(actor=actor, image=BUSYBOX)


def test_kill_landing_during_provisioning_leaves_nothing(live_worker, actor, monkeypatch):
    """Provisioning that finishes after a kill removes what it built."""
    workspace = workspace_spawn(actor=actor, image=BUSYBOX, wait=False)
    # Take the row back from the worker's task so this test runs the provisioning itself.
    wait_for(lambda: status_of(workspace) != "creating", what="worker provisioning")
    workspace_kill(actor=actor, workspace=Workspace.objects.get(pk=workspace.pk), force=True)
    Workspace.objects.filter(pk=workspace.pk).update(status="creating", container_id="")
    driver = get_driver()
    real_start = type(driver).start

    def start_then_killed(self, container_id):
        real_start(self, container_id)
        Workspace.objects.filter(pk=workspace.pk).update(status="removed")

    monkeypatch.setattr(type(driver), "start", start_then_killed)
    result = workspace_provision(workspace_id=workspace.pk)
    assert result is not None and result.status == WorkspaceStatus.REMOVED
    assert driver.list_by_labels({"devbench.workspace": workspace.public_id}) == []


def test_kill_semantics(live_worker, actor, tenant, other_tenant):
    driver = get_driver()
    ephemeral = workspace_spawn(actor=actor, image=BUSYBOX)
    persistent = workspace_spawn(actor=actor, image=BUSYBOX, persistent=True)
    assert persistent.expires_at is None and persistent.ttl_s is None
    assert driver.inspect(persistent.container_id).raw["HostConfig"]["RestartPolicy"]["Name"] == (
        "unless-stopped"
    )
    attached = workspace_attach(actor=actor, target=ephemeral.public_id, client_name="cli")

    with pytest.raises(DevBenchError) as excinfo:
        workspace_kill(actor=system_principal(other_tenant), workspace=ephemeral)
    assert excinfo.value.code == "workspace_not_found"

    workspace_kill(actor=actor, workspace=ephemeral)
    workspace_kill(actor=actor, workspace=persistent)
    volumes = {v.name for v in driver.volume_list_by_labels({"devbench.tenant": tenant.slug})}
    assert ephemeral.volume_name not in volumes
    assert persistent.volume_name in volumes  # kept for a persistent workspace
    assert driver.list_by_labels({"devbench.tenant": tenant.slug}) == []
    attached.attachment.refresh_from_db()
    assert attached.attachment.detached_at is not None

    again = workspace_kill(actor=actor, workspace=persistent, remove_volume=True)
    assert again.status == WorkspaceStatus.REMOVED  # a second kill is a no-op...
    assert persistent.volume_name in {  # ...that does not touch the kept volume
        v.name for v in driver.volume_list_by_labels({"devbench.tenant": tenant.slug})
    }
    kills = AuditEvent.objects.filter(action="workspace.kill")
    assert kills.filter(outcome="success", tenant=tenant).count() == 3
    refused = kills.get(tenant=other_tenant)
    assert refused.error_code == "workspace_not_found" and refused.outcome != "success"


def test_provisioning_is_routed_to_the_workspace_node_queue(
    live_worker, start_worker, actor, settings, kill_after
):
    import redis

    settings.DEVBENCH_NODE = "elsewhere"  # no worker serves node.elsewhere yet
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("node.elsewhere")
    workspace = workspace_spawn(actor=actor, image=BUSYBOX, wait=False)
    kill_after.append(workspace)
    assert workspace.node == "elsewhere"
    assert broker.llen("node.elsewhere") == 1  # waiting on its node's queue, not "default"
    start_worker("elsewhere")  # listens on default,node.elsewhere
    assert workspace_wait_running(workspace=workspace).status == WorkspaceStatus.RUNNING


def test_the_waiting_spawn_is_woken_by_the_worker_not_by_rereading(
    live_worker, actor, kill_after, monkeypatch
):
    """The worker's message ends the wait: with the periodic re-read of the row pushed
    out to minutes, a spawn still returns as soon as its workspace runs."""
    from execution import notify

    assert notify.layer_crosses_processes(notify._layer())
    monkeypatch.setattr(notify, "RECHECK_S", 600.0)
    checks: list[str] = []
    real = notify.wait_for_group

    def counting(group: str, check: Any, *, timeout_s: float, **options: Any) -> bool:
        def counted() -> bool:
            checks.append(group)
            return bool(check())

        return real(group, counted, timeout_s=timeout_s, **options)

    monkeypatch.setattr(notify, "wait_for_group", counting)
    refreshed: list[int] = []
    refresh = Workspace.refresh_from_db

    def recorded_refresh(self: Workspace, *args: Any, **kwargs: Any) -> None:
        refreshed.append(self.pk)
        refresh(self, *args, **kwargs)

    monkeypatch.setattr(Workspace, "refresh_from_db", recorded_refresh)
    done: list[Workspace] = []
    waiter = threading.Thread(
        target=lambda: done.append(workspace_spawn(actor=actor, image=BUSYBOX, wait_timeout_s=300))
    )
    waiter.start()
    waiter.join(timeout=120)  # a lost wake-up would hold it for the whole 300 s
    assert not waiter.is_alive(), "the spawn was not woken by its worker"
    workspace = done[0]
    kill_after.append(workspace)
    assert workspace.status == WorkspaceStatus.RUNNING
    # Read once subscribed, and not again: the worker's message, sent once the row is
    # committed running, says so and carries what it wrote: the answer is not read again.
    assert checks == [f"workspace.{workspace.public_id}"]
    assert refreshed == []
    stored = Workspace.objects.get(pk=workspace.pk)
    for field in ("status", "container_id", "ready_s", "updated_at", "image_id", "volume_name"):
        assert getattr(workspace, field) == getattr(stored, field), field
    assert workspace.container_id and workspace.progress == {} and workspace.error_code == ""
