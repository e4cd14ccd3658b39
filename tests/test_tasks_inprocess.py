"""Embedded mode: tasks run on the in-process pool, after the caller returns."""

import threading

import pytest

from devbench_site.celery import app

started = threading.Event()
release = threading.Event()
seen: dict[str, object] = {}


@app.task(name="tests.record_thread", bind=True, max_retries=2)
def record_thread(self, value: int) -> int:
    seen["thread"] = threading.current_thread().name
    seen["value"] = value
    seen["attempts"] = self.request.retries + 1
    if self.request.retries < 1:
        raise self.retry(countdown=0)
    started.set()
    release.wait(10)
    return value * 2


def test_in_process_tasks_run_off_the_calling_thread(settings):
    settings.CELERY_TASKS_IN_PROCESS = True
    started.clear()
    release.clear()
    future = record_thread.apply_async(args=(21,))
    # The call returned while the task is still blocked: it did not run eagerly.
    assert started.wait(10)
    assert not future.done()
    release.set()
    assert future.result(timeout=10) == 42
    assert seen["value"] == 21
    assert seen["attempts"] == 2  # the retry ran too
    assert str(seen["thread"]).startswith("devbench-task")
    assert seen["thread"] != threading.current_thread().name


@pytest.mark.django_db
def test_delay_goes_through_the_same_path(settings):
    settings.CELERY_TASKS_IN_PROCESS = True
    started.clear()
    release.set()
    future = record_thread.delay(5)
    assert future.result(timeout=10) == 10
