"""Workspace actions. Every interface (REST, MCP, web, tasks) calls these.

A spawn writes the row (``creating``) in the request and hands the engine work
to a Celery task on the workspace's node queue (``node.<node>``), queued when
the transaction commits. ``wait=True`` then watches the row until the worker
has brought the workspace up, so it works whichever process runs the task.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core import metrics
from core.errors import (
    DevBenchError,
    IdempotencyKeyReused,
    InvalidIdempotencyKey,
    StoredError,
    error_rebuilt,
)
from core.idempotency import idempotent_replay, key_window
from execution import notify
from tenants.audit import AuditScope, audited
from tenants.models import TenantPolicy
from tenants.principal import Principal
from tenants.selectors import tenant_policy_get
from usage.services import usage_run_sync
from workspaces.admission import workspace_admit
from workspaces.environment_templates.selectors import template_for_spawn
from workspaces.errors import (
    AliasInUse,
    ImageAndSnapshot,
    ImageAndTemplate,
    InvalidAlias,
    SpawnTimeout,
    WorkspaceNotStopped,
)
from workspaces.images import (
    PullNeeded,
    image_allowed,
    image_reference_parse,
)
from workspaces.models import (
    ALIAS_VALIDATOR,
    Attachment,
    Node,
    Snapshot,
    Template,
    Workspace,
    WorkspaceStatus,
)
from workspaces.nodes import workspace_driver
from workspaces.placement import (
    CapacityExhausted,
    limits_reservation,
    node_has_room,
    node_place,
    required_labels,
)
from workspaces.policy import limits_resolve, ttl_resolve
from workspaces.pool import pool_claim, pool_serves
from workspaces.provisioning import (
    workspace_changed,
    workspace_group,
    workspace_provision_enqueue,
    workspace_teardown,
)
from workspaces.provisioning import workspace_provision as workspace_provision  # re-export
from workspaces.runtime.base import ContainerStats, PullProgress
from workspaces.selectors import workspace_get, workspace_require_own, workspace_require_running
from workspaces.snapshots.selectors import snapshot_get_ready
from workspaces.sources import pulling, workspace_image_id
from workspaces.spec import WORKSPACE_ROOT, engine_name
from workspaces.suspend import workspace_pause as workspace_pause  # re-export
from workspaces.suspend import workspace_ready
from workspaces.suspend import workspace_resume as workspace_resume  # re-export

MAX_IDEMPOTENCY_KEY_LENGTH = 200


def _validate_alias(alias: str | None) -> None:
    if alias is None:
        return
    try:
        ALIAS_VALIDATOR(alias)
    except Exception as exc:
        raise InvalidAlias(str(ALIAS_VALIDATOR.message)) from exc
    if alias.startswith("ws_"):
        raise InvalidAlias("An alias may not start with 'ws_': that prefix names workspace ids.")


def _validate_idempotency_key(key: str | None) -> None:
    if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH):
        raise InvalidIdempotencyKey(
            f"An idempotency key is 1-{MAX_IDEMPOTENCY_KEY_LENGTH} characters."
        )


def _idempotent_replay(*, actor: Principal, key: str | None) -> Workspace | None:
    """The workspace an unexpired idempotency key already made, if any."""
    return idempotent_replay(
        Workspace.objects.select_related("tenant").filter(tenant=actor.tenant),
        key=key,
        expires_at=lambda workspace: workspace.idempotency_expires_at,
    )


def _check_replay(
    workspace: Workspace, *, image_ref: str, alias: str | None, persistent: bool
) -> None:
    asked = {"image": image_ref, "alias": alias, "persistent": persistent}
    had = {
        "image": workspace.image_ref,
        "alias": workspace.alias,
        "persistent": workspace.persistent,
    }
    if asked != had:
        raise IdempotencyKeyReused(
            "This idempotency key was already used for a different spawn request.",
            workspace_id=workspace.public_id,
        )


class _NodeFilled(Exception):
    """The chosen node filled up between placement and the insert: place again."""


def _workspace_create(
    *,
    actor: Principal,
    policy: TenantPolicy,
    idempotency_key: str | None,
    node: Node,
    fields: dict[str, Any],
) -> tuple[Workspace, bool]:
    """Insert the row under the tenant's policy lock and the node's: quota, key and
    node capacity checks are race-free."""
    try:
        with transaction.atomic():
            locked = TenantPolicy.objects.select_for_update().get(pk=policy.pk)
            existing = _idempotent_replay(actor=actor, key=idempotency_key)
            if existing is not None:
                return existing, False
            workspace_admit(tenant=actor.tenant, locked_policy=locked, alias=fields.get("alias"))
            locked_node = Node.objects.select_for_update().get(pk=node.pk)
            reserve = limits_reservation(fields["limits"])
            if not node_has_room(node=locked_node, memory_bytes=reserve[0], cpus=reserve[1]):
                raise _NodeFilled
            workspace = Workspace(
                tenant=actor.tenant, idempotency_key=idempotency_key, node=node.name, **fields
            )
            workspace.volume_name = f"{engine_name(workspace)}-data"
            workspace.save(force_insert=True)
            transaction.on_commit(
                lambda: workspace_provision_enqueue(workspace=workspace, policy=locked)
            )
            return workspace, True
    except IntegrityError:
        # Only reachable without the lock's protection (e.g. a key row committed by
        # a process that skipped it); the constraint is the last word.
        existing = _idempotent_replay(actor=actor, key=idempotency_key)
        if existing is not None:
            return existing, False
        raise AliasInUse("The alias already names a workspace.") from None


@contextmanager
def _rejections_counted(actor: Principal) -> Iterator[None]:
    """Count a spawn refused before any engine work (scope, input, policy, quota, image)."""
    try:
        yield
    except DevBenchError as exc:
        metrics.SPAWNS.labels(
            outcome="rejected",
            code=exc.code,
            warm="false",
            tenant=metrics.tenant_label(actor.tenant),
        ).inc()
        raise


def _spawn_admit(
    *,
    actor: Principal,
    image: str | None,
    snapshot: str | None,
    template: str | None,
    alias: str | None,
    persistent: bool,
    ttl_s: int | None,
    idempotency_key: str | None,
    limits: Mapping[str, Any] | None,
    node_labels: Mapping[str, str] | None,
    audit: AuditScope,
) -> Workspace:
    """Everything a spawn checks and writes in the request: the row (or the replayed one)."""
    _validate_alias(alias)
    _validate_idempotency_key(idempotency_key)
    policy = tenant_policy_get(tenant=actor.tenant)
    source = _spawn_source(actor=actor, image=image, snapshot=snapshot)
    env = _spawn_template(actor=actor, image=image, snapshot=snapshot, template=template)
    if source is not None:
        image_ref = source.image_ref
    elif env is not None:
        image_ref = env.image or env.image_ref
    else:
        image_ref = image_reference_parse(image or policy.default_image).familiar()
    workspace = _idempotent_replay(actor=actor, key=idempotency_key)
    if workspace is None:
        workspace, created = _place_and_create(
            actor=actor,
            policy=policy,
            image=image,
            snapshot=source,
            template=env,
            image_ref=image_ref,
            alias=alias,
            persistent=persistent,
            ttl_s=ttl_s,
            limits=limits,
            node_labels=node_labels,
            idempotency_key=idempotency_key,
        )
        audit.details["node"] = workspace.node
        audit.details["warm"] = bool(workspace.warm)
        if source is not None:
            audit.details["snapshot"] = source.public_id
        if env is not None:
            audit.details["template"] = env.public_id
    else:
        created = False
    audit.target_id = workspace.public_id
    if not created:
        _check_replay(workspace, image_ref=image_ref, alias=alias, persistent=persistent)
        audit.details["replayed"] = True
    return workspace


def workspace_spawn(
    *,
    actor: Principal,
    image: str | None = None,
    alias: str | None = None,
    persistent: bool = False,
    ttl_s: int | None = None,
    idempotency_key: str | None = None,
    wait: bool = True,
    limits: Mapping[str, Any] | None = None,
    wait_timeout_s: float | None = None,
    node_labels: Mapping[str, str] | None = None,
    snapshot: str | None = None,
    template: str | None = None,
) -> Workspace:
    """Create a workspace on a node placed by capacity and labels (the policy's plus
    ``node_labels``); ``snapshot`` (``sn_…``, instead of ``image``): with that snapshot's
    image and /workspace files, on a node holding it; ``template`` (a name or ``tp_…``): its
    newest ready version's image. ``wait=True``: return it running
    or raise why it is not; ``wait=False``: return it ``creating`` at once. A repeated
    ``idempotency_key`` returns the workspace the first request made (exactly one is ever
    created)."""
    started = time.monotonic()
    with _rejections_counted(actor):
        actor.require_scope("write")
    if wait and transaction.get_connection().in_atomic_block:
        raise RuntimeError(
            "workspace_spawn(wait=True) inside a transaction would wait for itself: the "
            "provisioning task is queued only when the transaction commits."
        )
    with audited(actor=actor, action="workspace.spawn", target_type="workspace") as audit:
        with _rejections_counted(actor):
            workspace = _spawn_admit(
                actor=actor,
                image=image,
                snapshot=snapshot,
                template=template,
                alias=alias,
                persistent=persistent,
                ttl_s=ttl_s,
                idempotency_key=idempotency_key,
                limits=limits,
                node_labels=node_labels,
                audit=audit,
            )
        # A member claimed from the warm pool already runs: nothing to wait for, and no
        # provisioning task will count it, so its spawn is counted here.
        if workspace.warm and not audit.details.get("replayed"):
            _warm_spawn_counted(actor, started=started)
        if wait and not (workspace.warm and workspace.status == WorkspaceStatus.RUNNING):
            workspace = workspace_wait_running(workspace=workspace, timeout_s=wait_timeout_s)
    return workspace


def _warm_spawn_counted(actor: Principal, *, started: float) -> None:
    metrics.SPAWNS.labels(
        outcome="success", code="", warm="true", tenant=metrics.tenant_label(actor.tenant)
    ).inc()
    metrics.SPAWN_SECONDS.labels(warm="true").observe(time.monotonic() - started)


_PLACEMENT_ATTEMPTS = 5


def _spawn_source(*, actor: Principal, image: str | None, snapshot: str | None) -> Snapshot | None:
    if snapshot is None:
        return None
    if image is not None:
        raise ImageAndSnapshot()
    return snapshot_get_ready(actor=actor, ref=snapshot)


def _spawn_template(
    *, actor: Principal, image: str | None, snapshot: str | None, template: str | None
) -> Template | None:
    if template is None:
        return None
    if image is not None or snapshot is not None:
        raise ImageAndTemplate()
    return template_for_spawn(actor=actor, ref=template)


def _nodes_holding(*, snapshot: Snapshot | None, template: Template | None) -> list[str] | None:
    """Where the workspace's image is, when only some nodes can have it."""
    if snapshot is not None and not snapshot.registry_ref:
        return [snapshot.node]  # without a registry copy a snapshot spawns where it is
    if template is not None and template.dockerfile and not template.registry_ref:
        return [template.node]  # without a registry copy it is on the node that built it
    return None


