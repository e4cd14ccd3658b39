"""The request id travels with the tasks a request causes (Celery message headers).

``before_task_publish`` copies the current request id into the message's
headers; ``task_prerun`` binds it (with the task's name and id) for the task's
logs and audit events, so one id follows a spawn from the web log to the
worker log and the audit trail. A task queued by a periodic job gets an id of
its own. After each task the process's database pool statistics are sampled
for the metrics; a worker started with ``DEVBENCH_WORKER_METRICS_PORT`` serves
its metrics on that port.
"""

from __future__ import annotations

import contextvars
from typing import Any

import structlog
from celery.signals import before_task_publish, task_postrun, task_prerun, worker_init

from core import metrics, request_context
from devbench_site.metrics import worker_metrics_serve

HEADER = "devbench_request_id"

_tokens: dict[str, contextvars.Token[request_context.RequestContext | None]] = {}


@before_task_publish.connect
def _send_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    request_id = request_context.current().request_id
    if headers is not None and request_id:
        headers.setdefault(HEADER, request_id)


def bind_for_task(*, request_id: str, task_name: str, task_id: str) -> contextvars.Token[Any]:
    """Bind the causing request's id (or a new one) for the task about to run."""
    structlog.contextvars.bind_contextvars(task=task_name, task_id=task_id)
    return request_context.bind(
        request_context.RequestContext(
            request_id=request_context.request_id_from(request_id or ""),
            user_agent=f"task:{task_name}"[:300],
        )
    )


@task_prerun.connect
def _bind(task_id: str = "", task: Any = None, **_: Any) -> None:
    if task is None:
        return
    # In-process (embedded) tasks run with the submitting request's context already bound.
    incoming = task.request.get(HEADER) or request_context.current().request_id
    _tokens[task_id] = bind_for_task(request_id=incoming, task_name=task.name, task_id=task_id)


@task_postrun.connect
def _unbind(task_id: str = "", **_: Any) -> None:
    token = _tokens.pop(task_id, None)
    if token is not None:
        try:
            request_context.reset(token)
        except ValueError:  # bound in another context (should not happen): just clear
            request_context.bind(request_context.RequestContext())
    structlog.contextvars.unbind_contextvars("task", "task_id")
    metrics.db_pool_sample()


@worker_init.connect
def _serve_worker_metrics(**_: Any) -> None:
    from django.conf import settings

    if settings.DEVBENCH_WORKER_METRICS_PORT:
        worker_metrics_serve(
            settings.DEVBENCH_WORKER_METRICS_PORT, settings.DEVBENCH_WORKER_METRICS_ADDR
        )
