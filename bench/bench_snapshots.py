"""Snapshot create and spawn-from-snapshot of a 100 MB /workspace vs raw docker-py, in one run.

    .venv/bin/python bench/bench_snapshots.py [--runs 5] [--mb 100]

Embedded mode by default (SQLite in a temporary directory, in-process tasks);
with DATABASE_URL and REDIS_URL set, the production path with a Celery worker
the bench starts (see bench_workspaces.py).

snapshot: ``snapshot_create`` (policy and quota checks, row, pause, copy of
/workspace into a helper container of the same image, unpause, commit) vs
raw: get_archive of /workspace streamed into put_archive of a created helper
container, commit, remove the helper (no pause: the raw side does less).
spawn-from-snapshot: ``workspace_spawn(snapshot=…)`` (wait=True) vs raw:
volume + create + start of the snapshot image (the engine fills the new
volume from the image in both).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _raw import IMAGE, RawDocker
from _timing import Timer, print_ratios
from _workers import setup_django


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    worker = setup_django("snapshots")
    try:
        run(args.runs, args.mb)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)


def run(runs: int, mb: int) -> None:
    from django.conf import settings

    from tenants.models import Tenant
    from tenants.principal import system_principal
    from workspaces.nodes import workspace_driver
    from workspaces.runtime.base import ExecSpec
    from workspaces.services import workspace_kill, workspace_spawn
    from workspaces.snapshots.services import snapshot_create, snapshot_delete

    rd = RawDocker()
    raw = rd.api
    tenant = Tenant.objects.create(slug=f"bench-{uuid.uuid4().hex[:6]}", name="Bench")
    actor = system_principal(tenant)
    fill = f"cd /workspace && for i in $(seq {mb}); do head -c 1048576 /dev/urandom > f$i; done"

    def raw_snapshot(container_id: str) -> str:
        helper = raw.create_container(image=IMAGE, command=["/bin/true"], labels=rd.labels)["Id"]
        stream, _ = raw.get_archive(container_id, "/workspace", chunk_size=1024 * 1024)
        raw.put_archive(helper, "/", stream)
        tag = uuid.uuid4().hex[:12]
        image = raw.commit(helper, repository="bench-raw-snapshot", tag=tag)["Id"]
        raw.remove_container(helper, force=True)
        return str(image)

    source = workspace_spawn(actor=actor, image=IMAGE)
    workspace_driver(source).exec_collect(
        source.container_id, ExecSpec(cmd=["/bin/sh", "-c", fill]), timeout_s=300
    )
    raw_source = rd.spawn(IMAGE)
    code = raw.exec_start(raw.exec_create(raw_source, ["/bin/sh", "-c", fill], user="1000:1000"))
    del code

    ours, base = Timer(), Timer()
    made: dict[str, Any] = {}
    for i in range(runs + 1):  # the first round warms caches and connections
        record = i > 0
        made.clear()

        def ours_snapshot(i: int = i) -> None:
            made["snapshot"] = snapshot_create(actor=actor, workspace=source, name=f"bench {i}")

        def base_snapshot() -> None:
            made["raw_image"] = raw_snapshot(raw_source)

        def ours_spawn() -> None:
            made["copy"] = workspace_spawn(actor=actor, snapshot=made["snapshot"].public_id)

        def base_spawn() -> None:
            made["raw_copy"] = rd.spawn(made["raw_image"])

        # The disk is shared and noisy: alternate who goes first.
        for op, pair in (
            ("snapshot", [(ours, ours_snapshot), (base, base_snapshot)]),
            ("spawn-from-snapshot", [(ours, ours_spawn), (base, base_spawn)]),
        ):
            for timer, call in pair if i % 2 else pair[::-1]:
                with timer(op) if record else contextlib.nullcontext():
                    call()
        snapshot, copy = made["snapshot"], made["copy"]
        raw_image, raw_copy = made["raw_image"], made["raw_copy"]
        workspace_kill(actor=actor, workspace=copy, force=True)
        snapshot_delete(actor=actor, snapshot=snapshot)
        rd.kill(raw_copy)
        raw.remove_image(raw_image, force=True)
    workspace_kill(actor=actor, workspace=source, force=True)
    rd.kill(raw_source)

    mode = "embedded" if settings.EMBEDDED else "production (Celery worker)"
    print(f"DevBench snapshots vs raw docker-py, {runs} runs, {mode} mode, {mb} MB /workspace")
    print_ratios(
        [(op, ours.samples[op], base.samples[op]) for op in ("snapshot", "spawn-from-snapshot")]
    )


if __name__ == "__main__":
    main()
