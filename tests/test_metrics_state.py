"""State series read at scrape time: workspaces per node and status, Celery queue depth."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis
from django.conf import settings
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db


def _samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = Client().get("/metrics").content.decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_workspaces_and_queue_depth_follow_the_stores(tenant: Any) -> None:
    node = f"q{uuid.uuid4().hex[:8]}"
    queue = f"node.{node}"
    for status in ("running", "running", "stopped", "removed"):
        WorkspaceFactory(tenant=tenant, node=node, status=status)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        broker.lpush(queue, "a", "b")
        broker.lpush(queue + "\x06\x166", "c")  # a priority-6 message of the same queue
        samples = _samples()
        assert samples[("devbench_workspaces", (("node", node), ("status", "running")))] == 2
        assert samples[("devbench_workspaces", (("node", node), ("status", "stopped")))] == 1
        assert samples[("devbench_workspaces", (("node", node), ("status", "paused")))] == 0
        assert samples[("devbench_celery_queue_depth", (("queue", queue),))] == 3
        assert samples[("devbench_database_up", ())] == 1
        assert samples[("devbench_channel_layer_up", ())] == 1
        broker.delete(queue, queue + "\x06\x166")
        assert _samples()[("devbench_celery_queue_depth", (("queue", queue),))] == 0
    finally:
        broker.delete(queue, queue + "\x06\x166")
