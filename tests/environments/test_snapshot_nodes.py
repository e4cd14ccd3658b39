"""A snapshot travels through the registry: taken on one node, spawned on a second engine."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from core.errors import ImageNotFound
from tenants.models import AuditEvent, TenantPolicy
from tests.environments.conftest import BUSYBOX, sh, spawn
from tests.environments.registry import RegistryProcess
from tests.nodes.cluster import Engine, NodeWorker
from tests.processes import TEST_INSTANCE
from workspaces.environment_templates.services import template_create, template_delete
from workspaces.models import Node, Registry, Template
from workspaces.nodes import node_driver, node_set_drain
from workspaces.registries.errors import RegistryDeleteFailed
from workspaces.registries.services import registry_save
from workspaces.runtime import get_driver
from workspaces.services import workspace_kill
from workspaces.snapshots.services import snapshot_create, snapshot_delete

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.slow]

NODE = "envb"
POOL = f"{TEST_INSTANCE}-{NODE}"
# busybox has no GNU find: stat each path (no sizes: directory sizes depend on the
# filesystem), then hash every regular file.
MANIFEST = (
    "cd /workspace && find . -exec stat -c '%n|%F|%a|%u:%g|%N' {} + | sort "
    "&& find . -type f -exec sha256sum {} + | sort"
)
POPULATE = (
    "cd /workspace && head -c 5000000 /dev/urandom > big && mkdir -p empty/deeper "
    "&& echo x > m && chmod 751 m && ln -s m link && ln -s /nowhere dangling"
)


@pytest.fixture(scope="module")
def second_node(
    django_db_setup: Any, django_db_blocker: Any, registry: RegistryProcess
) -> Iterator[NodeWorker]:
    """A second Docker engine with its own node worker (labelled pool=<session>-envb) that
    pushes the templates it builds to the module's registry."""
    from django.db import connection

    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    engine = Engine(NODE)
    worker = None
    try:
        worker = NodeWorker(
            db_name,
            node=NODE,
            engine=engine,
            env={
                "DEVBENCH_NODE_LABELS": f"pool={POOL}",
                "DEVBENCH_NODE_HEARTBEAT_S": "1",
                "DEVBENCH_TEMPLATE_REGISTRY": registry.host,
            },
        )
        yield worker
    finally:
        if worker is not None:
            worker.stop()
        engine.destroy()
        with django_db_blocker.unblock():  # a last heartbeat may have registered it again
            Node.objects.filter(name=NODE).delete()


def _wait_registered(name: str) -> Node:
    deadline = time.monotonic() + 30
    while (node := Node.objects.filter(name=name, state="active").first()) is None:
        assert time.monotonic() < deadline, f"node {name} did not register"
        time.sleep(0.2)
    return node


def _installation_credentials(registry: RegistryProcess) -> None:
    registry_save(
        actor=None,
        registry=Registry(tenant=None, host=registry.host, username=registry.username),
        password=registry.password,
    )


def test_snapshot_spawns_on_a_second_engine_through_the_registry(
    live_worker, actor, registry, second_node, settings, kill_after
):
    settings.DEVBENCH_SNAPSHOT_REGISTRY = registry.host
    _installation_credentials(registry)
    remote = _wait_registered(NODE)
    node_set_drain(node=remote, drain=True)  # the source goes to this process's node
    try:
        source = spawn(actor, kill_after, image=BUSYBOX)
    finally:
        node_set_drain(node=remote, drain=False)
    assert source.node != NODE
    sh(source, POPULATE)
    before = sh(source, MANIFEST)

    snapshot = snapshot_create(actor=actor, workspace=source, name="travels")
    assert snapshot.registry_ref.startswith(f"{registry.host}/devbench-snapshots/")
    assert "@sha256:" in snapshot.registry_ref

    copy = spawn(actor, kill_after, snapshot=snapshot.public_id, node_labels={"pool": POOL})
    assert copy.node == NODE
    assert sh(copy, MANIFEST) == before
    sh(copy, "echo changed > /workspace/m")
    assert sh(source, "cat /workspace/m") == "x\n"

    # Deleting the snapshot deletes its registry copy and the copy the second node pulled.
    workspace_kill(actor=actor, workspace=copy)
    snapshot_delete(actor=actor, snapshot=snapshot)
    assert not registry.manifest_exists(snapshot.registry_ref)
    assert not second_node_has(snapshot.image_id)


