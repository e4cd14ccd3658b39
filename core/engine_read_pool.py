"""A few threads for a web process's file metadata reads, and a way out when they stick.

An fs stat or list answers from the workspace's node (its agent reads the container's
root), typically within a millisecond or two. On the large request pool fifty clients
had fifty threads taking turns on the interpreter lock, as the quick reads once did: at
50 clients fs stat gave ~730 req/s with a p99 of ~150 ms on two cores; on three threads
~920 req/s with a p99 of ~80 (bench/README.md § Thirtieth pass).

Unlike the quick reads, these wait for a node, and a node that stops answering would
hold every one of the few threads until its call times out. So the pool watches for
that: while all its threads are taken and none has finished anything for
``STALL_S``, new reads go to the overflow (the large pool, where every engine call runs)
instead of queueing behind the stuck ones, until one of them finishes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, Final, ParamSpec, TypeVar

STALL_S: Final = 1.0

P = ParamSpec("P")
T = TypeVar("T")


class EngineReadPool(Executor):
    """``threads`` threads; reads overflow to ``overflow()`` while those are stuck."""

    def __init__(self, threads: int, overflow: Callable[[], Executor]) -> None:
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="engine-read")
        self._overflow = overflow
        self._lock = threading.Lock()
        self._taken = 0  # submitted here and not finished (running or queued)
        self._progress = time.monotonic()  # the last finish, or the start of being busy

    def stalled(self) -> bool:
        """Every thread taken, and none has finished anything for ``STALL_S``."""
        with self._lock:
            return self._stalled_locked()

    def _stalled_locked(self) -> bool:
        return self._taken >= self.threads and time.monotonic() - self._progress > STALL_S

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        with self._lock:
            stalled = self._stalled_locked()
            if not stalled:
                if self._taken == 0:
                    self._progress = time.monotonic()
                self._taken += 1
        if stalled:
            return self._overflow().submit(fn, *args, **kwargs)
        future = self._pool.submit(fn, *args, **kwargs)
        future.add_done_callback(self._finished)
        return future

    def _finished(self, _: Future[Any]) -> None:
        with self._lock:
            self._taken -= 1
            self._progress = time.monotonic()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)
