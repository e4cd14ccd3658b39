"""In-process task execution for the embedded mode.

A small thread pool runs Celery tasks with ``Task.apply`` (retries included),
after the request that queued them has returned. Database connections are
per thread, so each run closes its own when done.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from celery import Task
from django.conf import settings
from django.db import close_old_connections, connections

from core import request_context

logger = logging.getLogger(__name__)

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _get_executor() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=settings.DEVBENCH_IN_PROCESS_WORKERS, thread_name_prefix="devbench-task"
            )
        return _executor


def _run(
    task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], ctx: request_context.RequestContext
) -> Any:
    close_old_connections()
    token = request_context.bind(ctx)  # the request id follows the task, as in Celery
    try:
        result = task.apply(args=args, kwargs=kwargs)
        if result.failed():
            logger.error(
                "in-process task %s failed: %r", task.name, result.result, exc_info=result.result
            )
        return result.result
    finally:
        request_context.reset(token)
        connections.close_all()


def submit(task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[Any]:
    return _get_executor().submit(_run, task, args, kwargs, request_context.current())
