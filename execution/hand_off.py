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

from typing import Any

from django.conf import settings

from execution.drain import drain_deadline
from execution.state import Senders
from execution.worker import exec_execute
from workspaces.runtime.agent import register_hand_off
from workspaces.runtime.hand_off_threads import HandOffThreads

RUN = "exec_run"

# A draining worker starts nothing new: the queued task goes to another worker (or to
# this one once it is back).
RUNNERS = HandOffThreads(
    limit=lambda: int(settings.DEVBENCH_EXEC_HAND_OFF_RUNNERS),
    refuse=lambda: drain_deadline() is not None,
)


def _take_run(args: dict[str, Any], *, senders: Senders) -> bool:
    exec_pk = args.get("exec_pk")
    if not isinstance(exec_pk, int) or isinstance(exec_pk, bool):
        raise ValueError("exec_pk must be an integer.")
    row = args.get("row")
    if row is not None and not isinstance(row, dict):
        raise ValueError("row must be an object.")
    # A runner that fails has already ended its exec failed (or left it to reconciliation).
    return RUNNERS.start(
        lambda: exec_execute(exec_pk=exec_pk, senders=senders, row=row),
        name=f"exec-hand-off-{exec_pk}",
    )


def hand_off_register(senders: Senders) -> None:
    """Let this process's agent take runners (``senders`` queue the tasks they need)."""
    register_hand_off(RUN, lambda args: _take_run(args, senders=senders))