def _place_and_create(
    *,
    actor: Principal,
    policy: TenantPolicy,
    image: str | None,
    snapshot: Snapshot | None,
    template: Template | None,
    image_ref: str,
    alias: str | None,
    persistent: bool,
    ttl_s: int | None,
    limits: Mapping[str, Any] | None,
    node_labels: Mapping[str, str] | None,
    idempotency_key: str | None,
) -> tuple[Workspace, bool]:
    if snapshot is None and template is None:
        image_allowed(policy=policy, image=image)
    ttl = ttl_resolve(policy=policy, persistent=persistent, ttl_s=ttl_s)
    effective = limits_resolve(policy=policy, requested=limits)
    labels = required_labels(policy_labels=policy.node_labels, requested=node_labels)
    memory_bytes, cpus = limits_reservation(effective.as_dict())
    now = timezone.now()
    # Who the workspace is, whether it is claimed from the pool or created.
    assigned: dict[str, Any] = {
        "alias": alias,
        "persistent": persistent,
        "ttl_s": ttl,
        "expires_at": now + timedelta(seconds=ttl) if ttl else None,
        "idempotency_key": idempotency_key,
        "idempotency_expires_at": now + key_window() if idempotency_key else None,
        "created_by_id": actor.user_id,
    }
    warm: bool | None = None
    if (
        snapshot is None
        and template is None
        and pool_serves(policy=policy, image_ref=image_ref, limits=effective.as_dict())
    ):
        claimed = pool_claim(
            tenant=actor.tenant,
            policy=policy,
            image_ref=image_ref,
            labels=labels,
            fields=assigned,
            replay=lambda: _idempotent_replay(actor=actor, key=idempotency_key),
        )
        if claimed is not None:
            return claimed
        warm = False  # a miss: the pool had no ready member
    assigned.pop("idempotency_key")
    for _ in range(_PLACEMENT_ATTEMPTS):
        node = node_place(
            labels=labels,
            memory_bytes=memory_bytes,
            cpus=cpus,
            # Without a registry copy a snapshot spawns where its image is.
            only=_nodes_holding(snapshot=snapshot, template=template),
        )
        try:
            image_id = workspace_image_id(
                policy=policy,
                node=node.name,
                image=image,
                snapshot=snapshot,
                template=template,
                pull=False,
            )
            progress: dict[str, Any] = {}
        except PullNeeded as needed:
            # The node's worker pulls it before creating the container, reporting progress.
            image_id, progress = "", pulling(PullProgress(image=needed.ref))
        try:
            return _workspace_create(
                actor=actor,
                policy=policy,
                idempotency_key=idempotency_key,
                node=node,
                fields={
                    **assigned,
                    "image_ref": image_ref,
                    "image_id": image_id,
                    "progress": progress,
                    "snapshot": snapshot,
                    "template": template,
                    "limits": effective.as_dict(),
                    "warm": warm,
                    "last_active_at": timezone.now(),
                },
            )
        except _NodeFilled:
            continue
    raise CapacityExhausted(
        "Every node that fitted filled up while this spawn was placed; try again.",
        extra={"labels": labels},
    )


