"""Live chunks kept until the ones before them are sent (execution.ahead), and the
publisher folding queued output into fewer channel messages (execution.notify)."""

from __future__ import annotations

from typing import Any

import pytest

from execution import notify
from execution.ahead import AheadBuffer


def test_kept_chunks_come_out_once_the_gap_before_them_is_filled() -> None:
    ahead = AheadBuffer()
    assert ahead.keep([[5, 1, b"e"], [6, 2, b"f"]], sent_seq=2)
    assert ahead.keep([[8, 1, b"h"]], sent_seq=2)
    assert ahead.take_ready(sent_seq=2) == []  # 3 and 4 still missing
    assert [c[0] for c in ahead.take_ready(sent_seq=4)] == [5, 6]  # 7 still missing
    assert ahead
    assert [c[0] for c in ahead.take_ready(sent_seq=7)] == [8]
    assert not ahead


def test_chunks_already_sent_are_dropped_not_repeated() -> None:
    ahead = AheadBuffer()
    assert ahead.keep([[2, 1, b"b"], [3, 1, b"c"], [4, 1, b"d"]], sent_seq=2)  # 2 was sent
    # The database sent 3 meanwhile: only 4 is still due.
    assert [(c[0], c[2]) for c in ahead.take_ready(sent_seq=3)] == [(4, b"d")]
    assert not ahead


def test_past_the_bound_nothing_is_kept_and_the_caller_reads_the_database() -> None:
    ahead = AheadBuffer(max_bytes=4)
    assert ahead.keep([[3, 1, b"ab"]], sent_seq=1)
    assert not ahead.keep([[4, 1, b"cde"]], sent_seq=1)
    assert not ahead
    assert ahead.take_ready(sent_seq=2) == []
    assert ahead.keep([[9, 1, b"abcd"]], sent_seq=1)  # usable again afterwards


def _output(*seqs: int, size: int = 1) -> dict[str, Any]:
    chunks = [[seq, 1, b"x" * size] for seq in seqs]
    return {"type": notify.EVENT_TYPE, "last_seq": seqs[-1], "status": "running", "chunks": chunks}


def _outbox(*messages: dict[str, Any]) -> notify._Outbox:
    outbox = notify._Outbox()
    for message in messages:
        outbox.add(message)
    return outbox


def test_queued_output_leaves_in_one_message_in_order_up_to_the_size_bound() -> None:
    """Output queued behind a send leaves merged; the store's progress wake-ups queued
    between it leave once, after it (a wake-up is never folded into output)."""
    wake = {"type": notify.EVENT_TYPE, "last_seq": 3, "status": "running"}
    later = {"type": notify.EVENT_TYPE, "last_seq": 4, "status": "running"}
    outbox = _outbox(_output(1), _output(2, 3), wake, _output(4), later, _output(5))
    merged = outbox.take()
    assert [c[0] for c in merged["chunks"]] == [1, 2, 3, 4, 5]
    assert merged["last_seq"] == 5
    assert outbox.take() == later  # the latest passed wake-up, once
    assert not outbox and outbox.output_bytes == 0

    # Folding stops at the size bound: the passed wake-up goes out before what is left.
    half = notify.MAX_MESSAGE_BYTES // 2 + 1
    outbox = _outbox(_output(1, size=half), wake, _output(2, size=half))
    assert [c[0] for c in outbox.take()["chunks"]] == [1]
    assert outbox.take() == wake
    assert [c[0] for c in outbox.take()["chunks"]] == [2]
    assert not outbox

    half = notify.MAX_MESSAGE_BYTES // 2
    outbox = _outbox(_output(1, size=half), _output(2, size=half), _output(3, size=1))
    assert [c[0] for c in outbox.take()["chunks"]] == [1, 2]
    assert [c[0] for c in outbox.take()["chunks"]] == [3]


def test_output_queued_past_the_bound_is_let_go_but_wake_ups_stay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(notify, "MAX_QUEUED_BYTES", 10)
    wake = {"type": notify.EVENT_TYPE, "last_seq": 1, "status": "running"}
    outbox = _outbox(_output(1, size=6), wake)
    outbox.add(_output(2, size=6))  # 12 bytes waiting: more than Redis takes now
    assert outbox.take() == wake
    assert not outbox and outbox.output_bytes == 0
    outbox.add(_output(3, size=6))  # later output is sent again
    assert [c[0] for c in outbox.take()["chunks"]] == [3]


def test_a_queued_wake_up_is_superseded_by_the_next_wake_up_not_by_output() -> None:
    """The runner's end queued behind the store's "stored up to 3" leaves without it;
    output never replaces a wake-up (it may be let go), nor does anything replace an
    end or an announced final state."""

    def wake(seq: int, status: str = "running", **more: Any) -> dict[str, Any]:
        return {"type": notify.EVENT_TYPE, "last_seq": seq, "status": status, **more}

    end = wake(4, "completed", final={"exit_code": 0})
    outbox = _outbox(_output(1), wake(1), _output(2, 3), wake(3), end)
    assert [c[0] for c in outbox.take()["chunks"]] == [1, 2, 3]
    assert outbox.take() == end  # wake(1) and wake(3) said less
    assert not outbox

    # A wake-up with nothing after it stays, even with output before it.
    outbox = _outbox(_output(1), wake(1))
    assert [c[0] for c in outbox.take()["chunks"]] == [1]
    assert outbox.take() == wake(1)
    assert not outbox

    outbox = _outbox(wake(1), wake(2), wake(3, "cancelled"), wake(3, "cancelled"))
    assert outbox.take() == wake(3, "cancelled")
    assert outbox.take() == wake(3, "cancelled")  # an end is never dropped
    assert not outbox
