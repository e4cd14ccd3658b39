"""What routing through a node worker costs: the same calls on the local engine and
through the node's agent, in one run, on one workspace.

    DATABASE_URL=... REDIS_URL=... SECRET_KEY=... ALLOWED_HOSTS=localhost \\
        .venv/bin/python bench/bench_nodes.py [--runs 20] [--big-runs 5] [--only TEXT]

Production path only (PostgreSQL, Redis): the bench starts a Celery worker on
``default,node.<DEVBENCH_NODE>``, which registers the node and serves its agent.
Both sides use the same engine and container, so the difference is the hop:

* local: this process calls the engine itself (``DEVBENCH_ENGINE_DIRECT=true``,
  what the embedded mode and a node worker do);
* routed: this process has no engine and goes through the worker's agent
  (``DEVBENCH_ENGINE_DIRECT=false``, what a web process does).

Operations: ``fs_write`` / ``fs_read`` of 1 MiB and 64 MiB (streamed),
``workspace_stats``-free calls only (stats waits for the engine's 1 s tick),
``fs_stat``, a helper exec (``exec_collect`` of ``true``: what the shell's
process-tree kill uses, and file commands where no helper shell can run), and
``exec_run`` of ``echo hi`` (runs on the node worker in both cases; the caller only
reads the database).

Beside each ratio: the CPU this process and the worker spent per call on each side
(from /proc), which moves much less than the wall clock with the machine's load.
The routed side reaches the agent on its Unix socket (both processes share the
host); ``DEVBENCH_NODE_AGENT_SOCKET_DIR=`` (empty) sends it over TCP, which speaks
TLS unless ``DEVBENCH_NODE_AGENT_TLS=false``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import ratio_line, timed  # noqa: E402
from _workers import cpu_s, start_celery_worker  # noqa: E402

IMAGE = "devbench/busybox:latest"
MiB = 1024 * 1024
SMALL = "small.bin"
ECHO = ["echo", "hi"]


def compare(
    name: str,
    runs: int,
    *,
    local: Callable[[], object],
    through: Callable[[], object],
    worker: subprocess.Popen[bytes],
) -> None:
    """Time both sides interleaved (they see the same machine load) and print the ratio,
    then the CPU both processes spent per call: what the hop costs, whatever the load."""
    local()
    through()
    samples: dict[bool, list[float]] = {True: [], False: []}  # direct -> seconds
    cpu = {True: 0.0, False: 0.0}
    pids = (os.getpid(), worker.pid)
    for _ in range(runs):
        for direct, fn in ((False, through), (True, local)):
            before = cpu_s(pids)
            samples[direct].append(timed(fn))
            cpu[direct] += cpu_s(pids) - before
    print(ratio_line(name, samples[False], samples[True], label="local"), flush=True)
    print(
        f"  CPU (caller + node worker) per call: routed {cpu[False] / runs * 1000:.0f} ms,"
        f" local {cpu[True] / runs * 1000:.0f} ms",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--big-runs", type=int, default=5)
    parser.add_argument("--only", default="", help="run the operations whose name has this")
    args = parser.parse_args()
    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        sys.exit("bench_nodes needs DATABASE_URL and REDIS_URL (the production path).")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "devbench_site.settings")
    os.environ.setdefault("DEVBENCH_INSTANCE", f"bench-{uuid.uuid4().hex[:6]}")
    import django

    django.setup()
    import logging

    for name in ("devbench.audit", "celery"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    worker = start_celery_worker("nodes", concurrency=8)

    from execution.services import exec_run
    from tenants.models import Tenant
    from tenants.principal import system_principal
    from workspaces.filesystem.services import fs_read, fs_read_stream, fs_stat, fs_write
    from workspaces.nodes import workspace_driver
    from workspaces.runtime.base import ExecSpec
    from workspaces.services import workspace_kill, workspace_spawn

    tenant = Tenant.objects.create(slug=f"bench-{uuid.uuid4().hex[:8]}", name="bench")
    actor = system_principal(tenant)
    settings.DEVBENCH_ENGINE_DIRECT = False  # placed on the node the worker registered
    workspace = workspace_spawn(actor=actor, image=IMAGE, wait=True)
    small, big = os.urandom(MiB), os.urandom(64 * MiB)

    def routed(direct: bool, fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            settings.DEVBENCH_ENGINE_DIRECT = direct
            return fn()

        return run

    def read_streamed() -> int:
        stream = fs_read_stream(actor=actor, workspace=workspace, path="big.bin")
        return sum(len(c) for c in stream.chunks())

    def helper_exec() -> object:
        return workspace_driver(workspace).exec_collect(
            workspace.container_id, ExecSpec(cmd=["true"])
        )

    def write(path: str, data: bytes) -> Callable[[], object]:
        return lambda: fs_write(actor=actor, workspace=workspace, path=path, content=data)

    operations: list[tuple[str, int, Callable[[], object]]] = [
        ("fs_write 1 MiB", args.runs, write(SMALL, small)),
        ("fs_read 1 MiB", args.runs, lambda: fs_read(actor=actor, workspace=workspace, path=SMALL)),
        ("fs_stat", args.runs, lambda: fs_stat(actor=actor, workspace=workspace, path=SMALL)),
        ("fs_write 64 MiB", args.big_runs, write("big.bin", big)),
        ("fs_read 64 MiB", args.big_runs, read_streamed),
        ("helper exec", args.runs, helper_exec),
        ("exec_run echo", args.runs, lambda: exec_run(actor=actor, workspace=workspace, cmd=ECHO)),
    ]  # fmt: skip
    operations = [op for op in operations if args.only in op[0]]
    try:
        print(
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
            f"runs {args.runs}/{args.big_runs}; ratio = routed / local"
        )
        for name, runs, fn in operations:
            compare(name, runs, local=routed(True, fn), through=routed(False, fn), worker=worker)
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
    finally:
        settings.DEVBENCH_ENGINE_DIRECT = True
        workspace_kill(actor=actor, workspace=workspace, force=True)
        tenant.delete()
        worker.terminate()
        worker.wait(timeout=20)


if __name__ == "__main__":
    main()
