"""Helpers for workspace tests: a raw engine client (to act as the outside world)."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import docker
import pytest

from tests.processes import wait_for
from workspaces.models import Workspace


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
