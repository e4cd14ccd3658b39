"""The warm pool against the real engine, PostgreSQL, Redis and a Celery worker."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from prometheus_client import REGISTRY

from core.metrics import tenant_label
from devbench_site.celery import app
from tests.conftest import client_for
from tests.pool.conftest import NODE, policy_set, pool_members
from tests.processes import TEST_INSTANCE, wait_for
from workspaces.models import Workspace, WorkspaceStatus
from workspaces.pool import pool_maintain
from workspaces.runtime import get_driver
from workspaces.selectors import workspace_list
from workspaces.services import workspace_spawn, workspace_wait_running

pytestmark = [pytest.mark.docker, pytest.mark.integration]

BUSYBOX = "devbench/busybox:latest"
WORKER = f"main@{TEST_INSTANCE}"
QUEUE = f"node.{NODE}"

# Every setting the policy decides, as the engine reports it.
HOST_KEYS = (
    "Memory", "MemorySwap", "NanoCpus", "PidsLimit", "NetworkMode", "ReadonlyRootfs", "CapDrop",
    "CapAdd", "SecurityOpt", "Init", "Tmpfs", "Runtime", "CgroupnsMode", "Privileged",
)  # fmt: skip
CONFIG_KEYS = ("User", "WorkingDir", "Entrypoint", "Cmd", "Image")


def _security(container_id: str) -> dict[str, Any]:
    raw = get_driver().inspect(container_id).raw
    host = {k: raw["HostConfig"].get(k) for k in HOST_KEYS}
    config = {k: raw["Config"].get(k) for k in CONFIG_KEYS}
    mounts = [(m["Destination"], m["Type"], m["RW"]) for m in raw["Mounts"]]
    return {"host": host, "config": config, "mounts": mounts}


def _node_queue(consume: bool) -> None:
    """Hold the node's work back (or let it go): spawns then stay as they were answered."""
    control = app.control.add_consumer if consume else app.control.cancel_consumer
    replies = control(QUEUE, destination=[WORKER], reply=True, timeout=10)
    assert replies, f"the worker did not answer {control.__name__}"


def _warm_spawns_counted(tenant: Any) -> float:
    labels = {"outcome": "success", "code": "", "warm": "true", "tenant": tenant_label(tenant)}
    return REGISTRY.get_sample_value("devbench_workspace_spawns_total", labels) or 0.0


