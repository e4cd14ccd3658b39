"""Graceful shutdown of a worker: finish what can finish, end the rest cleanly.

On SIGTERM (Celery's warm shutdown) the worker stops taking tasks; tasks it had
received but not started are handed back to the broker (they are acknowledged
late). Running execs get ``DEVBENCH_WORKER_DRAIN_TIMEOUT_S`` to end on their
own; then each runner kills its exec's processes, stores the output it has and
ends the exec ``failed`` with ``worker_shutdown``, so none is left ``running``
without a runner. Node workers use the threads pool: the runners run in the
process that receives the signal.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery.signals import worker_shutting_down
from django.conf import settings

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_deadline: float | None = None


def drain_begin(timeout_s: float | None = None) -> None:
    """Start draining (idempotent: a second signal keeps the first deadline)."""
    global _deadline
    timeout = settings.DEVBENCH_WORKER_DRAIN_TIMEOUT_S if timeout_s is None else timeout_s
    with _lock:
        if _deadline is None:
            _deadline = time.monotonic() + timeout
            logger.info("worker draining: running execs get %s s to finish", timeout)


def drain_deadline() -> float | None:
    """The monotonic time after which running execs are ended, or None (not draining)."""
    return _deadline


def drain_reset() -> None:
    global _deadline
    with _lock:
        _deadline = None


@worker_shutting_down.connect
def _on_shutdown(**_: Any) -> None:
    drain_begin()
