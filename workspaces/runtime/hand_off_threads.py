"""Work a node's worker takes from a hand-off, each piece in a thread of its own.

A hand-off (``agent.register_hand_off``) must answer at once, so the work runs in
a thread the worker starts for it: at most ``limit()`` at a time per kind (past
that the caller queues the work as a task instead), and none while ``refuse()``
says so (the worker is shutting down: the queued task goes to another worker).
The threads are not daemons: a worker shutting down waits for them as it waits
for its pool's tasks. Each gives its database connection back when it ends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import connections

logger = logging.getLogger(__name__)


class HandOffThreads:
    def __init__(self, *, limit: Callable[[], int], refuse: Callable[[], bool]) -> None:
        self._limit = limit
        self._refuse = refuse
        self._lock = threading.Lock()
        self._running = 0

    @property
    def running(self) -> int:
        return self._running

    def start(self, work: Callable[[], None], *, name: str) -> bool:
        """Run ``work`` in a new thread called ``name``; False (nothing started) when
        the bound is reached, ``refuse()`` is true or no thread can be had."""
        with self._lock:
            if self._refuse() or self._running >= self._limit():
                return False
            self._running += 1
        thread = threading.Thread(target=self._run, args=(work, name), name=name)
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: the caller queues the work instead
            self._release()
            return False
        return True

    def _run(self, work: Callable[[], None], name: str) -> None:
        try:
            work()
        except Exception:
            # The work records its own failure (an exec ends failed, a workspace error);
            # what is left, reconciliation repairs.
            logger.exception("%s failed", name)
        finally:
            connections.close_all()  # this thread's: back to the pool
            self._release()

    def _release(self) -> None:
        with self._lock:
            self._running -= 1