def workspace_error(*, workspace: Workspace) -> DevBenchError:
    """The error that stopped a workspace, rebuilt from its row (code, message, class)."""
    return error_rebuilt(
        code=workspace.error_code or StoredError.code,
        message=workspace.status_message or "The workspace failed.",
        extra={"workspace_id": workspace.public_id},
    )


def _announces_left_creating(message: dict[str, Any]) -> bool:
    status = message.get("status")
    return isinstance(status, str) and status != WorkspaceStatus.CREATING


def _took_running(workspace: Workspace, message: dict[str, Any]) -> bool:
    """Whether ``message`` said the worker made the row running and carried what it
    wrote (``provisioning.workspace_changed``), now set on ``workspace``: no read."""
    row = message.get("row")
    if message.get("status") != WorkspaceStatus.RUNNING or not isinstance(row, dict):
        return False
    try:
        container_id, ready_s = str(row["container_id"]), float(row["ready_s"])
        image_id, volume_name = str(row["image_id"]), str(row["volume_name"])
        updated_at = datetime.fromisoformat(str(row["updated_at"]))
    except (KeyError, TypeError, ValueError):
        return False
    workspace.status, workspace.container_id = WorkspaceStatus.RUNNING, container_id
    workspace.ready_s, workspace.updated_at = ready_s, updated_at
    workspace.image_id, workspace.volume_name = image_id, volume_name
    workspace.progress, workspace.error_code, workspace.status_message = {}, "", ""
    return True


