"""The exec stream's frame parser (``demultiplexed``): frames cut anywhere by the
socket's reads, output read with the start's answer, large and empty frames, an end
mid-frame."""

from __future__ import annotations

import struct
from collections.abc import Callable

from workspaces.runtime.docker.exec import demultiplexed, demultiplexed_batches


def _frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def _reads(data: bytes, size: int) -> Callable[[int], bytes]:
    """A recv that gives ``data`` at most ``size`` bytes at a time, then the end."""
    position = 0

    def recv(wanted: int) -> bytes:
        nonlocal position
        piece = data[position : position + min(size, wanted)]
        position += len(piece)
        return piece

    return recv


def _joined(frames: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Consecutive pieces of one stream joined (a frame may come in several pieces)."""
    joined: list[tuple[int, bytes]] = []
    for stream, data in frames:
        if joined and joined[-1][0] == stream:
            joined[-1] = (stream, joined[-1][1] + data)
        else:
            joined.append((stream, data))
    return joined


FRAMES = [(1, b"out 1\n"), (2, b"err 1\n"), (1, b""), (1, b"x" * 70_000), (2, b"\xff\x00end")]
STREAM = b"".join(_frame(stream, data) for stream, data in FRAMES)
EXPECTED = [(1, b"out 1\n"), (2, b"err 1\n"), (1, b"x" * 70_000), (2, b"\xff\x00end")]


def test_frames_cut_at_every_byte_come_out_whole_and_in_order() -> None:
    for size in (1, 3, 7, 8, 9, 4096, 65536):
        frames = list(demultiplexed(b"", _reads(STREAM, size)))
        assert all(data for _, data in frames)
        assert _joined(frames) == EXPECTED, size


def test_output_read_with_the_answer_comes_first_whatever_it_cuts() -> None:
    for cut in (0, 1, 5, 8, 14, 20, len(STREAM) - 1, len(STREAM)):
        frames = list(demultiplexed(STREAM[:cut], _reads(STREAM[cut:], 1000)))
        assert _joined(frames) == EXPECTED, cut


def test_a_large_frame_is_handed_on_as_it_arrives() -> None:
    big = _frame(1, b"y" * 200_000)
    pieces = list(demultiplexed(b"", _reads(big, 65536)))
    assert len(pieces) > 1 and b"".join(data for _, data in pieces) == b"y" * 200_000


def test_a_whole_read_is_handed_on_without_a_copy() -> None:
    data = b"z" * 1000
    first = _frame(1, b"")  # a header alone, then a read of exactly the frame's data
    header = struct.pack(">BxxxL", 1, len(data))
    reads = iter([header, data, b""])
    frames = list(demultiplexed(first, lambda _: next(reads)))
    assert frames == [(1, data)] and frames[0][1] is data


def test_an_end_mid_frame_ends_the_output_with_what_arrived() -> None:
    cut = STREAM[: len(_frame(1, b"out 1\n")) + 8 + 3]  # the second frame's data cut short
    assert _joined(list(demultiplexed(b"", _reads(cut, 5)))) == [(1, b"out 1\n"), (2, b"err")]
    assert list(demultiplexed(b"\x01\x00\x00", _reads(b"", 5))) == []  # inside a header


def test_batches_hold_what_one_read_brought() -> None:
    small = [(1, b"a\n"), (2, b"b\n"), (1, b"c\n")]
    stream = b"".join(_frame(s, d) for s, d in small)
    # All in one read: one batch; one frame a read: a batch each.
    assert list(demultiplexed_batches(b"", _reads(stream, 65536))) == [small]
    per_frame = len(_frame(1, b"a\n"))
    assert list(demultiplexed_batches(b"", _reads(stream, per_frame))) == [[f] for f in small]
    # A read that ends mid-header gives no empty batch; the frames stay whole and in order.
    batches = list(demultiplexed_batches(stream[:5], _reads(stream[5:], 7)))
    assert all(batches) and _joined([f for b in batches for f in b]) == small
