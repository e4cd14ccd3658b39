"""A snapshot travels through the registry: taken on one node, spawned on a second engine."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.environments.conftest import BUSYBOX, sh, spawn
from tests.nodes.cluster import Engine, NodeWorker
from tests.processes import TEST_INSTANCE
from workspaces.models import Node, Registry
from workspaces.nodes import node_set_drain
from workspaces.registries.services import registry_save
from workspaces.snapshots.services import snapshot_create

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
def second_node(django_db_setup: Any, django_db_blocker: Any) -> Iterator[NodeWorker]:
    """A second Docker engine with its own node worker (labelled pool=<session>-envb)."""
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


def test_snapshot_spawns_on_a_second_engine_through_the_registry(
    live_worker, actor, registry, second_node, settings, kill_after
):
    settings.DEVBENCH_SNAPSHOT_REGISTRY = registry.host
    registry_save(
        actor=None,
        registry=Registry(tenant=None, host=registry.host, username=registry.username),
        password=registry.password,
    )
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
