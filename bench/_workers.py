"""The Celery worker a production-path benchmark needs, started the same way everywhere."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_celery_worker(
    name: str, *, concurrency: int = 8, timeout_s: float = 60
) -> subprocess.Popen[bytes]:
    """A worker on the default and this node's queue, returned once it reports ready."""
    from django.conf import settings

    log_path = Path(tempfile.gettempdir()) / f"devbench-bench-{name}-worker.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "devbench_site", "worker", "-P", "threads",
         "-c", str(concurrency), "-Q", f"default,node.{settings.DEVBENCH_NODE}",
         "-n", f"bench-{name}@{uuid.uuid4().hex[:6]}", "--without-mingle", "--without-gossip",
         "--loglevel=INFO"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while "ready." not in log_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"celery worker did not start; see {log_path}")
        time.sleep(0.1)
    return proc


def setup_django(name: str, *, concurrency: int = 8) -> subprocess.Popen[bytes] | None:
    """Django on the embedded default, or on DATABASE_URL with a Celery worker (returned)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "devbench_site.settings")
    os.environ.setdefault("DEVBENCH_INSTANCE", f"bench-{uuid.uuid4().hex[:6]}")
    production = bool(os.environ.get("DATABASE_URL"))
    if not production:
        os.environ["DEVBENCH_VAR_DIR"] = tempfile.mkdtemp(prefix="devbench-bench-")
    import django

    django.setup()
    for logger in ("devbench.audit", "celery"):  # one line per action / task otherwise
        logging.getLogger(logger).setLevel(logging.WARNING)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return start_celery_worker(name, concurrency=concurrency) if production else None


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
    return found


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pids: Iterable[int]) -> float:
    """User + system CPU seconds the processes have used (threads included), with what
    their children that have ended used: taken over a whole group of processes at two
    moments, the difference counts the processes born between them (PostgreSQL's
    backends for new pooled connections) and those that ended (reaped by a parent in
    the group), which a fixed list of pids misses."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / _CLOCK_TICKS


def pids_named(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(pid) for pid in found.split()]
