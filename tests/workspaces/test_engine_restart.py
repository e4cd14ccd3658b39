"""A real Docker engine restart, on a private engine so nothing else on the host restarts.

The test starts its own dockerd (own data root, exec root and socket), points a
new worker and this process at it on their own node (``node.engine2``), and
restarts that engine with the workspaces in it.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tenants.principal import system_principal
from tests.processes import wait_for
from workspaces import reconcile
from workspaces.images import image_forget, image_reference_parse
from workspaces.models import WorkspaceStatus
from workspaces.runtime import get_driver
from workspaces.runtime.docker.client import forget_clients
from workspaces.selectors import workspace_require_running
from workspaces.services import workspace_kill, workspace_spawn

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.slow]

BUSYBOX = "devbench/busybox:latest"


class PrivateEngine:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="devbench-engine-"))
        self.socket = self.root / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.root / "dockerd.log").open("ab")
        self.proc = subprocess.Popen(
            [
                "dockerd",
                f"--data-root={self.root / 'data'}",
                f"--exec-root={self.root / 'exec'}",
                f"--pidfile={self.root / 'dockerd.pid'}",
                f"--host={self.url}",
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._answers, timeout_s=60, what="the private dockerd")

    def _answers(self) -> bool:
        try:
            return bool(docker.DockerClient(base_url=self.url, timeout=5).ping())
        except docker.errors.DockerException:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # a clean engine shutdown stops containers
            self.proc.wait(60)

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=30)


@pytest.fixture
def private_engine() -> Iterator[PrivateEngine]:
    if shutil.which("dockerd") is None:
        raise RuntimeError("dockerd is not installed: run scripts/host-setup")
    engine = PrivateEngine()
    engine.start()
    image = subprocess.run(["docker", "save", BUSYBOX], capture_output=True, check=True).stdout
    engine.client().images.load(image)
    yield engine
    for container in engine.client().containers.list(all=True):
        container.remove(force=True)
    engine.stop()
    subprocess.run(["umount", "-R", str(engine.root)], capture_output=True)
    shutil.rmtree(engine.root, ignore_errors=True)


def test_persistent_workspace_survives_an_engine_restart(
    live_worker, start_worker, private_engine, settings, monkeypatch, tenant
):
    monkeypatch.setenv("DOCKER_HOST", private_engine.url)
    monkeypatch.setenv("DEVBENCH_NODE", "engine2")
    monkeypatch.setenv("DEVBENCH_NODE_LABELS", "engine=private")  # placed there, not on local
    settings.DEVBENCH_DOCKER_HOST = private_engine.url
    settings.DEVBENCH_NODE = "engine2"
    get_driver.cache_clear()
    image_forget(image_reference_parse(BUSYBOX))
    try:
        start_worker("engine2")  # serves node.engine2 against the private engine
        actor = system_principal(tenant)
        on_engine2 = {"engine": "private"}
        persistent = workspace_spawn(
            actor=actor, image=BUSYBOX, persistent=True, node_labels=on_engine2
        )
        ephemeral = workspace_spawn(actor=actor, image=BUSYBOX, node_labels=on_engine2)
        client = private_engine.client()
        wrote = client.containers.get(persistent.container_id).exec_run(
            ["/bin/sh", "-c", "echo through-the-restart > /workspace/keep.txt"]
        )
        assert wrote.exit_code == 0

        private_engine.stop()
        forget_clients()
        private_engine.start()
        client = private_engine.client()

        container = client.containers.get(persistent.container_id)
        wait_for(lambda: container.reload() or container.status == "running", what="restart")
        kept = container.exec_run(["cat", "/workspace/keep.txt"])
        assert kept.output.decode().strip() == "through-the-restart"
        assert client.containers.get(ephemeral.container_id).status == "exited"

        actions = {
            (a.workspace_id, a.action) for a in reconcile.reconcile_node(node="engine2").actions
        }
        assert actions == {(ephemeral.public_id, "marked_stopped")}
        persistent.refresh_from_db()
        assert persistent.status == WorkspaceStatus.RUNNING
        workspace_require_running(workspace=persistent)

        for workspace in (persistent, ephemeral):
            workspace.refresh_from_db()
            workspace_kill(actor=actor, workspace=workspace, force=True, remove_volume=True)
        assert client.containers.list(all=True) == []
    finally:
        get_driver.cache_clear()
        forget_clients()
