"""Celery tasks of the workspaces app: thin, named, routed, safe to run twice.

Engine work runs on the workspace's node queue (``node.<node>``); the
dispatchers (periodic, on the default queue) fan out to every node in use.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from core.errors import EngineTimeout, EngineUnavailable
from core.queues import node_queue
from workspaces import reconcile
from workspaces.provisioning import workspace_provision

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
    for node in reconcile.nodes_in_use():
        reconcile_node_task.apply_async(args=[node], queue=node_queue(node))


@shared_task(name="workspaces.gc_node", acks_late=True, time_limit=600)
def gc_node_task(node: str) -> int:
    report = reconcile.gc_node(node=node)
    return len(report.containers_removed) + len(report.volumes_removed)


@shared_task(name="workspaces.gc_dispatch", time_limit=60)
def gc_dispatch_task() -> None:
    for node in reconcile.nodes_in_use():
        gc_node_task.apply_async(args=[node], queue=node_queue(node))


@shared_task(name="workspaces.expire_due", acks_late=True, time_limit=600)
def expire_due_task() -> list[str]:
    return reconcile.workspace_expire_due()


@shared_task(name="workspaces.idempotency_expire", acks_late=True, time_limit=60)
def idempotency_expire_task() -> int:
    return reconcile.idempotency_keys_expire()


@worker_ready.connect
def _reconcile_on_worker_start(**_: Any) -> None:
    """A (re)started platform brings its node's workspaces back in line at once."""
    reconcile_node_task.apply_async(
        args=[settings.DEVBENCH_NODE], queue=node_queue(settings.DEVBENCH_NODE)
    )
