"""The exec stream's frame parser (``demultiplexed``): frames cut anywhere by the
socket's reads, output read with the start's answer, large and empty frames, an end
mid-frame; and the socket's gathering reads (``GatheringReads``)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable

from workspaces.runtime.docker.exec import (
    GatheringReads,
    demultiplexed,
    demultiplexed_batches,
    shutdown_stream,
)


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


def test_frames_of_one_stream_in_one_read_come_as_one_piece_in_order() -> None:
    frames = [(1, b"a"), (1, b"b"), (2, b"c"), (2, b""), (2, b"d"), (1, b"e"), (1, b"f")]
    stream = b"".join(_frame(s, d) for s, d in frames)
    assert list(demultiplexed_batches(b"", _reads(stream, 65536))) == [
        [(1, b"ab"), (2, b"cd"), (1, b"ef")]
    ]


# --- GatheringReads, on a real stream socket pair (the engine's socket is one) ---------


def _pair() -> tuple[socket.socket, socket.socket]:
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    reader.settimeout(None)
    return reader, writer


def test_a_burst_of_small_writes_is_read_in_few_gathered_reads() -> None:
    reader, writer = _pair()
    pieces = [bytes([i % 251]) * 4096 for i in range(200)]

    def send() -> None:
        for piece in pieces:
            writer.sendall(piece)
            time.sleep(0.0005)  # a reader without gathering would find one piece a read

    sender = threading.Thread(target=send)
    # A gather time far above the gap between pieces, even on a loaded machine.
    recv = GatheringReads(reader, gather_s=0.05)
    sender.start()
    reads: list[bytes] = []
    received = 0
    while received < len(pieces) * 4096:
        reads.append(recv(65536))
        received += len(reads[-1])
    sender.join()
    writer.close()
    assert recv(65536) == b""
    assert b"".join(reads) == b"".join(pieces)
    assert len(reads) <= 20  # 800 KiB in reads of up to 256 KiB, not 200 reads


def test_a_quiet_stream_is_waited_for_never_taken_for_its_end() -> None:
    reader, writer = _pair()
    recv = GatheringReads(reader, gather_s=0.001)
    writer.sendall(b"first line\n")
    assert recv(65536) == b"first line\n"
    later = threading.Timer(0.2, writer.sendall, args=(b"a line much later\n",))
    later.start()
    # The gathering read finds nothing within its time, then the read waits, unbounded.
    assert recv(65536) == b"a line much later\n"
    later.join()
    writer.sendall(b"more")
    writer.close()
    assert recv(65536) == b"more"
    assert recv(65536) == b""


def test_a_reader_waiting_on_a_quiet_stream_is_stopped_by_closing_it() -> None:
    reader, writer = _pair()
    recv = GatheringReads(reader)
    writer.sendall(b"x")
    assert recv(65536) == b"x"
    threading.Timer(0.1, shutdown_stream, args=(reader,)).start()
    assert recv(65536) == b""
    writer.close()


def test_a_socket_with_a_timeout_is_read_plainly() -> None:
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    reader.settimeout(5)  # non-blocking underneath: MSG_WAITALL would not wait
    recv = GatheringReads(reader)
    writer.sendall(b"abc")
    assert recv(65536) == b"abc"
    writer.sendall(b"def")
    assert recv(65536) == b"def"
    timeval = reader.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
    assert timeval == bytes(16)  # never set
    writer.close()
