"""Workspace actions. Every interface (REST, MCP, web, tasks) calls these."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from devbench_site.errors import DevBenchError, ValidationFailed
from tenants.audit import audited
from tenants.principal import Principal
from tenants.selectors import tenant_policy_get
from workspaces.models import ALIAS_VALIDATOR, Workspace, WorkspaceStatus
from workspaces.runtime import get_driver
from workspaces.spec import container_spec, engine_name, workspace_labels


def _validate_alias(alias: str | None) -> None:
    if alias is None:
        return
    try:
        ALIAS_VALIDATOR(alias)
    except Exception as exc:
        raise ValidationFailed(str(ALIAS_VALIDATOR.message), code="invalid_alias") from exc


def workspace_spawn(
    *,
    actor: Principal,
    image: str | None = None,
    alias: str | None = None,
    persistent: bool = False,
    ttl_s: int | None = None,
    idempotency_key: str | None = None,
    wait: bool = True,
) -> Workspace:
    """Create a workspace row and its container."""
    actor.require_scope("write")
    with audited(actor=actor, action="workspace.spawn", target_type="workspace") as audit:
        _validate_alias(alias)
        policy = tenant_policy_get(tenant=actor.tenant)
        ttl = None if persistent else (ttl_s or policy.default_ttl_s)
        workspace = Workspace.objects.create(
            tenant=actor.tenant,
            alias=alias,
            image_ref=image or policy.default_image,
            persistent=persistent,
            ttl_s=ttl,
            expires_at=timezone.now() + timedelta(seconds=ttl) if ttl else None,
            idempotency_key=idempotency_key,
            created_by_id=actor.user_id,
        )
        audit.target_id = workspace.public_id
        workspace_provision(workspace=workspace)
    return workspace


def workspace_provision(*, workspace: Workspace) -> Workspace:
    """Engine work of a spawn: volume, container, start. Marks the row running or error."""
    driver = get_driver()
    policy = tenant_policy_get(tenant=workspace.tenant)
    try:
        image = driver.image_inspect(workspace.image_ref)
        workspace.image_id = image.id
        workspace.volume_name = workspace.volume_name or f"{engine_name(workspace)}-data"
        driver.volume_create(workspace.volume_name, workspace_labels(workspace))
        info = driver.create(container_spec(workspace, policy))
        workspace.container_id = info.id
        driver.start(info.id)
    except DevBenchError as exc:
        workspace.status = WorkspaceStatus.ERROR
        workspace.status_message = f"{exc.code}: {exc.message}"
        workspace.save()
        raise
    workspace.status = WorkspaceStatus.RUNNING
    workspace.status_message = ""
    workspace.save()
    return workspace


def workspace_kill(
    *,
    actor: Principal,
    workspace: Workspace,
    force: bool = False,
    remove_volume: bool | None = None,
) -> Workspace:
    """Stop and remove the container; a persistent workspace keeps its volume unless asked."""
    actor.require_scope("write")
    with audited(
        actor=actor, action="workspace.kill", target_type="workspace", target_id=workspace.public_id
    ):
        with transaction.atomic():
            workspace.status = WorkspaceStatus.REMOVING
            workspace.save(update_fields=["status", "updated_at"])
        driver = get_driver()
        if workspace.container_id:
            if not force:
                driver.stop(workspace.container_id, timeout_s=10)
            driver.remove(workspace.container_id, force=True)
        drop_volume = (not workspace.persistent) if remove_volume is None else remove_volume
        if drop_volume and workspace.volume_name:
            driver.volume_remove(workspace.volume_name)
        workspace.status = WorkspaceStatus.REMOVED
        workspace.save(update_fields=["status", "updated_at"])
    return workspace
