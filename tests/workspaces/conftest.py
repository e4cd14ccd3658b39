"""Helpers for workspace tests: a raw engine client (to act as the outside world)."""

from __future__ import annotations

import contextlib
import functools
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest
from django.conf import settings

from tests.processes import wait_for
from workspaces.models import Workspace
from workspaces.runtime.base import LABEL_INSTANCE, ContainerSpec
from workspaces.runtime.docker import DockerDriver


@pytest.fixture(scope="session")
def engine() -> docker.DockerClient:
    """docker-py, for what the platform does not offer yet (exec) or must not (sabotage)."""
    return docker.from_env()


def status_of(workspace: Workspace) -> str:
    return Workspace.objects.values_list("status", flat=True).get(pk=workspace.pk)


@pytest.fixture
def kill_after() -> Iterator[list[Workspace]]:
    """Workspaces appended here are force-killed at teardown, whatever the test did."""
    from tenants.principal import system_principal
    from workspaces.services import workspace_kill

    made: list[Workspace] = []
    yield made
    for workspace in made:
        workspace.refresh_from_db()
        if workspace.status == "creating":
            wait_for(functools.partial(_settled, workspace), what="spawn to settle")
            workspace.refresh_from_db()
        if workspace.status != "removed":
            actor = system_principal(workspace.tenant)
            workspace_kill(actor=actor, workspace=workspace, force=True, remove_volume=True)


def _settled(workspace: Workspace) -> bool:
    return status_of(workspace) != "creating"


@contextlib.contextmanager
def idle_busybox(driver: DockerDriver, prefix: str) -> Iterator[str]:
    """A running busybox doing nothing, with a writable root (the archive API does not
    see a tmpfs): the id, removed after."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    info = driver.create(
        ContainerSpec(
            image="devbench/busybox:latest",
            name=name,
            labels={LABEL_INSTANCE: settings.DEVBENCH_INSTANCE, "devbench.test": name},
            entrypoint=["/bin/sh"],
            command=["-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
            read_only_rootfs=False,
            tmpfs={},
        )
    )
    driver.start(info.id)
    try:
        yield info.id
    finally:
        driver.remove(info.id)


@contextlib.contextmanager
def unix_connects() -> Iterator[list[str]]:
    """The Unix sockets connected to meanwhile (this process, every thread)."""
    opened: list[str] = []
    real_connect = socket.socket.connect

    def counting(self: socket.socket, address: Any) -> None:
        if self.family == socket.AF_UNIX:
            opened.append(str(address))
        real_connect(self, address)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", counting)
        yield opened
