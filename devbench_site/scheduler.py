"""The embedded mode's periodic scheduler: Celery beat's job, in a thread.

Production runs one ``celery -A devbench_site beat``. The embedded mode has
no beat process, so each serving process starts this thread once; it sends
the same ``CELERY_BEAT_SCHEDULE`` entries through ``apply_async``, which the
embedded mode runs on the in-process task pool. Every job runs once right at
start (a restarted platform reconciles at once), then at its interval.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

SERVER_PROGRAMS = frozenset({"daphne", "uvicorn", "gunicorn"})


@dataclass
class Job:
    name: str
    interval_s: float
    run: Callable[[], Any]
    next_at: float = 0.0


def _task(task_name: str) -> Any:
    from devbench_site.celery import app

    if task_name not in app.tasks:
        # A web process never imports the apps' task modules; a worker does at start.
        app.loader.import_default_modules()
    return app.tasks[task_name]


def _send(task_name: str, options: Mapping[str, Any]) -> Callable[[], Any]:
    def run() -> Any:
        return _task(task_name).apply_async(**dict(options))

    return run


def jobs_from_schedule(schedule: Mapping[str, Mapping[str, Any]]) -> list[Job]:
    """Jobs for every beat entry with a plain interval (seconds or a timedelta)."""
    jobs = []
    for name, entry in schedule.items():
        every = entry["schedule"]
        seconds = every.total_seconds() if hasattr(every, "total_seconds") else float(every)
        jobs.append(Job(name, seconds, _send(entry["task"], entry.get("options", {}))))
    return jobs


class PeriodicScheduler:
    def __init__(self, jobs: Sequence[Job], *, clock: Callable[[], float] = time.monotonic):
        self.jobs = list(jobs)
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_pending(self) -> list[str]:
        """Run every job that is due; returns their names. A failing job does not stop others."""
        now = self._clock()
        ran = []
        for job in self.jobs:
            if job.next_at > now:
                continue
            job.next_at = now + job.interval_s
            try:
                job.run()
            except Exception:  # keep scheduling the other jobs and the next runs
                logger.exception("periodic job %s failed", job.name)
            ran.append(job.name)
        return ran

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_pending()
            next_at = min((j.next_at for j in self.jobs), default=self._clock() + 60)
            self._stop.wait(max(0.05, next_at - self._clock()))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="devbench-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)


def is_serving(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """True in a process that serves requests (not migrate, shell, tests, workers)."""
    if not argv:
        return False
    program = Path(argv[0])
    if program.name in SERVER_PROGRAMS or program.parent.name in SERVER_PROGRAMS:
        return True  # `daphne …` or `python -m daphne …`
    if len(argv) > 1 and argv[1] == "runserver":
        # The autoreloader's parent only watches files; its child (RUN_MAIN) serves.
        return environ.get("RUN_MAIN") == "true" or "--noreload" in argv
    return False


_started: PeriodicScheduler | None = None
_lock = threading.Lock()


def maybe_start(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> PeriodicScheduler | None:
    """Start the scheduler once per process when DEVBENCH_SCHEDULER says so."""
    global _started
    mode = settings.DEVBENCH_SCHEDULER
    if mode == "off":
        return None
    if mode != "on" and not (
        settings.EMBEDDED
        and is_serving(argv or sys.argv, os.environ if environ is None else environ)
    ):
        return None
    with _lock:
        if _started is None:
            _started = PeriodicScheduler(jobs_from_schedule(settings.CELERY_BEAT_SCHEDULE))
            _started.start()
            logger.info("in-process scheduler started: %s", [j.name for j in _started.jobs])
        return _started
