"""The scrape side of the metrics: ``GET /metrics`` of web processes, a worker's own
endpoint, and the state series read at scrape time (see ``core/metrics.py`` for the
event series and docs/operations.md for the whole picture).

``GET /metrics`` is for scrapers only: allowed when the request comes from a network in
``METRICS_ALLOWED_NETWORKS`` (default: loopback only), or carries ``Authorization: Bearer
<METRICS_TOKEN>`` when a token is set; anything else is ``403 metrics_forbidden``. Behind a
reverse proxy on the same host every request comes from loopback: set a token and
``METRICS_ALLOWED_NETWORKS=`` (empty) there.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core.errors import MetricsForbidden
from core.metrics import multiprocess_dir
from core.queues import node_queue

logger = logging.getLogger(__name__)

# --- scrape-time state ------------------------------------------------------------------

# Kombu's Redis transport keeps a queue's messages of priority p>0 in "<queue>\x06\x16<p>".
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def celery_queues() -> list[str]:
    """The queues in use: the default one and one per node holding workspaces."""
    from workspaces.models import Workspace

    nodes = Workspace.objects.values_list("node", flat=True).distinct()
    return sorted({settings.CELERY_TASK_DEFAULT_QUEUE, *(node_queue(n) for n in nodes)})


class StateCollector(Collector):
    """Workspaces per node and status, Celery queue depth, database and Redis health."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._database()
        yield from self._redis()

    def _database(self) -> Iterator[GaugeMetricFamily]:
        from django.db import connection
        from django.db.models import Count

        from workspaces.models import Workspace, WorkspaceStatus

        up = GaugeMetricFamily("devbench_database_up", "1 when the database answers.")
        workspaces = GaugeMetricFamily(
            "devbench_workspaces",
            "Workspaces by node and status.",
            labels=["node", "status"],
        )
        try:
            connection.ensure_connection()
            rows = (
                Workspace.objects.exclude(status=WorkspaceStatus.REMOVED)
                .values("node", "status")
                .annotate(n=Count("id"))
            )
            counts: dict[tuple[str, str], int] = {}
            nodes = {settings.DEVBENCH_NODE}
            for row in rows:
                counts[(row["node"], row["status"])] = row["n"]
                nodes.add(row["node"])
            for node in sorted(nodes):
                for status in ("running", "paused", "stopped", "creating", "error"):
                    workspaces.add_metric([node, status], counts.get((node, status), 0))
            up.add_metric([], 1)
        except Exception:
            logger.warning("metrics: the database did not answer", exc_info=True)
            up.add_metric([], 0)
        yield up
        yield workspaces

    def _redis(self) -> Iterator[GaugeMetricFamily]:
        if not settings.REDIS_URL:
            return
        import redis

        up = GaugeMetricFamily(
            "devbench_channel_layer_up", "1 when the channel layer's Redis answers."
        )
        depth = GaugeMetricFamily(
            "devbench_celery_queue_depth", "Tasks waiting in each Celery queue.", labels=["queue"]
        )
        try:
            client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
            try:
                client.ping()
                up.add_metric([], 1)
                for queue in celery_queues():
                    pipe = client.pipeline()
                    for suffix in _PRIORITY_SUFFIXES:
                        pipe.llen(queue + suffix)
                    depth.add_metric([queue], sum(pipe.execute()))
            finally:
                client.close()
        except Exception:
            logger.warning("metrics: Redis did not answer", exc_info=True)
            up.add_metric([], 0)
        yield up
        yield depth


class EngineCollector(Collector):
    """Whether this node's engine answers (exported by the node's worker, which holds
    the engine socket; web processes do not)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from workspaces.runtime import get_driver

        up = GaugeMetricFamily(
            "devbench_engine_up", "1 when this node's container engine answers.", labels=["node"]
        )
        try:
            get_driver().ping()
            up.add_metric([settings.DEVBENCH_NODE], 1)
        except Exception:
            up.add_metric([settings.DEVBENCH_NODE], 0)
        yield up


def scrape_registry(*, worker: bool = False) -> CollectorRegistry:
    """What one scrape reports: every process's event series plus the state series."""
    from prometheus_client import REGISTRY

    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_Delegate(REGISTRY))
    # Workers report their engine; web processes the shared state (one source each,
    # so nothing is counted twice when both are scraped).
    registry.register(EngineCollector() if worker else StateCollector())
    return registry


# --- access -----------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(spec: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in spec)


def metrics_allowed(*, remote_addr: str, authorization: str) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(presented.strip(), token):
            return True
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    return any(address in net for net in _networks(tuple(settings.METRICS_ALLOWED_NETWORKS)))


@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics`` of a web process: Prometheus text format, for allowed scrapers."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    allowed = metrics_allowed(
        remote_addr=request.META.get("REMOTE_ADDR", ""),
        authorization=request.headers.get("Authorization", ""),
    )
    if not allowed:
        refused = MetricsForbidden()
        return JsonResponse(refused.as_dict(), status=refused.http_status)
    return HttpResponse(generate_latest(scrape_registry()), content_type=CONTENT_TYPE_LATEST)


def worker_metrics_serve(port: int, addr: str = "127.0.0.1") -> None:
    """Serve a Celery worker's metrics on its own port (``DEVBENCH_WORKER_METRICS_PORT``)."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=addr, registry=scrape_registry(worker=True))
    logger.info("worker metrics on http://%s:%s/metrics", addr, port)


class _Delegate(Collector):
    """Re-exports a registry's metrics (single-process mode) beside the state ones."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        yield from self.registry.collect()
