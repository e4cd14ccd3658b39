"""Warm pool and pause/resume against the raw engine and a cold spawn, in one run.

    .venv/bin/python bench/bench_pool.py [--runs 20] [--pool 5]

Embedded mode by default (SQLite in a temporary directory, in-process tasks);
with DATABASE_URL and REDIS_URL set, the production path with a Celery worker
the bench starts (see bench_workspaces.py). ``bench/suite.py`` runs the same
measurements as its ``pool`` rows.

* warm spawn: ``workspace_spawn`` (wait=True) served from the pool, timed in the
  server process (policy and image checks, the claim's transaction, one inspect of
  the claimed container on its node; the answer is running and attachable) | raw
  volume + create + start with the same hardening.
  Between samples the pool is refilled (untimed), so every sample is a hit.
* resume + echo: ``exec_run(echo)`` on a paused workspace (resume included) | a cold
  spawn + ``exec_run(echo)`` (the tenant's pool emptied for it).
* refill: members made ready per second, from an empty pool of ``--pool``.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _raw import IMAGE, RawDocker
from _timing import print_ratios
from _workers import setup_django


@dataclass
class PoolSamples:
    warm_spawn: list[float] = field(default_factory=list)
    raw_spawn: list[float] = field(default_factory=list)
    resume_echo: list[float] = field(default_factory=list)
    cold_spawn_echo: list[float] = field(default_factory=list)
    refill_per_s: list[float] = field(default_factory=list)


def _wait(check: Any, *, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for the pool")
        time.sleep(0.01)


def _ready(tenant: Any) -> int:
    from workspaces.models import Workspace, WorkspaceStatus

    return Workspace.all_objects.filter(
        tenant=tenant, pooled=True, status=WorkspaceStatus.RUNNING
    ).count()


def _pool_size(tenant: Any, size: int) -> None:
    from django.conf import settings

    from tenants.models import TenantPolicy
    from workspaces.pool import pool_maintain

    TenantPolicy.objects.filter(tenant=tenant).update(warm_pool_size=size)
    pool_maintain(tenant_id=tenant.pk, node=settings.DEVBENCH_NODE)


def measure(*, tenant: Any, runs: int, pool: int) -> PoolSamples:
    """Every pool row's samples for ``tenant`` (its policy is changed and restored)."""
    from django.conf import settings

    from execution.services import exec_run
    from tenants.models import TenantPolicy
    from tenants.principal import system_principal
    from workspaces.pool import pool_maintain
    from workspaces.services import workspace_kill, workspace_pause, workspace_spawn

    actor = system_principal(tenant)
    node = settings.DEVBENCH_NODE
    TenantPolicy.objects.filter(tenant=tenant).update(
        max_workspaces=max(100, pool + 10), warm_pool_max_age_s=3600
    )
    raw = RawDocker()
    out = PoolSamples()
    made = []
    try:
        # Refill rate: an empty pool to full, a few times.
        for _ in range(3):
            _pool_size(tenant, 0)
            start = time.perf_counter()
            _pool_size(tenant, pool)
            _wait(lambda: _ready(tenant) >= pool)
            out.refill_per_s.append(pool / (time.perf_counter() - start))
        for i in range(runs + 1):  # the first round warms caches and connections
            _wait(lambda: _ready(tenant) >= 1)
            start = time.perf_counter()
            workspace = workspace_spawn(actor=actor, image=IMAGE)
            took = time.perf_counter() - start
            assert workspace.warm, "the pool was empty: not a warm sample"
            start = time.perf_counter()
            container = raw.spawn()
            took_raw = time.perf_counter() - start
            if i:
                out.warm_spawn.append(took)
                out.raw_spawn.append(took_raw)
            made.append(workspace)
            raw.kill(container)
            pool_maintain(tenant_id=tenant.pk, node=node)  # refill (untimed)
        _pool_size(tenant, 0)  # cold spawns from here
        paused = made[0]
        for i in range(max(5, runs // 2) + 1):
            workspace_pause(actor=actor, workspace=paused)
            start = time.perf_counter()
            result = exec_run(actor=actor, workspace=paused, cmd=["echo", "hi"])
            took = time.perf_counter() - start
            assert result.stdout == "hi\n", result
            start = time.perf_counter()
            cold = workspace_spawn(actor=actor, image=IMAGE)
            exec_run(actor=actor, workspace=cold, cmd=["echo", "hi"])
            took_cold = time.perf_counter() - start
            assert not cold.warm
            workspace_kill(actor=actor, workspace=cold, force=True)
            if i:
                out.resume_echo.append(took)
                out.cold_spawn_echo.append(took_cold)
    finally:
        for workspace in made:
            workspace_kill(actor=actor, workspace=workspace, force=True)
        _pool_size(tenant, 0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pool", type=int, default=5)
    args = parser.parse_args()
    worker = setup_django("pool")
    try:
        from django.conf import settings

        from tenants.models import Tenant

        tenant = Tenant.objects.create(slug=f"bench-{uuid.uuid4().hex[:6]}", name="Bench")
        samples = measure(tenant=tenant, runs=args.runs, pool=args.pool)
        mode = "embedded" if settings.EMBEDDED else "production (Celery worker)"
        print(f"DevBench warm pool, {args.runs} runs, pool of {args.pool}, {mode} mode")
        print_ratios([("warm spawn", samples.warm_spawn, samples.raw_spawn)])
        print_ratios(
            [("resume+echo", samples.resume_echo, samples.cold_spawn_echo)], label="cold+echo"
        )
        rates = ", ".join(f"{r:.1f}" for r in samples.refill_per_s)
        print(f"refill         {rates} members ready per second (empty → {args.pool})")
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)


if __name__ == "__main__":
    main()
