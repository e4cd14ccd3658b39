"""DevBench's own Prometheus series (``devbench_…``), beside django-prometheus's.

This module defines the series and the helpers that update them; the scrape side
(``/metrics``, the worker endpoint, the state read at scrape time) is wiring in
``devbench_site/metrics.py``.

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
import threading
import weakref
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.core.signals import request_finished
from prometheus_client import (
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

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
EXEC_WATCHERS = Counter(
    "devbench_exec_watchers_total",
    "Websocket watchers of an exec, by the way its live output reaches them: straight "
    "from its runner, through the channel layer, or none (the exec had ended).",
    ["way"],
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


class _PoolSampler:
    """This process's pool statistics into :data:`DB_POOL` and :data:`DB_POOL_ERRORS`.

    A gauge is written only when its value changed since this process last wrote it (a
    write to the multi-process files after every request was a few percent of a control
    read's CPU), and the pool's error count, a running total, is added as what it grew
    by since the last sample."""

    _STATES = (
        ("size", "pool_size"),
        ("available", "pool_available"),
        ("waiting", "requests_waiting"),
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._written: dict[str, int] = {}
        self._pool: weakref.ref[Any] | None = None
        self._errors_counted = 0
        self._gauges = {state: DB_POOL.labels(state=state) for state, _ in self._STATES}

    def sample(self, pool: Any) -> None:
        try:
            stats = pool.get_stats()
        except Exception:  # a closed pool: nothing to report
            return
        with self._lock:
            if self._pid != os.getpid():  # a forked child: its series start empty
                self._pid, self._written = os.getpid(), {}
            for state, key in self._STATES:
                value = int(stats.get(key, 0))
                if self._written.get(state) != value:
                    self._written[state] = value
                    self._gauges[state].set(value)
            if self._pool is None or self._pool() is not pool:  # a new pool counts from 0
                self._pool, self._errors_counted = weakref.ref(pool), 0
            errors = int(stats.get("requests_errors", 0))
            if errors > self._errors_counted:
                DB_POOL_ERRORS.inc(errors - self._errors_counted)
                self._errors_counted = errors


_pool_sampler = _PoolSampler()


def db_pool_sample() -> None:
    """Record this process's pool statistics (called after each request and task)."""
    from django.db import connection

    pool = getattr(connection, "pool", None) if connection.vendor == "postgresql" else None
    if pool is not None:
        _pool_sampler.sample(pool)


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
