"""One running workspace per test module (the tests here use separate directories in it)."""

from __future__ import annotations

import io
import tarfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from tenants.principal import Principal
from tests.module_workspace import module_workspace
from tests.nodes.agent_checks import TOKEN
from workspaces.models import Workspace
from workspaces.runtime import get_driver
from workspaces.runtime.agent import agent_serve_socket
from workspaces.runtime.docker import DockerDriver
from workspaces.runtime.remote import RemoteDriver


def one_file_tar(name: str, data: bytes) -> bytes:
    """A tar of one regular file ``name`` holding ``data``, owned by the workspace user."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.uid, info.gid = len(data), 1000, 1000
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class FsEnv:
    tenant: Any
    actor: Principal
    workspace: Workspace

    def sh(self, *argv: str, user: str = "1000:1000") -> tuple[int, bytes]:
        """Run a command inside the workspace container, as the workspace user by default."""
        container = docker.from_env().containers.get(self.workspace.container_id)
        result = container.exec_run(list(argv), user=user)
        return result.exit_code, result.output

    def must(self, *argv: str) -> bytes:
        code, output = self.sh(*argv)
        assert code == 0, output
        return output


@pytest.fixture(scope="module")
def fs_env(
    django_db_setup: Any, django_db_blocker: Any, celery_worker_process: Any
) -> Iterator[FsEnv]:
    with module_workspace(django_db_blocker) as (tenant, actor, workspace):
        yield FsEnv(tenant=tenant, actor=actor, workspace=workspace)


@pytest.fixture
def env(fs_env: FsEnv, db: Any) -> FsEnv:
    fs_env.workspace.refresh_from_db()
    return fs_env


@pytest.fixture
def wdir(env: FsEnv) -> str:
    """A fresh directory of this test inside the shared workspace."""
    path = f"/workspace/t-{uuid.uuid4().hex[:10]}"
    env.must("mkdir", path)
    return path


@pytest.fixture
def sh(env: FsEnv) -> Callable[..., tuple[int, bytes]]:
    return env.sh


@pytest.fixture
def agent_remote(tmp_path: Path) -> Iterator[RemoteDriver]:
    """A node agent on this engine, served on a Unix socket, and the driver that calls it
    (what a web process without an engine uses)."""
    driver = get_driver()
    assert isinstance(driver, DockerDriver)
    server = agent_serve_socket(directory=str(tmp_path / "sockets"), driver=driver, token=TOKEN)
    yield RemoteDriver(
        node="fs-node", url="http://127.0.0.1:9", token=TOKEN, socket_path=server.path
    )
    server.shutdown()
    server.server_close()