def second_node_has(image_id: str) -> bool:
    try:
        node_driver(NODE).image_inspect(image_id)
    except ImageNotFound:
        return False
    return True


BUILT = """\
FROM devbench/busybox:latest
RUN mkdir -p /opt && echo built-on-envb > /opt/answer
"""


def _wait_built(template: Template) -> Template:
    deadline = time.monotonic() + 300
    while (row := Template.objects.get(pk=template.pk)).status == "building":
        assert time.monotonic() < deadline, row.build_log
        time.sleep(0.3)
    assert row.status == "ready", (row.error_code, row.status_message, row.build_log)
    return row


def test_template_built_on_one_node_spawns_on_another_through_the_registry(
    live_worker, actor, tenant, registry, second_node, kill_after
):
    _installation_credentials(registry)
    _wait_registered(NODE)
    # Built on the second node (the policy's labels send it there), which pushes it.
    TenantPolicy.objects.filter(tenant=tenant).update(node_labels={"pool": POOL})
    template = _wait_built(template_create(actor=actor, name="travelling", dockerfile=BUILT))
    assert template.node == NODE
    assert template.registry_ref.startswith(f"{registry.host}/devbench-templates/")
    assert registry.manifest_exists(template.registry_ref)
    assert "Pushed " + template.registry_ref in template.build_log
    with pytest.raises(ImageNotFound):  # never built here
        get_driver().image_inspect(template.image_id)

    # Spawned on this process's node: its worker pulls it from the registry.
    TenantPolicy.objects.filter(tenant=tenant).update(node_labels={})
    node_set_drain(node=Node.objects.get(name=NODE), drain=True)
    try:
        workspace = spawn(actor, kill_after, template="travelling")
    finally:
        node_set_drain(node=Node.objects.get(name=NODE), drain=False)
    assert workspace.node != NODE and workspace.image_id == template.image_id
    assert workspace.progress == {}
    assert sh(workspace, "cat /opt/answer") == "built-on-envb\n"

    # Deleting the template deletes its registry copy and the copy this node pulled.
    workspace_kill(actor=actor, workspace=workspace)
    template_delete(actor=actor, template=template)
    assert not registry.manifest_exists(template.registry_ref)
    with pytest.raises(ImageNotFound):
        get_driver().image_inspect(template.image_id)
    assert not second_node_has(template.image_id)


def test_a_registry_that_refuses_deletes_is_reported_and_nothing_is_lost(
    live_worker, actor, settings, kill_after
):
    keeping = RegistryProcess(username="pusher", password="keep-" + "pass", delete=False)
    try:
        settings.DEVBENCH_SNAPSHOT_REGISTRY = keeping.host
        _installation_credentials(keeping)
        source = spawn(actor, kill_after, image=BUSYBOX)
        snapshot = snapshot_create(actor=actor, workspace=source, name="kept")
        with pytest.raises(RegistryDeleteFailed) as refused:
            snapshot_delete(actor=actor, snapshot=snapshot)
        assert refused.value.code == "registry_delete_failed"
        assert "storage.delete.enabled" in refused.value.message
        assert "keep-pass" not in refused.value.message
        # Nothing was deleted: the row, its image and its registry copy are all still there.
        snapshot.refresh_from_db()
        assert keeping.manifest_exists(snapshot.registry_ref)
        holder = node_driver(snapshot.node)
        assert holder.image_inspect(snapshot.image_id).id == snapshot.image_id
        audit = AuditEvent.objects.filter(action="snapshot.delete").latest("pk")
        assert audit.outcome == "error" and audit.error_code == "registry_delete_failed"
        holder.image_remove(snapshot.image_ref)
    finally:
        keeping.stop()
