"""Long-lived processes keep what they loaded at start out of garbage collection."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from celery.signals import worker_ready

from core.process_memory import freeze_loaded_objects
from devbench_site import celery as celery_app
from devbench_site import server


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process goes on collecting everything


def test_a_web_worker_freezes_what_it_loaded_once_the_app_is_loaded() -> None:
    assert gc.get_freeze_count() == 0
    server.post_worker_init(worker=None)
    # Django, the API's schemas, the MCP tools: far more than a bare interpreter holds.
    assert gc.get_freeze_count() > 50_000


def test_the_celery_worker_freezes_what_it_loaded_when_ready() -> None:
    receivers = [r() if isinstance(r, weakref.ref) else r for _, r in worker_ready.receivers]
    assert celery_app._freeze_loaded_objects in receivers
    celery_app._freeze_loaded_objects()
    assert gc.get_freeze_count() > 50_000


def test_what_is_loaded_is_not_walked_and_later_cycles_are_still_freed() -> None:
    frozen = freeze_loaded_objects()
    # Other threads of the test process may free a few frozen objects meanwhile.
    assert frozen >= gc.get_freeze_count() > frozen - 1000 > 50_000
    assert sum(len(generation) for generation in _generations()) < frozen

    class Node:
        other: Any = None

    first, second = Node(), Node()
    first.other, second.other = second, first  # a reference cycle: only the collector frees it
    gone = weakref.ref(first)
    del first, second
    gc.collect()
    assert gone() is None


def _generations() -> list[list[Any]]:
    return [gc.get_objects(generation) for generation in range(3)]