def workspace_wait_running(*, workspace: Workspace, timeout_s: float | None = None) -> Workspace:
    """Wait until the worker has finished with the row; works across processes.

    Woken by the worker's message when the row leaves ``creating``
    (``provisioning.workspace_changed``), not by polling it; the row is re-read at
    least every second all the same, so a lost message costs latency only. The message
    is sent once its status is committed, so it ends the wait without a read of its own,
    and a running one carries what the worker wrote: the answer is not read either.
    """
    timeout = settings.DEVBENCH_SPAWN_WAIT_S if timeout_s is None else timeout_s
    rows = Workspace.objects.filter(pk=workspace.pk)
    announced: dict[str, Any] = {}

    def left_creating() -> bool:
        return rows.values_list("status", flat=True).first() != WorkspaceStatus.CREATING

    def announces_left_creating(message: dict[str, Any]) -> bool:
        if not _announces_left_creating(message):
            return False
        announced.update(message)
        return True

    if not notify.wait_for_group(
        workspace_group(workspace.public_id),
        left_creating,
        timeout_s=timeout,
        ends_on=announces_left_creating,
        check_first=False,  # it is read once subscribed: one read, not two
    ):
        raise SpawnTimeout(
            f"Workspace '{workspace}' is still being created after {timeout:g} s; it will "
            "come up later (poll it) or end in error.",
            workspace_id=workspace.public_id,
        )
    if not _took_running(workspace, announced):
        workspace.refresh_from_db()
    if workspace.status == WorkspaceStatus.ERROR:
        raise workspace_error(workspace=workspace)
    workspace_require_running(workspace=workspace)  # killed while it was being created
    return workspace


