"""A node worker that stops cleanly signs its node off: nothing new is placed there
from that moment, and the next check marks the node down (its return is the usual
one: it registers again).

The worker's real start and stop in this process: its agents (TCP and Unix socket) on
the local engine, its registration and heartbeat rows in the database.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from workspaces import node_worker, nodes
from workspaces.models import Node, NodeState
from workspaces.placement import MIB, CapacityExhausted, node_alive, node_place

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker_settings(settings: Any, tmp_path: Path) -> Any:
    settings.DEVBENCH_ENGINE_DIRECT = False  # only the node started here counts
    settings.DEVBENCH_NODE_AGENT_TLS = False
    settings.DEVBENCH_NODE_AGENT_BIND = "127.0.0.1:0"
    settings.DEVBENCH_NODE_AGENT_URL = ""
    settings.DEVBENCH_NODE_AGENT_SOCKET_DIR = str(tmp_path / "agent-sockets")
    settings.DEVBENCH_NODE_LABELS = ""
    return settings


def _place(zone: str) -> str:
    return node_place(labels={"zone": zone}, memory_bytes=512 * MIB, cpus=1).name


def test_a_worker_that_stops_signs_its_node_off(worker_settings: Any) -> None:
    name = f"sign-off-{uuid.uuid4().hex[:8]}"
    zone = name  # a label only this node carries: rows other tests left behind never match
    node_worker.node_worker_start(names=[name], on_return=lambda _: None)
    heartbeat = node_worker._state["heartbeat"]
    try:
        Node.objects.filter(name=name).update(labels={"zone": zone})
        assert _place(zone) == name
    finally:
        node_worker.node_worker_stop()
    assert isinstance(heartbeat, threading.Thread) and not heartbeat.is_alive()  # no late beat
    node = Node.objects.get(name=name)
    assert not nodes.node_is_local(name)  # this process no longer serves it
    assert not node_alive(node)
    with pytest.raises(CapacityExhausted):
        _place(zone)  # nothing new goes to a node nobody serves
    assert name in nodes.nodes_check()
    node.refresh_from_db()
    assert node.state == NodeState.DOWN

    node_worker.node_worker_start(names=[name], on_return=lambda _: None)  # it comes back
    try:
        assert _place(zone) == name
        assert Node.objects.get(name=name).state == NodeState.ACTIVE
    finally:
        node_worker.node_worker_stop()


def test_a_sign_off_leaves_a_node_another_worker_took_over(worker_settings: Any) -> None:
    name = f"taken-{uuid.uuid4().hex[:8]}"
    nodes.node_register(name=name, agent_url="http://127.0.0.1:9", agent_token="newer")
    assert not nodes.node_sign_off(name=name, agent_token="older")
    node = Node.objects.get(name=name)
    assert node_alive(node) and node.state == NodeState.ACTIVE
    assert nodes.node_sign_off(name=name, agent_token="newer")
    assert not node_alive(Node.objects.get(name=name))
