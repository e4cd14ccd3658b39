"""Periodic metering: the dispatcher fans out to each node's queue (engine reads)."""

from __future__ import annotations

from celery import shared_task

from usage.services import usage_meter_node
from workspaces import reconcile
from workspaces.tasks import node_queue


@shared_task(name="usage.meter_node", acks_late=True, ignore_result=True, time_limit=600)
def usage_meter_node_task(node: str) -> int:
    return usage_meter_node(node=node)


@shared_task(name="usage.meter_dispatch", ignore_result=True, time_limit=60)
def usage_meter_dispatch_task() -> None:
    for node in reconcile.nodes_in_use():
        usage_meter_node_task.apply_async(args=[node], queue=node_queue(node))
