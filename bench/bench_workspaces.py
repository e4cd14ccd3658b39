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
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import Timer, print_ratios  # noqa: E402
from _workers import start_celery_worker  # noqa: E402

IMAGE = "devbench/busybox:latest"
KEEPER = ["-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]


def _setup_django() -> subprocess.Popen[bytes] | None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "devbench_site.settings")
    os.environ.setdefault("DEVBENCH_INSTANCE", f"bench-{uuid.uuid4().hex[:6]}")
    production = bool(os.environ.get("DATABASE_URL"))
    if not production:
        os.environ["DEVBENCH_VAR_DIR"] = tempfile.mkdtemp(prefix="devbench-bench-")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if not production:
        return None
    return start_celery_worker("workspaces")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    worker = _setup_django()
    try:
        run(args.runs)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)


def run(runs: int) -> None:
    import docker
    from django.conf import settings
    from docker.types import Mount

    from tenants.models import Tenant
    from tenants.principal import system_principal
    from workspaces.services import workspace_kill, workspace_spawn, workspace_stats

    raw = docker.APIClient(version="auto")
    tenant = Tenant.objects.create(slug=f"bench-{uuid.uuid4().hex[:6]}", name="Bench")
    actor = system_principal(tenant)
    labels = {"devbench.instance": settings.DEVBENCH_INSTANCE}
    ours, base = Timer(), Timer()

    def raw_spawn() -> str:
        name = f"bench-raw-{uuid.uuid4().hex[:10]}"
        raw.create_volume(name=f"{name}-data", labels=labels)
        host = raw.create_host_config(
            mem_limit=512 * 1024 * 1024,
            memswap_limit=512 * 1024 * 1024,
            nano_cpus=10**9,
            pids_limit=256,
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": "rw,nosuid,nodev,size=64m"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            init=True,
            mounts=[Mount(target="/workspace", source=f"{name}-data", type="volume")],
        )
        created = raw.create_container(
            image=IMAGE,
            entrypoint=["/bin/sh"],
            command=KEEPER,
            user="1000:1000",
            working_dir="/workspace",
            labels=labels,
            name=name,
            host_config=host,
            detach=True,
        )
        raw.start(created["Id"])
        return created["Id"]

    def raw_kill(container_id: str) -> None:
        name = raw.inspect_container(container_id)["Name"].lstrip("/")
        raw.stop(container_id, timeout=5)
        raw.remove_container(container_id, force=True)
        raw.remove_volume(f"{name}-data", force=True)

    for i in range(runs + 1):  # the first round warms caches and connections
        record = i > 0
        with ours("spawn") if record else _noop():
            workspace = workspace_spawn(actor=actor, image=IMAGE)
        with base("spawn") if record else _noop():
            container_id = raw_spawn()
        if i <= 3:
            # The engine samples on its own 1 s tick: alternate who asks first.
            pair = [
                (ours, lambda w=workspace: workspace_stats(actor=actor, workspace=w)),
                (base, lambda c=container_id: raw.stats(c, stream=False)),
            ]
            for timer, call in pair if i % 2 else pair[::-1]:
                with timer("stats") if record else _noop():
                    call()
        with ours("kill") if record else _noop():
            workspace_kill(actor=actor, workspace=workspace)
        with base("kill") if record else _noop():
            raw_kill(container_id)

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
