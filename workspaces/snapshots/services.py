"""Snapshot actions: capture, delete, fork. Every interface calls these.

A snapshot is captured on the node that holds the workspace, through the same
node routing as every other engine call (``node_driver``): the workspace is
paused while its /workspace is copied into a new image of the tenant's
namespace, then continues. Spawning from it (``workspace_spawn(snapshot=…)``)
mounts a fresh volume that the engine fills from that image, so the new
workspace starts with exactly the captured files and is independent of its
source.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import transaction

from core.errors import DevBenchError, ImageNotFound
from tenants.audit import audited
from tenants.models import TenantPolicy
from tenants.principal import Principal
from tenants.selectors import tenant_policy_get
from workspaces.errors import WorkspaceNotFound
from workspaces.models import Snapshot, SnapshotStatus, Workspace
from workspaces.nodes import node_driver
from workspaces.registries.services import (
    image_copies_remove,
    registry_image_delete,
    registry_image_on,
    registry_image_push,
    snapshot_registry,
)
from workspaces.runtime.base import (
    LABEL_INSTANCE,
    LABEL_SNAPSHOT,
    LABEL_TENANT,
    CaptureSpec,
    ImageInfo,
    PullReporter,
)
from workspaces.snapshots.errors import (
    SnapshotInUse,
    SnapshotInvalid,
    SnapshotNotFound,
    SnapshotQuotaExceeded,
    SnapshotStorageQuotaExceeded,
)
from workspaces.snapshots.selectors import snapshot_usage
from workspaces.source_deletion import source_deleting
from workspaces.spec import WORKSPACE_ROOT
from workspaces.suspend import workspace_ready

# Every snapshot image lives under this namespace; the image policy refuses it as an
# ``image`` (a snapshot is spawned by its id, which is looked up within the tenant).
SNAPSHOT_REPOSITORY_PREFIX = "devbench-snapshots/"
MAX_NAME_LENGTH = 100
MAX_DESCRIPTION_LENGTH = 2000


def snapshot_repository(tenant_slug: str) -> str:
    return f"{SNAPSHOT_REPOSITORY_PREFIX}{tenant_slug}"


def _validate(name: str, description: str) -> None:
    if not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise SnapshotInvalid(
            f"A snapshot name is 1-{MAX_NAME_LENGTH} characters.", extra={"field": "name"}
        )
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise SnapshotInvalid(
            f"A snapshot description is at most {MAX_DESCRIPTION_LENGTH} characters.",
            extra={"field": "description"},
        )


def _quota_check(policy: TenantPolicy, *, adding_bytes: int = 0, counting_new: bool) -> None:
    count, used = snapshot_usage(tenant_id=policy.tenant_id)
    if counting_new and count >= policy.max_snapshots:
        raise SnapshotQuotaExceeded(
            f"The tenant already has {count} snapshots, the most its policy allows; delete "
            "one first.",
            extra={"limit": "max_snapshots", "max": policy.max_snapshots, "count": count},
        )
    if used + adding_bytes > policy.max_snapshot_bytes or (
        counting_new and used >= policy.max_snapshot_bytes
    ):
        raise SnapshotStorageQuotaExceeded(
            f"The tenant's snapshots would use {used + adding_bytes} bytes; its policy allows "
            f"{policy.max_snapshot_bytes}. Delete snapshots first.",
            extra={
                "limit": "max_snapshot_bytes",
                "max": policy.max_snapshot_bytes,
                "used": used,
                "adding": adding_bytes,
            },
        )


def _own_workspace(actor: Principal, workspace: Workspace) -> None:
    if workspace.tenant_id != actor.tenant.pk:
        raise WorkspaceNotFound(workspace)


def snapshot_create(
    *, actor: Principal, workspace: Workspace, name: str = "", description: str = ""
) -> Snapshot:
    """Capture a running workspace's image and /workspace files as a new snapshot."""
    actor.require_scope("write")
    with audited(actor=actor, action="snapshot.create", target_type="snapshot") as audit:
        _own_workspace(actor, workspace)
        audit.details["workspace_id"] = workspace.public_id
        name = name or f"{workspace} snapshot"
        _validate(name, description)
        workspace_ready(workspace=workspace)
        policy = tenant_policy_get(tenant=actor.tenant)
        with transaction.atomic():
            locked = TenantPolicy.objects.select_for_update().get(pk=policy.pk)
            _quota_check(locked, counting_new=True)
            snapshot = Snapshot.objects.create(
                tenant=actor.tenant,
                name=name,
                description=description,
                source_workspace=workspace,
                source_workspace_public_id=workspace.public_id,
                base_image_ref=workspace.image_ref,
                node=workspace.node,
                created_by_id=actor.user_id,
            )
        audit.target_id = snapshot.public_id
        try:
            _capture(snapshot=snapshot, workspace=workspace)
            with transaction.atomic():
                locked = TenantPolicy.objects.select_for_update().get(pk=policy.pk)
                _quota_check(locked, adding_bytes=snapshot.size_bytes, counting_new=False)
                snapshot.status = SnapshotStatus.READY
                snapshot.save()
        except BaseException:
            _discard(snapshot)
            raise
        audit.details["size_bytes"] = snapshot.size_bytes
    return snapshot


