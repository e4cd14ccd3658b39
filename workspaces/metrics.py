"""Warm-pool state for Prometheus, read from the database when ``/metrics`` is scraped
(so every web process reports the same numbers, whichever process claimed or refilled)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)


class PoolCollector(Collector):
    def describe(self) -> list[GaugeMetricFamily]:
        return []  # registering must not query the database (it may not exist yet)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        from django.db import DatabaseError
        from django.db.models import Q

        from tenants.models import Tenant
        from workspaces.pool import pool_states

        size = GaugeMetricFamily(
            "devbench_pool_size", "Warm pool size wanted", labels=["tenant", "node"]
        )
        ready = GaugeMetricFamily(
            "devbench_pool_ready", "Pooled workspaces ready to claim", labels=["tenant", "node"]
        )
        creating = GaugeMetricFamily(
            "devbench_pool_creating", "Pooled workspaces being created", labels=["tenant", "node"]
        )
        latency = GaugeMetricFamily(
            "devbench_pool_refill_latency_seconds",
            "Mean time from a pool member's creation to running (last 20)",
            labels=["tenant"],
        )
        hits = CounterMetricFamily(
            "devbench_pool_hits", "Spawns served from the warm pool", labels=["tenant"]
        )
        misses = CounterMetricFamily(
            "devbench_pool_misses", "Spawns the warm pool could not serve", labels=["tenant"]
        )
        try:
            with_pools = Tenant.objects.filter(
                Q(policy__warm_pool_size__gt=0) | Q(workspaces__pooled=True)
            ).distinct()
            states = pool_states(tenants=with_pools)
        except DatabaseError as exc:  # a scrape never fails for the pool's sake
            logger.warning("pool metrics unavailable: %s", exc)
            return
        for slug, pools in states.items():
            for state in pools:
                size.add_metric([slug, state.node], state.size)
                ready.add_metric([slug, state.node], state.ready)
                creating.add_metric([slug, state.node], state.creating)
            if pools:
                hits.add_metric([slug], pools[0].hits)
                misses.add_metric([slug], pools[0].misses)
                if pools[0].refill_latency_s is not None:
                    latency.add_metric([slug], pools[0].refill_latency_s)
        yield from (size, ready, creating, latency, hits, misses)


_registered: list[PoolCollector] = []


def pool_collector_register() -> None:
    if not _registered:
        _registered.append(PoolCollector())
        REGISTRY.register(_registered[0])
