"""Celery tasks of execution: thin, each loads ids and calls one worker function.

The runner and kill tasks go to the workspace's node queue (``node.<name>``,
given at send time) because they talk to that node's engine. Both are
``acks_late`` and safe to run twice: the runner claims its exec with a
conditional UPDATE (starting -> running), so a re-delivered task finds the
exec running or finished and returns; killing twice kills nothing more.

``SENDERS`` is how everything else queues these tasks: the services and the
worker functions receive it, so no module below this one imports the tasks.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from celery.exceptions import Reject

from core.errors import EngineUnavailable
from execution import hand_off, live, retention
from execution.drain import drain_deadline
from execution.state import Senders
from execution.worker import exec_execute, exec_kill_processes, exec_reconcile
from workspaces.nodes import node_hand_off, queue_node

logger = logging.getLogger(__name__)


@shared_task(bind=True, name="execution.exec_run", acks_late=True, ignore_result=True)
def exec_run_task(self: Task, exec_pk: int) -> None:
    if drain_deadline() is not None:
        # This worker is shutting down: give the exec back to the queue, unstarted.
        raise Reject("worker shutting down", requeue=True)
    exec_execute(exec_pk=exec_pk, senders=SENDERS, worker=self.request.hostname or "")


@shared_task(
    name="execution.exec_kill",
    acks_late=True,
    ignore_result=True,
    autoretry_for=(EngineUnavailable,),
    retry_backoff=True,
    max_retries=5,
    time_limit=120,
)
def exec_kill_task(exec_pk: int) -> None:
    exec_kill_processes(exec_pk=exec_pk)


@shared_task(name="execution.exec_purge", acks_late=True, ignore_result=True, time_limit=3600)
def exec_purge_task() -> None:
    report = retention.exec_purge()
    if report.execs:
        logger.info(
            "purged %d execs (%d output chunks) past their retention",
            report.execs,
            report.chunks,
            extra={"purged_execs": report.execs, "purged_chunks": report.chunks},
        )


@shared_task(name="execution.exec_reconcile", acks_late=True, ignore_result=True, time_limit=300)
def exec_reconcile_task() -> None:
    exec_reconcile(senders=SENDERS)


def _send_run(exec_pk: int, queue: str, row: dict[str, Any] | None = None) -> None:
    """Hand the runner to its node's worker (with the exec's ``row`` if given); queue its
    task if the worker does not take it."""
    node = queue_node(queue)
    args: dict[str, Any] = {"exec_pk": exec_pk} if row is None else {"exec_pk": exec_pk, "row": row}
    if node is not None and node_hand_off(node, hand_off.RUN, args):
        return
    exec_run_task.apply_async(args=[exec_pk], queue=queue)


SENDERS = Senders(
    run=_send_run,
    kill=lambda pk, queue: exec_kill_task.apply_async(args=[pk], queue=queue),
)
hand_off.hand_off_register(SENDERS)
live.follow_register()
