"""Periodic metering: the dispatcher records snapshot storage (a database read) and fans
out to each node's queue (engine reads)."""

from __future__ import annotations

from celery import shared_task

from core.queues import node_queue
from usage.services import usage_meter_node, usage_meter_snapshots
from workspaces import nodes


@shared_task(name="usage.meter_node", acks_late=True, ignore_result=True, time_limit=600)
def usage_meter_node_task(node: str) -> int:
    return usage_meter_node(node=node)


@shared_task(name="usage.meter_dispatch", ignore_result=True, time_limit=60)
def usage_meter_dispatch_task() -> None:
    usage_meter_snapshots()
    for node in nodes.nodes_serving():
        usage_meter_node_task.apply_async(args=[node], queue=node_queue(node))
