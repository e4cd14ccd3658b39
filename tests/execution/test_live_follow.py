"""Following an exec's output from its runner's memory (``execution.live``): what a
follower gets when it joins late, falls behind, or the output ends; the wire both ways."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from execution import live
from workspaces.runtime.agent import follow_here


def _chunk(seq: int, size: int = 4, stream: int = 1) -> tuple[int, int, bytes]:
    return (seq, stream, bytes([seq % 256]) * size)


def test_a_late_follower_gets_what_is_kept_after_its_seq_then_the_end() -> None:
    output = live.LiveOutput(keep_bytes=100)
    output.add([_chunk(1), _chunk(2), _chunk(3)])
    chunks, ended = output.after(1, timeout_s=0)
    assert [c[0] for c in chunks] == [2, 3] and not ended
    output.end()
    assert output.after(3, timeout_s=5) == ([], True)
    chunks, ended = output.after(0, timeout_s=0)  # what is kept stays readable after the end
    assert [c[0] for c in chunks] == [1, 2, 3] and ended


def test_what_is_kept_is_bounded_and_a_follower_behind_it_gets_a_gap() -> None:
    output = live.LiveOutput(keep_bytes=10)
    output.add([_chunk(1), _chunk(2), _chunk(3)])  # 12 bytes: the oldest goes
    chunks, _ = output.after(0, timeout_s=0)
    assert [c[0] for c in chunks] == [2, 3]  # seq 1 is the gap the database fills
    output.add([_chunk(4, size=50)])  # larger than the bound alone: kept, alone
    chunks, _ = output.after(0, timeout_s=0)
    assert [c[0] for c in chunks] == [4]


def test_what_a_follower_has_not_been_given_is_kept_longer_up_to_its_own_bound() -> None:
    output = live.LiveOutput(keep_bytes=10, keep_chunks=100, followed_bytes=30)
    follower = object()
    output.join(follower, 0)
    output.add([_chunk(seq) for seq in range(1, 7)])  # 24 bytes: none given yet, all kept
    chunks, _ = output.after(0, timeout_s=0, follower=follower)
    assert [c[0] for c in chunks] == [1, 2, 3, 4, 5, 6]
    output.add([_chunk(7), _chunk(8)])  # 32 bytes, past the follower's bound: 1 goes
    assert [c[0] for c in output.after(0, timeout_s=0)[0]] == [2, 3, 4, 5, 6, 7, 8]
    output.after(5, timeout_s=0, follower=follower)  # given up to 5: those before go
    assert [c[0] for c in output.after(0, timeout_s=0)[0]] == [6, 7, 8]
    output.leave(follower)  # nobody behind: back to the plain bound
    assert [c[0] for c in output.after(0, timeout_s=0)[0]] == [7, 8]


def test_a_follower_that_stays_behind_does_not_hold_output_past_the_plain_bound() -> None:
    output = live.LiveOutput(keep_bytes=8, keep_chunks=100, followed_bytes=16)
    slow, fast = object(), object()
    output.join(slow, 0)
    output.join(fast, 0)
    for seq in range(1, 11):
        output.add([_chunk(seq)])
        output.after(seq, timeout_s=0, follower=fast)
    # The slow one holds the followed bound (16 bytes), no more: it has a gap to fill.
    chunks, _ = output.after(0, timeout_s=0, follower=slow)
    assert [c[0] for c in chunks] == [7, 8, 9, 10]
    output.after(10, timeout_s=0, follower=slow)
    output.add([_chunk(11)])
    assert [c[0] for c in output.after(0, timeout_s=0)[0]] == [10, 11]


def test_output_in_many_tiny_chunks_is_bounded_by_their_number_too() -> None:
    output = live.LiveOutput(keep_bytes=10**9, keep_chunks=100)
    for seq in range(1, 1001):  # let go 100 at a time, now and then for good
        output.add([_chunk(seq, size=1)])
    chunks, _ = output.after(0, timeout_s=0)
    assert [c[0] for c in chunks] == list(range(901, 1001))
    chunks, _ = output.after(950, timeout_s=0)
    assert [c[0] for c in chunks] == list(range(951, 1001))
    assert output.after(1000, timeout_s=0) == ([], False)


def test_a_batch_stops_at_its_size_and_the_next_read_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live, "BATCH_BYTES", 10)
    output = live.LiveOutput(keep_bytes=100)
    output.add([_chunk(1), _chunk(2), _chunk(3), _chunk(4)])
    first, ended = output.after(0, timeout_s=0)
    assert [c[0] for c in first] == [1, 2] and not ended
    second, _ = output.after(2, timeout_s=0)
    assert [c[0] for c in second] == [3, 4]


def test_a_waiting_follower_wakes_for_new_output_and_for_a_close() -> None:
    output = live.LiveOutput()
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(output.after(0, timeout_s=30)))
    waiter.start()
    time.sleep(0.05)
    output.add([_chunk(1)])
    waiter.join(5)
    assert got == [([_chunk(1)], False)]

    stop = threading.Event()
    closed = threading.Thread(target=lambda: got.append(output.after(1, timeout_s=30, stop=stop)))
    closed.start()
    time.sleep(0.05)
    stop.set()
    output.wake()
    closed.join(5)
    assert not closed.is_alive() and got[-1] == ([], False)


def test_the_batches_round_trip_the_wire_with_binary_and_empty_data() -> None:
    chunks = [(1, 1, b"\x00\xff" * 3000), (2, 2, b""), (3, 1, "é".encode())]
    assert live.decode(live.encode(chunks)) == [list(c) for c in chunks]
    with pytest.raises(ValueError):
        live.decode(live.encode(chunks)[:-1])


def test_following_in_this_process_until_the_runner_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    live.follow_register()
    assert follow_here(live.FOLLOW, {"exec_id": "x-none", "after_seq": 0}) is None
    for bad in (
        {},
        {"exec_id": 7},
        {"exec_id": "x", "after_seq": -1},
        {"exec_id": "x", "after_seq": True},
    ):
        with pytest.raises(ValueError):
            follow_here(live.FOLLOW, bad)
    monkeypatch.setattr(live, "KEEPALIVE_S", 0.05)
    output = live.begin("x-run")
    output.add([_chunk(1), _chunk(2)])
    followed = follow_here(live.FOLLOW, {"exec_id": "x-run", "after_seq": 1})
    assert followed is not None
    pieces = iter(followed)
    assert live.decode(next(pieces)) == [list(_chunk(2))]
    assert next(pieces) == b""  # quiet: a keep-alive
    other = live.begin("x-run")  # another runner of the same exec (the one that lost its claim)
    live.end("x-run", other)
    output.add([_chunk(3)])
    assert live.decode(next(pieces)) == [list(_chunk(3))]
    live.end("x-run", output)
    assert list(pieces) == []
    assert follow_here(live.FOLLOW, {"exec_id": "x-run", "after_seq": 0}) is None


def test_two_followers_of_one_exec_each_get_every_chunk() -> None:
    output = live.begin("x-two")
    try:
        followers = [follow_here(live.FOLLOW, {"exec_id": "x-two", "after_seq": 0}) for _ in "ab"]
        got: list[list[list[Any]]] = [[], []]

        def read(i: int) -> None:
            follower = followers[i]
            assert follower is not None
            for piece in follower:
                got[i] += live.decode(piece)

        readers = [threading.Thread(target=read, args=(i,)) for i in (0, 1)]
        for reader in readers:
            reader.start()
        for seq in range(1, 201):
            output.add([_chunk(seq)])
    finally:
        live.end("x-two", output)
    for reader in readers:
        reader.join(10)
    assert got[0] == got[1] == [list(_chunk(seq)) for seq in range(1, 201)]