def test_twenty_concurrent_spawns_against_a_pool_of_five(fill_pool, actor, tenant, kill_after):
    pooled = fill_pool(5)
    pooled_containers = {m.container_id for m in pooled}
    warm_counted = _warm_spawns_counted(tenant)
    results: list[Workspace] = []
    errors: list[BaseException] = []
    start = threading.Barrier(20)

    def spawn() -> None:
        try:
            start.wait()
            results.append(workspace_spawn(actor=actor, image=BUSYBOX, wait=False))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    # With the node's queue held, a refill cannot sneak a sixth ready member in.
    _node_queue(consume=False)
    try:
        threads = [threading.Thread(target=spawn) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        _node_queue(consume=True)
    kill_after.extend(results)
    assert not errors, errors
    warm = [w for w in results if w.warm]
    cold = [w for w in results if not w.warm]
    assert len(warm) == 5 and len(cold) == 15
    assert _warm_spawns_counted(tenant) == warm_counted + 5  # the metric sees the pool's hits
    # Warm answers run at once, on the pooled containers; each pooled one went to one caller.
    assert all(w.status == WorkspaceStatus.RUNNING for w in warm)
    assert {w.container_id for w in warm} == pooled_containers
    assert all(w.warm is False for w in cold)  # misses are counted as such
    done = [workspace_wait_running(workspace=w) for w in results]
    containers = {w.container_id for w in done}
    assert len(containers) == 20 and "" not in containers
    assert all(get_driver().inspect(c).running for c in containers)
    # The pool refills to its size, with new containers.
    refilled = wait_for(lambda: len(m := pool_members(tenant)) == 5 and m, what="the refill")
    assert not {m.container_id for m in refilled} & containers
    # The tenant sees its 20 workspaces, never the pool's.
    listed = {w.public_id for w in workspace_list(actor=actor)}
    assert listed == {w.public_id for w in results}


def test_warm_spawn_is_hardened_exactly_like_a_cold_one(fill_pool, actor, tenant, kill_after):
    fill_pool(1)
    warm = workspace_spawn(actor=actor, image=BUSYBOX, alias="warm-one", ttl_s=600)
    kill_after.append(warm)
    assert warm.warm is True and warm.alias == "warm-one" and warm.ttl_s == 600
    policy_set(tenant, warm_pool_size=0)  # the next spawn is cold
    cold = workspace_spawn(actor=actor, image=BUSYBOX)
    kill_after.append(cold)
    assert cold.warm is None
    assert _security(warm.container_id) == _security(cold.container_id)
    host = get_driver().inspect(warm.container_id).raw["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and host["ReadonlyRootfs"] is True
    assert host["NetworkMode"] == "none" and "no-new-privileges:true" in host["SecurityOpt"]
    assert get_driver().inspect(warm.container_id).raw["Config"]["User"] == "1000:1000"


def test_a_persistent_warm_spawn_gets_the_restart_policy(fill_pool, actor, kill_after):
    fill_pool(1)
    workspace = workspace_spawn(actor=actor, image=BUSYBOX, persistent=True)
    kill_after.append(workspace)
    assert workspace.warm is True and workspace.persistent and workspace.expires_at is None
    raw = get_driver().inspect(workspace.container_id).raw
    assert raw["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"


def test_a_policy_change_retires_mismatched_members(fill_pool, tenant):
    old = fill_pool(2)
    policy_set(tenant, memory_limit_mb=256)  # its save queues the pool's maintenance
    new = wait_for(
        lambda: (
            (m := pool_members(tenant))
            and len(m) == 2
            and not {x.pk for x in m} & {x.pk for x in old}
            and m
        ),
        what="members under the new policy",
    )
    for member in new:
        host = get_driver().inspect(member.container_id).raw["HostConfig"]
        assert host["Memory"] == 256 * 1024 * 1024
    for member in old:
        member.refresh_from_db()
        assert member.status == WorkspaceStatus.REMOVED
        assert not get_driver().list_by_labels({"devbench.workspace": member.public_id})


def test_a_killed_pooled_container_is_replaced(fill_pool, tenant, engine):
    victim, survivor = fill_pool(2)
    engine.containers.get(victim.container_id).remove(force=True)
    report = pool_maintain(tenant_id=tenant.pk, node=NODE)
    assert victim.public_id in report.retired and survivor.public_id not in report.retired
    members = wait_for(lambda: len(m := pool_members(tenant)) == 2 and m, what="a replacement")
    assert survivor.pk in {m.pk for m in members} and victim.pk not in {m.pk for m in members}


def _retired(member: Workspace) -> bool:
    return Workspace.all_objects.get(pk=member.pk).status == WorkspaceStatus.REMOVED


def test_a_claim_skips_a_member_that_died_since_maintenance(
    fill_pool, actor, tenant, engine, kill_after
):
    victim, survivor = fill_pool(2)  # a claim takes the oldest member first: the victim
    engine.containers.get(victim.container_id).kill()
    workspace = workspace_spawn(actor=actor, image=BUSYBOX, alias="after-a-death")
    kill_after.append(workspace)
    assert workspace.warm is True and workspace.pk == survivor.pk
    assert workspace.alias == "after-a-death"
    assert engine.containers.get(workspace.container_id).status == "running"
    wait_for(lambda: _retired(victim), what="the dead member retired")
    assert not engine.containers.list(all=True, filters={"id": victim.container_id})
    members = wait_for(lambda: len(m := pool_members(tenant)) == 2 and m, what="the refill")
    assert victim.pk not in {m.pk for m in members}
    # The dead member never became a tenant's workspace: lists and counts skip it.
    assert [w.pk for w in workspace_list(actor=actor)] == [workspace.pk]


def test_a_claim_of_a_dead_last_member_spawns_cold(fill_pool, actor, tenant, engine, kill_after):
    (victim,) = fill_pool(1)
    engine.containers.get(victim.container_id).kill()
    workspace = workspace_spawn(actor=actor, image=BUSYBOX, idempotency_key="cold-after-death")
    kill_after.append(workspace)
    assert workspace.warm is False and workspace.pk != victim.pk
    assert workspace.container_id != victim.container_id
    assert engine.containers.get(workspace.container_id).status == "running"
    wait_for(lambda: _retired(victim), what="the dead member retired")
    # Its key went with the caller's workspace, not with the dead member.
    replay = workspace_spawn(actor=actor, image=BUSYBOX, idempotency_key="cold-after-death")
    assert replay.pk == workspace.pk
    members = wait_for(lambda: len(m := pool_members(tenant)) == 1 and m, what="the refill")
    assert members[0].pk != victim.pk


def test_a_member_its_engine_cannot_answer_for_is_not_handed_out(
    fill_pool, actor, tenant, kill_after, monkeypatch
):
    from core.errors import EngineUnavailable
    from workspaces import pool

    (member,) = fill_pool(1)

    class _Unreachable:
        def inspect(self, container_id: str) -> None:
            raise EngineUnavailable()

    # Only the claim's liveness check sees the failing engine; the cold spawn is real.
    with monkeypatch.context() as patched:
        patched.setattr(pool, "node_driver", lambda node: _Unreachable())
        workspace = workspace_spawn(actor=actor, image=BUSYBOX)
    kill_after.append(workspace)
    assert workspace.warm is False and workspace.pk != member.pk
    assert workspace.status == WorkspaceStatus.RUNNING
    row = Workspace.all_objects.get(pk=member.pk)
    assert row.pooled is True and row.status != WorkspaceStatus.RUNNING


def test_pool_rows_stay_invisible_to_the_tenant(fill_pool, tenant, make_token):
    (member,) = fill_pool(1)
    api = client_for(make_token(tenant))
    assert api.get("/api/v1/workspaces").json()["items"] == []
    answer = api.get(f"/api/v1/workspaces/{member.public_id}")
    assert answer.status_code == 404 and answer.json()["code"] == "workspace_not_found"
    status = api.get("/api/v1/system/status").json()
    assert status["workspaces"] == {"total": 0}
    (pool,) = status["pool"]
    assert pool["node"] == NODE and pool["size"] == 1 and pool["ready"] == 1
    scraped = api.get("/metrics").content.decode()
    assert f'devbench_pool_ready{{node="{NODE}",tenant="{tenant.slug}"}} 1.0' in scraped
    assert f'devbench_pool_size{{node="{NODE}",tenant="{tenant.slug}"}} 1.0' in scraped
    assert f'devbench_pool_hits_total{{tenant="{tenant.slug}"}} 0.0' in scraped


def test_bad_input_and_an_empty_pool(fill_pool, actor, tenant, kill_after):
    from workspaces.errors import ImageNotAllowed

    fill_pool(1)
    policy_set(tenant, allowed_images=["devbench/busybox*"])
    with pytest.raises(ImageNotAllowed):
        workspace_spawn(actor=actor, image="devbench/base:latest")
    assert len(pool_members(tenant)) == 1  # refused before the pool was touched
    first = workspace_spawn(actor=actor, image=BUSYBOX)
    kill_after.append(first)
    _node_queue(consume=False)  # no refill: the pool stays empty
    try:
        second = workspace_spawn(actor=actor, image=BUSYBOX, wait=False)
    finally:
        _node_queue(consume=True)
    kill_after.append(second)
    assert first.warm is True and second.warm is False
    assert workspace_wait_running(workspace=second).status == WorkspaceStatus.RUNNING


def test_a_draining_node_gives_its_pool_back(fill_pool, tenant):
    from workspaces.models import Node
    from workspaces.nodes import node_set_drain

    members = fill_pool(2)
    node = Node.objects.get(name=NODE)
    node_set_drain(node=node, drain=True)
    try:
        report = pool_maintain(tenant_id=tenant.pk, node=NODE)
        assert sorted(report.retired) == sorted(m.public_id for m in members)
        assert report.wanted == 0 and report.created == [] and not pool_members(tenant)
    finally:
        node_set_drain(node=Node.objects.get(name=NODE), drain=False)
    report = pool_maintain(tenant_id=tenant.pk, node=NODE)
    assert len(report.created) == 2  # active again: the pool comes back
    wait_for(lambda: len(pool_members(tenant)) == 2, what="the pool back")


def test_the_status_filter_names_every_status() -> None:
    from typing import get_args

    from workspaces.schemas import WorkspaceStatusName

    assert set(get_args(WorkspaceStatusName)) == set(WorkspaceStatus.values)
