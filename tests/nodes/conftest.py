"""Fixtures of the multi-node tests: three engines, three node workers, an engine-less web tier.

Started once per module (a few seconds each) and torn down with it; rows are
made per test with ``transactional_db`` so every process sees them. The node
rows are re-registered by their workers' heartbeats after each test's flush.
The agent's own tests get the local engine and a container on it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings

from tests.nodes.agent_checks import TOKEN
from tests.nodes.cluster import DEAD_DOCKER_HOST, Engine, NodeWorker
from tests.processes import TEST_INSTANCE, DaphneServer
from workspaces.runtime.agent import AgentSocketServer, agent_serve_socket
from workspaces.runtime.base import LABEL_INSTANCE, ContainerSpec
from workspaces.runtime.docker import DockerDriver

POOL = {"pool": TEST_INSTANCE}  # only this session's test nodes carry it
# name -> (workspace capacity, labels besides the pool's)
NODES = {"n1": (14, "node=n1"), "n2": (10, "node=n2,disk=ssd"), "n3": (6, "node=n3,disk=ssd")}


# Callers on this host reach the other agents on their Unix sockets; this one's only
# over TLS, as a web tier on another host would.
TLS_ONLY_NODE = "n3"


def _node_env(name: str) -> dict[str, str]:
    capacity, labels = NODES[name]
    return {
        "DEVBENCH_NODE_MAX_WORKSPACES": str(capacity),
        "DEVBENCH_NODE_LABELS": f"pool={TEST_INSTANCE},{labels}",
        **({"DEVBENCH_NODE_AGENT_SOCKET_DIR": ""} if name == TLS_ONLY_NODE else {}),
    }


FAST_LIVENESS = {"DEVBENCH_NODE_HEARTBEAT_S": "1", "DEVBENCH_NODE_DOWN_AFTER_S": "4"}


@dataclass
class Cluster:
    engines: dict[str, Engine]
    workers: dict[str, NodeWorker]
    web: DaphneServer
    db_name: str

    def wait_nodes(self, names: Any = None, timeout_s: float = 30) -> None:
        """Until every (named) node's row is registered and active."""
        from workspaces.models import Node

        wanted = set(names or self.workers)
        deadline = time.monotonic() + timeout_s
        # Until every wanted name is there: other rows (another node) may be active too.
        while not wanted <= set(Node.objects.filter(state="active").values_list("name", flat=True)):
            assert time.monotonic() < deadline, "nodes did not register"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster(django_db_setup: Any, django_db_blocker: Any) -> Iterator[Cluster]:
    from django.conf import settings
    from django.db import connection

    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    saved = (settings.DEVBENCH_NODE_HEARTBEAT_S, settings.DEVBENCH_NODE_DOWN_AFTER_S)
    settings.DEVBENCH_NODE_DOWN_AFTER_S = int(FAST_LIVENESS["DEVBENCH_NODE_DOWN_AFTER_S"])
    engines: dict[str, Engine] = {}
    workers: dict[str, NodeWorker] = {}
    web = None
    try:
        for name in NODES:
            engines[name] = Engine(name)
            workers[name] = NodeWorker(
                db_name, node=name, engine=engines[name], env={**_node_env(name), **FAST_LIVENESS}
            )
        web = DaphneServer(
            db_name,
            name="engineless",
            extra_env={
                "DEVBENCH_ENGINE_DIRECT": "false",
                "DOCKER_HOST": DEAD_DOCKER_HOST,
                "DEVBENCH_NODE": "web",
                **FAST_LIVENESS,
            },
        )
        yield Cluster(engines=engines, workers=workers, web=web, db_name=db_name)
    finally:
        if web is not None:
            web.stop()
        for worker in workers.values():
            worker.stop()
        for engine in engines.values():
            engine.destroy()
        with django_db_blocker.unblock():  # a last heartbeat may have registered them again
            from workspaces.models import Node

            Node.objects.filter(name__in=list(NODES)).delete()
        settings.DEVBENCH_NODE_HEARTBEAT_S, settings.DEVBENCH_NODE_DOWN_AFTER_S = saved


@pytest.fixture
def live_cluster(cluster: Cluster, transactional_db: Any) -> Cluster:
    cluster.wait_nodes()
    return cluster


@pytest.fixture
def rest(live_cluster: Cluster, tenant: Any, make_token: Callable[..., Any]) -> Iterator[Any]:
    """An HTTP client of the web tier with an admin token of ``tenant`` (policy: test nodes)."""
    from tenants.selectors import tenant_policy_get

    policy = tenant_policy_get(tenant=tenant)
    policy.node_labels = dict(POOL)
    policy.max_workspaces = 40
    policy.save()
    token = make_token(tenant, scopes=("read", "write", "admin"))
    with httpx.Client(
        base_url=live_cluster.web.base_url + "/api/v1",
        headers={"Authorization": f"Bearer {token.raw}"},
        timeout=120,
    ) as client:
        client.token = token  # type: ignore[attr-defined]
        yield client


@pytest.fixture(scope="module")
def engine() -> DockerDriver:
    return DockerDriver(base_url=settings.DEVBENCH_DOCKER_HOST, timeout_s=30)


@pytest.fixture
def socket_agent(engine: DockerDriver, tmp_path: Path) -> Iterator[AgentSocketServer]:
    server = agent_serve_socket(directory=str(tmp_path / "sockets"), driver=engine, token=TOKEN)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def container(engine: DockerDriver) -> Iterator[str]:
    """A running busybox the agent's calls work on."""
    info = engine.create(
        ContainerSpec(
            image="devbench/busybox:latest",
            name=f"agent-{uuid.uuid4().hex[:8]}",
            labels={LABEL_INSTANCE: settings.DEVBENCH_INSTANCE},
            entrypoint=["/bin/sh"],
            command=["-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
            read_only_rootfs=False,  # archives go into /tmp (the engine cannot write a tmpfs)
            tmpfs={},
        )
    )
    engine.start(info.id)
    yield info.id
    engine.remove(info.id)