def workspace_kill(
    *,
    actor: Principal,
    workspace: Workspace,
    force: bool = False,
    remove_volume: bool | None = None,
    reason: str = "",
) -> Workspace:
    """Stop and remove the container; a persistent workspace keeps its volume unless asked.

    Killing a removed workspace is a no-op; a kill interrupted half-way (engine
    down) leaves it ``removing`` and is finished by the next kill or reconciliation.
    """
    actor.require_scope("write")
    with audited(
        actor=actor, action="workspace.kill", target_type="workspace", target_id=workspace.public_id
    ) as audit:
        workspace_require_own(actor=actor, workspace=workspace)
        audit.details.update(force=force, remove_volume=remove_volume)
        if reason:
            audit.details["reason"] = reason
        with transaction.atomic():
            row = Workspace.objects.select_for_update().get(pk=workspace.pk)
            if row.status != WorkspaceStatus.REMOVED:
                row.status = WorkspaceStatus.REMOVING
                row.save(update_fields=["status", "updated_at"])
                usage_run_sync(workspace=row, at=row.updated_at)
        if row.status == WorkspaceStatus.REMOVING:
            workspace_changed(row, status=row.status)  # a spawn waiting on it stops waiting
            workspace_teardown(workspace=row, force=force, remove_volume=remove_volume)
        workspace.refresh_from_db()
    return workspace


# error_code of a workspace stopped on request: reconciliation leaves it stopped.
STOPPED_ON_REQUEST = "stopped_on_request"


@contextmanager
def _locked_change(*, actor: Principal, workspace: Workspace, action: str) -> Iterator[Workspace]:
    """A change of the actor's workspace: scope checked, audited, its row locked."""
    actor.require_scope("write")
    with (
        audited(actor=actor, action=action, target_type="workspace", target_id=workspace.public_id),
        transaction.atomic(),
    ):
        workspace_require_own(actor=actor, workspace=workspace)
        yield Workspace.objects.select_for_update().get(pk=workspace.pk)


def _set_status(row: Workspace, status: str, *, error_code: str = "", message: str = "") -> None:
    row.status, row.error_code, row.status_message = status, error_code, message
    row.save(update_fields=["status", "error_code", "status_message", "updated_at"])
    usage_run_sync(workspace=row, at=row.updated_at)


def workspace_stop(*, actor: Principal, workspace: Workspace, timeout_s: int = 10) -> Workspace:
    """Stop a running workspace's container, keeping it and its files for a later start.

    Running commands end with the container. A stopped workspace still expires
    at its TTL; stopping one that is already stopped changes nothing.
    """
    with _locked_change(actor=actor, workspace=workspace, action="workspace.stop") as row:
        if row.status == WorkspaceStatus.STOPPED:
            return row
        workspace_ready(workspace=row)
        workspace_driver(row).stop(row.container_id, timeout_s=timeout_s)
        _set_status(
            row,
            WorkspaceStatus.STOPPED,
            error_code=STOPPED_ON_REQUEST,
            message=f"Stopped on request by {actor.actor_id or actor.kind}.",
        )
    return row


def workspace_start(*, actor: Principal, workspace: Workspace) -> Workspace:
    """Start a stopped workspace again (same container, same /workspace files)."""
    with _locked_change(actor=actor, workspace=workspace, action="workspace.start") as row:
        if row.status == WorkspaceStatus.RUNNING:
            return row
        if row.status != WorkspaceStatus.STOPPED:
            raise WorkspaceNotStopped(
                f"Workspace {row.public_id} is {row.status}; only a stopped workspace "
                "can be started.",
                status=row.status,
            )
        workspace_driver(row).start(row.container_id)
        _set_status(row, WorkspaceStatus.RUNNING)
    return row


@dataclass(frozen=True)
class AttachResult:
    workspace: Workspace
    attachment: Attachment
    roots: tuple[str, ...]


def workspace_attach(
    *, actor: Principal, target: str, client_name: str = "", session_id: str = ""
) -> AttachResult:
    """Record that a client works in a running workspace (by id or alias) and where."""
    actor.require_scope("read")
    with audited(actor=actor, action="workspace.attach", target_type="workspace") as audit:
        workspace = workspace_get(actor=actor, ref=target)
        audit.target_id = workspace.public_id
        workspace_ready(workspace=workspace)
        attachment = Attachment.objects.create(
            workspace=workspace,
            client_name=client_name[:200],
            session_id=session_id[:200],
            principal=actor.actor_id[:200],
        )
        audit.details.update(client_name=attachment.client_name, session_id=attachment.session_id)
    return AttachResult(workspace=workspace, attachment=attachment, roots=(WORKSPACE_ROOT,))


def workspace_stats(*, actor: Principal, workspace: Workspace) -> ContainerStats:
    """One resource reading of a running workspace (takes about a second)."""
    actor.require_scope("read")
    workspace_require_own(actor=actor, workspace=workspace)
    workspace_ready(workspace=workspace)
    return workspace_driver(workspace).stats(workspace.container_id)
