"""Workspace lifecycle against raw docker-py doing the same work, in one run.

    .venv/bin/python bench/bench_workspaces.py [--runs 10]

Embedded mode (default, no DATABASE_URL/REDIS_URL): SQLite in a temporary
directory, provisioning on the in-process task pool. With DATABASE_URL and
REDIS_URL set (e.g. `. scripts/test-env`), the bench starts its own Celery
worker on `node.<DEVBENCH_NODE>` and measures the production path (the row is
committed, the task crosses Redis, the caller polls the row). The database
must exist; the bench migrates it.

Operations: spawn (wait=True: policy + image check, row, task, engine, wait)
vs create volume + create + start; kill (stop + remove + volume) vs the same
calls; stats (one reading: the engine takes two samples) vs raw stats.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _raw import IMAGE, RawDocker  # noqa: E402
from _timing import Timer, print_ratios  # noqa: E402
from _workers import setup_django  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    worker = setup_django("workspaces")
    try:
        run(args.runs)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)


def run(runs: int) -> None:
    from django.conf import settings

    from tenants.models import Tenant
    from tenants.principal import system_principal
    from workspaces.services import workspace_kill, workspace_spawn, workspace_stats

    tenant = Tenant.objects.create(slug=f"bench-{uuid.uuid4().hex[:6]}", name="Bench")
    actor = system_principal(tenant)
    ours, base = Timer(), Timer()

    raw_docker = RawDocker()

    for i in range(runs + 1):  # the first round warms caches and connections
        record = i > 0
        with ours("spawn") if record else _noop():
            workspace = workspace_spawn(actor=actor, image=IMAGE)
        with base("spawn") if record else _noop():
            container_id = raw_docker.spawn()
        if i <= 3:
            # The engine samples on its own 1 s tick: alternate who asks first.
            pair = [
                (ours, lambda w=workspace: workspace_stats(actor=actor, workspace=w)),
                (base, lambda c=container_id: raw_docker.api.stats(c, stream=False)),
            ]
            for timer, call in pair if i % 2 else pair[::-1]:
                with timer("stats") if record else _noop():
                    call()
        with ours("kill") if record else _noop():
            workspace_kill(actor=actor, workspace=workspace)
        with base("kill") if record else _noop():
            raw_docker.kill(container_id, stop_first=True)

    mode = "embedded" if settings.EMBEDDED else "production (Celery worker)"
    print(f"DevBench workspaces vs raw docker-py, {runs} runs, {mode} mode, image {IMAGE}")
    print_ratios([(op, ours.samples[op], base.samples[op]) for op in ("spawn", "kill", "stats")])


class _noop:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    main()
