"""DevBench's own Prometheus series (``devbench_…``), beside django-prometheus's.

Event series (counters, histograms) are updated where things happen, in
whichever process does them: web processes (REST, MCP, websockets, pages) and
Celery workers. With ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus-client keeps
every process's values in files there and a scrape sums them, so a web tier of
several processes (or a prefork worker) answers one consistent ``/metrics``.

State series (workspaces per node, queue depth, database and channel-layer
health) are read from the shared stores at scrape time by
:class:`StateCollector`, so they are the same whichever process answers.

Labels are bounded: stable error codes, statuses, operations, node and queue
names; never workspace or exec ids. A ``tenant`` label is filled only when
``DEVBENCH_METRICS_TENANT_LABEL`` is on (an installation with few tenants);
otherwise it is empty, which Prometheus treats as absent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.core.signals import request_finished
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

# "<name>_created" timestamps double the series and no dashboard or alert uses them.
disable_created_metrics()

# Spawns go from ~0.3 s (busybox, warm engine) to minutes (a pull, a slow engine).
_SPAWN_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300)
_EXEC_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400)

SPAWNS = Counter(
    "devbench_workspace_spawns_total",
    "Workspace spawns by outcome (success, failed on the engine, rejected before it), error "
    "code and whether a warm-pool workspace served it.",
    ["outcome", "code", "warm", "tenant"],
)
SPAWN_SECONDS = Histogram(
    "devbench_workspace_spawn_seconds",
    "Time from a spawn request to its workspace running (queueing included).",
    ["warm"],
    buckets=_SPAWN_BUCKETS,
)
EXEC_SECONDS = Histogram(
    "devbench_exec_duration_seconds",
    "Run time of execs by terminal status.",
    ["status", "tenant"],
    buckets=_EXEC_BUCKETS,
)
EXEC_OUTPUT_BYTES = Counter(
    "devbench_exec_output_bytes_total",
    "Bytes of output execs produced, by stream (counted before the output cap).",
    ["stream"],
)
FILE_OPERATIONS = Counter(
    "devbench_file_operations_total",
    "Workspace file operations by operation and outcome (success, client_error, server_error).",
    ["op", "outcome"],
)
ENGINE_ERRORS = Counter(
    "devbench_engine_errors_total",
    "Errors the container engine reported, by kind (the stable error code).",
    ["kind"],
)
AUTH_FAILURES = Counter(
    "devbench_auth_failures_total",
    "Refused authentications by code (bearer tokens on REST/MCP/websockets, browser sign-ins).",
    ["code"],
)
DB_POOL = Gauge(
    "devbench_db_pool_connections",
    "PostgreSQL pool connections of live processes: size, available, waiting requests.",
    ["state"],
    multiprocess_mode="livesum",
)
DB_POOL_ERRORS = Counter(
    "devbench_db_pool_errors_total",
    "Requests for a pooled connection that failed (timeout or broken connection).",
)


def tenant_label(owner: Any) -> str:
    """The slug of a tenant (or of a row's tenant) when the installation opted in, else
    empty (no label). The row's tenant is only loaded when the label is on."""
    if not getattr(settings, "DEVBENCH_METRICS_TENANT_LABEL", False) or owner is None:
        return ""
    tenant = getattr(owner, "tenant", owner)
    return str(getattr(tenant, "slug", tenant))


def outcome_of(exc: BaseException | None) -> str:
    if exc is None:
        return "success"
    status = getattr(exc, "http_status", 500)
    return "client_error" if 400 <= status < 500 else "server_error"


P = ParamSpec("P")
R = TypeVar("R")


def counted_file_operation(op: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Count each call of a file service by outcome."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        import functools

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                FILE_OPERATIONS.labels(op=op, outcome=outcome_of(exc)).inc()
                raise
            FILE_OPERATIONS.labels(op=op, outcome="success").inc()
            return result

        return wrapper

    return decorate


def db_pool_sample() -> None:
    """Record this process's pool statistics (called after each request and task)."""
    from django.db import connection

    pool = getattr(connection, "pool", None) if connection.vendor == "postgresql" else None
    if pool is None:
        return
    try:
        stats = pool.get_stats()
    except Exception:  # a closed pool: nothing to report
        return
    DB_POOL.labels(state="size").set(stats.get("pool_size", 0))
    DB_POOL.labels(state="available").set(stats.get("pool_available", 0))
    DB_POOL.labels(state="waiting").set(stats.get("requests_waiting", 0))
    errors = stats.get("requests_errors", 0)
    if errors:
        DB_POOL_ERRORS.inc(errors)


def _sample_after_request(**_: Any) -> None:
    db_pool_sample()


request_finished.connect(
    _sample_after_request, weak=False, dispatch_uid="devbench.metrics.db_pool_sample"
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def mark_process_dead(pid: int) -> None:
    """For a multi-process server's child-exit hook: drop the live gauges of a dead child."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


# --- scrape-time state ------------------------------------------------------------------

# Kombu's Redis transport keeps a queue's messages of priority p>0 in "<queue>\x06\x16<p>".
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def celery_queues() -> list[str]:
    """The queues in use: the default one and one per node holding workspaces."""
    from workspaces.models import Workspace

    nodes = Workspace.objects.values_list("node", flat=True).distinct()
    return sorted({settings.CELERY_TASK_DEFAULT_QUEUE, *(f"node.{n}" for n in nodes)})


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
            "Workspaces by node and status (paused stays 0 until workspaces can pause).",
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


def metrics_view(request: Any) -> Any:
    """``GET /metrics`` of a web process: Prometheus text format."""
    from django.http import HttpResponse
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

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
