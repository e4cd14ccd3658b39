"""core.engine_read_pool: a few threads for file metadata reads, overflowing while stuck."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from core import engine_read_pool
from core.engine_read_pool import EngineReadPool


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[EngineReadPool, ThreadPoolExecutor]]:
    monkeypatch.setattr(engine_read_pool, "STALL_S", 0.3)
    overflow = ThreadPoolExecutor(max_workers=4, thread_name_prefix="overflow")
    pool = EngineReadPool(1, lambda: overflow)
    yield pool, overflow
    pool.shutdown(wait=True)
    overflow.shutdown(wait=True)


def _thread_name() -> str:
    return threading.current_thread().name


def test_reads_run_on_the_pool_and_queue_behind_a_busy_thread(
    pools: tuple[EngineReadPool, ThreadPoolExecutor],
) -> None:
    pool, _ = pools
    assert pool.submit(_thread_name).result(timeout=10).startswith("engine-read")
    release = threading.Event()
    busy = pool.submit(release.wait, 10)
    queued = pool.submit(_thread_name)
    time.sleep(0.1)  # under STALL_S: the thread is taken, not stuck
    assert not queued.done()  # waits for the pool's thread, not the overflow's
    release.set()
    assert busy.result(timeout=10)
    assert queued.result(timeout=10).startswith("engine-read")
    assert not pool.stalled()


def test_while_every_thread_is_stuck_reads_go_to_the_overflow(
    pools: tuple[EngineReadPool, ThreadPoolExecutor],
) -> None:
    pool, _ = pools
    release = threading.Event()
    stuck = pool.submit(release.wait, 10)
    time.sleep(0.5)  # over STALL_S without a finish
    assert pool.stalled()
    # Answered at once, by the overflow: not queued behind the stuck thread.
    assert pool.submit(_thread_name).result(timeout=2).startswith("overflow")
    release.set()
    assert stuck.result(timeout=10)
    # A finish is progress: reads come back to the pool.
    assert not pool.stalled()
    assert pool.submit(_thread_name).result(timeout=10).startswith("engine-read")


def test_an_idle_pool_that_gets_a_read_is_not_stalled(
    pools: tuple[EngineReadPool, ThreadPoolExecutor],
) -> None:
    pool, _ = pools
    time.sleep(0.5)  # idle longer than STALL_S: idleness is no stall
    release = threading.Event()
    busy = pool.submit(release.wait, 10)
    assert not pool.stalled()
    release.set()
    assert busy.result(timeout=10)
