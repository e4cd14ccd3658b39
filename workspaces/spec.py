"""How a workspace becomes a container: the security defaults of DESIGN.md."""

from __future__ import annotations

from django.conf import settings

from tenants.models import TenantPolicy
from workspaces.models import Workspace
from workspaces.runtime.base import (
    LABEL_INSTANCE,
    LABEL_TENANT,
    LABEL_WORKSPACE,
    WORKSPACE_USER,
    ContainerSpec,
    VolumeMount,
)

WORKSPACE_ROOT = "/workspace"
# The platform chooses the main process so any image works whatever its CMD:
# docker-init (PID 1) reaps, this shell idles and exits cleanly on SIGTERM.
KEEPER = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]


def workspace_labels(workspace: Workspace) -> dict[str, str]:
    return {
        LABEL_WORKSPACE: workspace.public_id,
        LABEL_TENANT: workspace.tenant.slug,
        LABEL_INSTANCE: settings.DEVBENCH_INSTANCE,
    }


def engine_name(workspace: Workspace) -> str:
    return f"devbench-{settings.DEVBENCH_INSTANCE}-{workspace.public_id}"


def container_spec(workspace: Workspace, policy: TenantPolicy) -> ContainerSpec:
    limits = workspace.limits or {}
    memory_mb = int(limits.get("memory_mb", policy.memory_limit_mb))
    cpus = float(limits.get("cpus", policy.cpu_limit))
    return ContainerSpec(
        image=workspace.image_id or workspace.image_ref,
        name=engine_name(workspace),
        labels=workspace_labels(workspace),
        entrypoint=KEEPER[:1],
        command=KEEPER[1:],
        user=WORKSPACE_USER,
        working_dir=WORKSPACE_ROOT,
        mounts=(
            VolumeMount(
                source=workspace.volume_name,
                target=WORKSPACE_ROOT,
                volume_labels=workspace_labels(workspace),
            ),
        ),
        memory_bytes=memory_mb * 1024 * 1024,
        nano_cpus=int(cpus * 1_000_000_000),
        pids_limit=int(limits.get("pids", policy.pids_limit)),
        network_mode=policy.network_mode,
        restart_policy="unless-stopped" if workspace.persistent else None,
        runtime=policy.runtime or settings.DEVBENCH_CONTAINER_RUNTIME or None,
    )
