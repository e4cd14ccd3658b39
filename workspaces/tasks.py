"""Celery tasks of the workspaces app: thin, named, routed, safe to run twice.

Engine work runs on the workspace's node queue (``nodes.node_queue``); the
dispatchers (periodic, on the default queue) fan out to every node that is up.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown

from core.errors import EngineTimeout, EngineUnavailable
from execution.drain import drain_deadline
from workspaces import node_worker, nodes, pool, reconcile, suspend
from workspaces.environment_templates import tasks as template_tasks  # noqa: F401 - registers
from workspaces.models import Workspace
from workspaces.provisioning import workspace_provision
from workspaces.runtime.agent import register_hand_off
from workspaces.runtime.hand_off_threads import HandOffThreads

logger = logging.getLogger(__name__)

_TRANSIENT = (EngineUnavailable, EngineTimeout)


@shared_task(
    bind=True,
    name="workspaces.provision",
    acks_late=True,
    autoretry_for=_TRANSIENT,
    max_retries=2,
    retry_backoff=2,
    soft_time_limit=600,
    time_limit=660,
)
def workspace_provision_task(self: Any, workspace_id: int) -> None:
    workspace_provision(
        workspace_id=workspace_id, final_attempt=self.request.retries >= self.max_retries
    )


# Provisioning a node's worker takes from a hand-off (``provisioning.workspace_provision_enqueue``)
# runs in threads of its own, this many at once; more (a pool refilling) are queued.
PROVISION = "workspace_provision"
PROVISION_HAND_OFFS = 8
PROVISIONS = HandOffThreads(
    limit=lambda: PROVISION_HAND_OFFS, refuse=lambda: drain_deadline() is not None
)


def _take_provision(args: dict[str, Any]) -> bool:
    workspace_pk = args.get("workspace_pk")
    if not isinstance(workspace_pk, int) or isinstance(workspace_pk, bool):
        raise ValueError("workspace_pk must be an integer.")
    row = args.get("row")
    if row is not None and not isinstance(row, dict):
        raise ValueError("row must be an object.")
    return PROVISIONS.start(
        lambda: _provision_handed_off(workspace_pk, row), name=f"provision-hand-off-{workspace_pk}"
    )


def _provision_handed_off(workspace_pk: int, row: dict[str, Any] | None = None) -> None:
    try:
        workspace_provision(workspace_id=workspace_pk, final_attempt=False, row=row)
    except _TRANSIENT as exc:
        # The engine did not answer: the task takes over, with its retries and back-off.
        node = Workspace.all_objects.filter(pk=workspace_pk).values_list("node", flat=True).first()
        if node is None:
            return  # removed meanwhile: nothing to provision
        logger.info("provisioning %s queued after %s", workspace_pk, exc.code)
        workspace_provision_task.apply_async(
            args=[workspace_pk], queue=nodes.node_queue(node), countdown=2
        )


register_hand_off(PROVISION, _take_provision)


@shared_task(name="workspaces.reconcile_node", acks_late=True, time_limit=600)
def reconcile_node_task(node: str) -> int:
    report = reconcile.reconcile_node(node=node)
    for action in report.actions:
        logger.info(
            "reconcile %s: %s %s %s", node, action.workspace_id, action.action, action.detail
        )
    return len(report.actions)


@shared_task(name="workspaces.reconcile_dispatch", time_limit=60)
def reconcile_dispatch_task() -> None:
    for node in nodes.nodes_serving():
        reconcile_node_task.apply_async(args=[node], queue=nodes.node_queue(node))


@shared_task(name="workspaces.gc_node", acks_late=True, time_limit=600)
def gc_node_task(node: str) -> int:
    report = reconcile.gc_node(node=node)
    return len(report.containers_removed) + len(report.volumes_removed)


@shared_task(name="workspaces.gc_dispatch", time_limit=60)
def gc_dispatch_task() -> None:
    for node in nodes.nodes_serving():
        gc_node_task.apply_async(args=[node], queue=nodes.node_queue(node))


@shared_task(name="workspaces.nodes_check", time_limit=60)
def nodes_check_task() -> list[str]:
    return nodes.nodes_check()


@shared_task(name="workspaces.expire_due", acks_late=True, time_limit=600)
def expire_due_task() -> list[str]:
    return reconcile.workspace_expire_due()


@shared_task(name="workspaces.idempotency_expire", acks_late=True, time_limit=60)
def idempotency_expire_task() -> int:
    return reconcile.idempotency_keys_expire()


@shared_task(name="workspaces.pool_maintain", acks_late=True, time_limit=600)
def pool_maintain_task(tenant_id: int, node: str) -> dict[str, Any]:
    report = pool.pool_maintain(tenant_id=tenant_id, node=node)
    return {"retired": report.retired, "created": report.created, "kept": report.kept}


@shared_task(name="workspaces.pool_dispatch", time_limit=60)
def pool_dispatch_task() -> int:
    return pool.pool_dispatch()


@shared_task(name="workspaces.idle_pause_due", acks_late=True, time_limit=600)
def idle_pause_due_task() -> list[str]:
    return suspend.idle_pause_due()


def _reconcile_now(name: str) -> None:
    reconcile_node_task.apply_async(args=[name], queue=nodes.node_queue(name))


@worker_ready.connect
def _node_worker_start(sender: Any = None, **_: Any) -> None:
    """A node's worker registers its node(s) — every ``node.<name>`` queue it consumes —
    serves them through its agent and heartbeats; then (as any restarted platform) it
    brings their workspaces back in line at once."""
    queues = sender.app.amqp.queues.consume_from or () if sender is not None else ()
    names = sorted(filter(None, (nodes.queue_node(q) for q in queues)))
    if not names:
        return  # a worker of the default queue only: no engine of its own
    node_worker.node_worker_start(names=names, on_return=_reconcile_now)
    for name in names:
        _reconcile_now(name)


@worker_shutdown.connect
def _node_worker_stop(**_: Any) -> None:
    node_worker.node_worker_stop()
