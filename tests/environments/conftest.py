"""Helpers for snapshot and template tests: run commands in a workspace, list its files."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.environments.registry import RegistryProcess
from tests.mcp_live import (  # noqa: F401 - fixtures
    live_mcp,
    mcp_server_process,
    server_env,
    start_daphne,
)
from tests.workspaces.conftest import engine, kill_after, wait_for  # noqa: F401 - fixtures
from workspaces.models import Workspace
from workspaces.nodes import workspace_driver
from workspaces.runtime.base import ExecSpec

BASE = "devbench/base:latest"
BUSYBOX = "devbench/busybox:latest"

# Every path under /workspace with its kind, mode, owner, size and link target, then
# the sha256 of every regular file: two workspaces with the same files print the same.
MANIFEST = (
    "cd /workspace && find . -printf '%p|%y|%m|%U:%G|%s|%l\\n' | sort "
    "&& find . -type f -print0 | sort -z | xargs -0 -r sha256sum"
)


def sh(workspace: Workspace, script: str, *, timeout_s: float = 120) -> str:
    """Run a shell script as the workspace user; its stdout (raises on a non-zero exit)."""
    code, out, err = workspace_driver(workspace).exec_collect(
        workspace.container_id, ExecSpec(cmd=["/bin/sh", "-c", script]), timeout_s=timeout_s
    )
    assert code == 0, f"{script!r} exited {code}: {err.decode(errors='replace')}"
    return out.decode()


def manifest(workspace: Workspace) -> str:
    return sh(workspace, MANIFEST)


def spawn(actor: Any, made: list[Workspace], **kwargs: Any) -> Workspace:
    from workspaces.services import workspace_spawn

    workspace = workspace_spawn(actor=actor, **kwargs)
    made.append(workspace)
    return workspace


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryProcess]:
    """A registry with authentication (user ``pusher``) for the module's tests."""
    process = RegistryProcess(username="pusher", password="s3cret-" + "registry-pass")
    yield process
    process.stop()
