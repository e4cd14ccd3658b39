"""The embedded mode's in-process periodic scheduler."""

import threading
from datetime import timedelta

import pytest

from devbench_site import scheduler
from devbench_site.scheduler import Job, PeriodicScheduler, is_serving, jobs_from_schedule


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_jobs_run_at_start_then_at_their_interval():
    clock = FakeClock()
    calls: list[str] = []
    fast = Job("fast", 10, lambda: calls.append("fast"))
    slow = Job("slow", 60, lambda: calls.append("slow"))
    sched = PeriodicScheduler([fast, slow], clock=clock)
    assert sched.run_pending() == ["fast", "slow"]  # at once: a restart reconciles at once
    clock.now += 9
    assert sched.run_pending() == []
    clock.now += 1
    assert sched.run_pending() == ["fast"]
    clock.now += 50
    assert sched.run_pending() == ["fast", "slow"]
    assert calls == ["fast", "slow", "fast", "fast", "slow"]


def test_a_failing_job_does_not_stop_the_others():
    calls: list[str] = []

    def boom() -> None:
        raise RuntimeError("engine down")

    sched = PeriodicScheduler([Job("boom", 1, boom), Job("ok", 1, lambda: calls.append("ok"))])
    assert sched.run_pending() == ["boom", "ok"]
    assert calls == ["ok"]


def test_the_thread_runs_jobs_and_stops():
    ran = threading.Event()
    sched = PeriodicScheduler([Job("tick", 0.01, ran.set)])
    sched.start()
    try:
        assert ran.wait(5)
    finally:
        sched.stop()
    assert sched._thread is not None and not sched._thread.is_alive()


def test_jobs_come_from_the_beat_schedule(monkeypatch):
    sent = []

    class FakeTask:
        def apply_async(self, **options):
            sent.append(options)

    from devbench_site.celery import app

    monkeypatch.setitem(app.tasks, "demo.task", FakeTask())
    jobs = jobs_from_schedule(
        {
            "a": {"task": "demo.task", "schedule": 30.0, "options": {"queue": "q"}},
            "b": {"task": "demo.task", "schedule": timedelta(minutes=2)},
        }
    )
    assert [(j.name, j.interval_s) for j in jobs] == [("a", 30.0), ("b", 120.0)]
    for job in jobs:
        job.run()
    assert sent == [{"queue": "q"}, {}]


@pytest.mark.parametrize(
    ("argv", "environ", "serving"),
    [
        (["/usr/bin/daphne", "devbench_site.asgi:application"], {}, True),
        (["/venv/lib/python3.11/site-packages/daphne/__main__.py", "x"], {}, True),
        (["manage.py", "runserver"], {"RUN_MAIN": "true"}, True),
        (["manage.py", "runserver"], {}, False),  # the autoreloader's watcher
        (["manage.py", "runserver", "--noreload"], {}, True),
        (["manage.py", "migrate"], {}, False),
        (["/venv/bin/celery", "-A", "devbench_site", "worker"], {}, False),
        (["/venv/bin/pytest"], {}, False),
        ([], {}, False),
    ],
)
def test_only_serving_processes_start_it(argv, environ, serving):
    assert is_serving(argv, environ) is serving


def test_started_once_and_only_when_configured(settings, monkeypatch):
    monkeypatch.setattr(scheduler, "_started", None)
    started: list[PeriodicScheduler] = []
    monkeypatch.setattr(PeriodicScheduler, "start", lambda self: started.append(self))
    serving = ["manage.py", "runserver", "--noreload"]

    settings.EMBEDDED = False  # production: beat does this job
    assert scheduler.maybe_start(serving) is None
    settings.EMBEDDED = True
    settings.DEVBENCH_SCHEDULER = "off"
    assert scheduler.maybe_start(serving) is None
    settings.DEVBENCH_SCHEDULER = "auto"
    assert scheduler.maybe_start(["manage.py", "migrate"]) is None
    first = scheduler.maybe_start(serving)
    assert first is not None and scheduler.maybe_start(serving) is first
    assert len(started) == 1
    assert {j.name for j in first.jobs} == set(settings.CELERY_BEAT_SCHEDULE)


def test_every_beat_job_finds_its_task_in_a_fresh_web_process(tmp_path):
    """A web process has not imported the task modules; the scheduler must still send."""
    import os
    import subprocess
    import sys

    probe = (
        "import django; django.setup()\n"
        "from django.conf import settings\n"
        "from devbench_site.scheduler import _task\n"
        "for entry in settings.CELERY_BEAT_SCHEDULE.values():\n"
        "    print(_task(entry['task']).name)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DJANGO_SETTINGS_MODULE="devbench_site.settings", DEVBENCH_VAR_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    from django.conf import settings

    expected = sorted(str(e["task"]) for e in settings.CELERY_BEAT_SCHEDULE.values())
    assert sorted(result.stdout.split()) == expected
