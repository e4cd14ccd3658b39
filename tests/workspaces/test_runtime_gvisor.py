"""A tenant whose policy picks gVisor: its workspaces run on gVisor's kernel, not the host's.

The engine has the runtime "runsc" (scripts/runsc-setup, run by scripts/host-setup).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from execution.models import Exec
from execution.services import exec_run
from tenants.models import TenantPolicy
from tests.execution.helpers import leftovers
from workspaces.filesystem.services import fs_write
from workspaces.runtime import get_driver
from workspaces.runtime.docker import DockerDriver
from workspaces.runtime.docker.rootfs import AskEngine
from workspaces.services import workspace_kill, workspace_spawn

pytestmark = [pytest.mark.docker, pytest.mark.integration]


def test_a_gvisor_workspace_sees_gvisors_kernel(live_worker: Any, actor: Any, tenant: Any) -> None:
    TenantPolicy.objects.filter(tenant=tenant).update(runtime="runsc")
    workspace = workspace_spawn(actor=actor, image="devbench/busybox:latest", wait=True)
    try:
        host = get_driver().inspect(workspace.container_id).raw["HostConfig"]
        assert host["Runtime"] == "runsc"
        assert host["CgroupnsMode"] == "private" and host["CapDrop"] == ["ALL"]
        # Its files are in gVisor's sandbox, not below its process's root: the engine stats.
        driver = get_driver()
        assert isinstance(driver, DockerDriver)
        with pytest.raises(AskEngine):
            driver.roots.path_stat(workspace.container_id, "/workspace")

        def run(script: str, **kw: Any) -> Any:
            return exec_run(actor=actor, workspace=workspace, cmd=["sh", "-c", script], **kw)

        kernel = run("uname -r")
        assert kernel.status == "completed"
        assert kernel.stdout.strip() != os.uname().release
        # gVisor's sandbox is not runc's: the engine runs its execs.
        assert not Exec.objects.get(public_id=kernel.exec_id).engine_exec_id.startswith("runc-")
        assert "gVisor" in run("dmesg").stdout
        # The platform's operations work there too: files, and killing escaped processes.
        fs_write(actor=actor, workspace=workspace, path="/workspace/hello.txt", content=b"hi\n")
        assert run("cat /workspace/hello.txt").stdout == "hi\n"
        timed_out = run("env -i setsid sleep 4242 & sleep 4243", timeout_s=3)
        assert timed_out.status == "timed_out"
        assert leftovers(workspace, "sleep 424") == []
    finally:
        workspace_kill(actor=actor, workspace=workspace, force=True)


def test_the_default_runtime_is_the_engines(live_worker: Any, actor: Any, tenant: Any) -> None:
    workspace = workspace_spawn(actor=actor, image="devbench/busybox:latest", wait=True)
    try:
        host = get_driver().inspect(workspace.container_id).raw["HostConfig"]
        assert host["Runtime"] == "runc"
        kernel = exec_run(actor=actor, workspace=workspace, cmd=["uname", "-r"])
        assert kernel.stdout.strip() == os.uname().release
        assert Exec.objects.get(public_id=kernel.exec_id).engine_exec_id.startswith("runc-")
    finally:
        workspace_kill(actor=actor, workspace=workspace, force=True)
