"""Starting an exec's runner on its node at once, without the broker's round trip.

An exec's runner is normally a Celery task on its node's queue: the web process
publishes it to Redis, the node's worker fetches it, and only then does the
runner start (~10 ms on an idle machine, most of what separates a short exec
from the engine's own). So the web process first hands the runner to the node's
worker directly, through its agent (``workspaces.nodes.node_hand_off``); the
worker starts it in a thread of its own and answers. The task stays the durable
path: when the worker does not take the runner (all ``DEVBENCH_EXEC_HAND_OFF_RUNNERS``
busy, shutting down, unreachable), the task is queued as before. Either way the
runner claims its exec with a conditional UPDATE, so it runs once even if both
paths started it; one that was taken and never started (the worker died) is
sent again by reconciliation, like a lost task.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.conf import settings
from django.db import connections

from execution.drain import drain_deadline
from execution.state import Senders
from execution.worker import exec_execute
from workspaces.runtime.agent import register_hand_off

logger = logging.getLogger(__name__)

RUN = "exec_run"

_lock = threading.Lock()
_running = 0


def _take_run(args: dict[str, Any], *, senders: Senders) -> bool:
    exec_pk = args.get("exec_pk")
    if not isinstance(exec_pk, int) or isinstance(exec_pk, bool):
        raise ValueError("exec_pk must be an integer.")
    row = args.get("row")
    if row is not None and not isinstance(row, dict):
        raise ValueError("row must be an object.")
    global _running
    with _lock:
        # A draining worker starts nothing new: the queued task goes to another worker
        # (or to this one once it is back).
        if drain_deadline() is not None or _running >= settings.DEVBENCH_EXEC_HAND_OFF_RUNNERS:
            return False
        _running += 1
    # Not a daemon: a worker shutting down waits for its runners, which end their execs
    # (``execution.drain``), as it waits for its pool's tasks.
    thread = threading.Thread(
        target=_run, args=(exec_pk, senders, row), name=f"exec-hand-off-{exec_pk}"
    )
    try:
        thread.start()
    except RuntimeError:  # no thread to be had: the caller queues the task instead
        _release()
        return False
    return True


def _release() -> None:
    global _running
    with _lock:
        _running -= 1


def _run(exec_pk: int, senders: Senders, row: dict[str, Any] | None) -> None:
    try:
        exec_execute(exec_pk=exec_pk, senders=senders, row=row)
    except Exception:
        # The exec is already ended failed (or left to reconciliation) by its runner.
        logger.exception("runner of exec %s failed", exec_pk)
    finally:
        connections.close_all()  # this thread's: back to the pool
        _release()


def hand_off_register(senders: Senders) -> None:
    """Let this process's agent take runners (``senders`` queue the tasks they need)."""
    register_hand_off(RUN, lambda args: _take_run(args, senders=senders))
