"""The output store's write rhythm: the first output after a quiet spell is written at
once; while output keeps coming, what arrives within WRITE_INTERVAL_S goes in one write
(sooner once WRITE_BYTES wait, and at once on close); one wake-up per write; every
chunk stored, in order."""

from __future__ import annotations

import time
from typing import Any

import pytest

from execution import notify, persist
from execution.models import ExecChunk
from tests.factories import ExecFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _wait_for(condition: Any) -> None:
    for _ in range(3000):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("never happened")


def test_a_stream_is_written_in_batches_and_every_chunk_is_stored(
    tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An interval no test run outlasts: a write before it is due comes from the bytes
    # pending or the close, never from the clock.
    monkeypatch.setattr(persist, "WRITE_INTERVAL_S", 600.0)
    monkeypatch.setattr(persist, "WRITE_BYTES", 10)
    writes: list[list[int]] = []
    wake_ups: list[int] = []
    real_insert = persist.insert_chunks

    def recorded(rows: list[ExecChunk]) -> None:
        real_insert(rows)
        writes.append([row.seq for row in rows])

    monkeypatch.setattr(persist, "insert_chunks", recorded)
    monkeypatch.setattr(
        notify, "publish", lambda public_id, *, last_seq, status: wake_ups.append(last_seq)
    )
    exec_ = ExecFactory(workspace__tenant=tenant)
    store = persist.OutputStore(exec_, cap=1024 * 1024, threaded=True)

    store.put([(1, 1, b"a")])
    _wait_for(lambda: len(wake_ups) == 1)  # nothing written before: at once
    store.put([(2, 1, b"b")])
    store.put([(3, 2, b"c")])
    time.sleep(0.3)
    assert writes == [[1]]  # within the interval, below WRITE_BYTES: waiting
    store.put([(4, 1, b"0123456789")])  # now WRITE_BYTES wait: written without the interval
    _wait_for(lambda: len(wake_ups) == 2)
    store.put([(5, 1, b"e")])
    time.sleep(0.3)
    assert writes == [[1], [2, 3, 4]]
    store.close()  # the end: what is pending is written at once

    assert writes == [[1], [2, 3, 4], [5]]
    assert wake_ups == [1, 4, 5]  # one per write, after it
    stored = ExecChunk.objects.filter(exec=exec_).order_by("seq")
    assert [(c.seq, c.stream, bytes(c.data)) for c in stored] == [
        (1, 1, b"a"),
        (2, 1, b"b"),
        (3, 2, b"c"),
        (4, 1, b"0123456789"),
        (5, 1, b"e"),
    ]
    assert store.accounting()["last_seq"] == 5