def _capture(*, snapshot: Snapshot, workspace: Workspace) -> None:
    driver = node_driver(workspace.node)
    repository = snapshot_repository(workspace.tenant.slug)
    tag = snapshot.public_id
    info = driver.snapshot_capture(
        CaptureSpec(
            container_id=workspace.container_id,
            base_image=workspace.image_id or workspace.image_ref,
            path=WORKSPACE_ROOT,
            repository=repository,
            tag=tag,
            labels={
                LABEL_SNAPSHOT: snapshot.public_id,
                LABEL_TENANT: workspace.tenant.slug,
                LABEL_INSTANCE: settings.DEVBENCH_INSTANCE,
            },
        )
    )
    base = driver.image_inspect(workspace.image_id or workspace.image_ref)
    snapshot.image_ref = f"{repository}:{tag}"
    snapshot.image_id = info.id
    snapshot.size_bytes = max(0, info.size - base.size)
    host = snapshot_registry()
    if host:
        # Pushed from the node that holds it, so any node can pull it for a spawn.
        snapshot.registry_ref = registry_image_push(
            node=workspace.node, source=info.id, repository=repository, tag=tag, host=host
        )


def snapshot_image_on(
    *, snapshot: Snapshot, node: str, pull: bool = True, progress: PullReporter | None = None
) -> ImageInfo:
    """The snapshot's image on ``node``, pulled from the snapshot registry if it is not
    there yet (``pull=False``: PullNeeded instead)."""
    info = registry_image_on(
        node=node,
        image_id=snapshot.image_id,
        registry_ref=snapshot.registry_ref,
        pull=pull,
        progress=progress,
    )
    if info.labels.get(LABEL_SNAPSHOT) != snapshot.public_id:
        raise ImageNotFound(
            f"Snapshot '{snapshot.public_id}' has no image on node {node}.",
            image=snapshot.image_id,
        )
    return info


def _discard(snapshot: Snapshot) -> None:
    """Remove a snapshot that did not complete: its image (if made) and its row."""
    if snapshot.registry_ref:
        with contextlib.suppress(DevBenchError):
            registry_image_delete(registry_ref=snapshot.registry_ref)
    if snapshot.image_ref:
        # If this fails, garbage collection finds an image without a row later.
        with contextlib.suppress(DevBenchError):
            node_driver(snapshot.node).image_remove(snapshot.image_ref)
    Snapshot.objects.filter(pk=snapshot.pk).delete()


def snapshot_delete(*, actor: Principal, snapshot: Snapshot) -> None:
    """Delete a snapshot, its copy in the snapshot registry and its images on the nodes;
    refused while a live workspace was spawned from it. The registry copy goes first: if
    the registry refuses (``registry_*`` codes), nothing is deleted and the call can be
    repeated."""
    with source_deleting(
        actor=actor, source=snapshot, not_found=SnapshotNotFound, in_use=SnapshotInUse.spawned_from
    ) as (row, audit):
        if row.registry_ref:
            audit.details["registry_deleted"] = registry_image_delete(registry_ref=row.registry_ref)
            image_copies_remove(registry_ref=row.registry_ref, except_node=row.node)
        if row.image_ref:
            node_driver(row.node).image_remove(row.image_ref)


def workspace_fork(
    *,
    actor: Principal,
    workspace: Workspace,
    alias: str | None = None,
    name: str = "",
    persistent: bool = False,
    ttl_s: int | None = None,
    limits: Mapping[str, Any] | None = None,
    wait: bool = True,
) -> tuple[Workspace, Snapshot]:
    """Snapshot a workspace and spawn a copy of it in one call; the copy is independent
    (its own volume) and its changes never reach the source. The snapshot stays (listed,
    counted by the quota) until deleted, once the fork is gone."""
    from workspaces.services import workspace_spawn

    snapshot = snapshot_create(
        actor=actor,
        workspace=workspace,
        name=name or f"fork of {workspace}",
        description=f"Made by forking workspace {workspace.public_id}.",
    )
    forked = workspace_spawn(
        actor=actor,
        snapshot=snapshot.public_id,
        alias=alias,
        persistent=persistent,
        ttl_s=ttl_s,
        limits=limits if limits is not None else (workspace.limits or None),
        wait=wait,
    )
    return forked, snapshot
