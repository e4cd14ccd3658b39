"""Moving bytes between sockets in the kernel (``splice.py``): exact lengths, what is
left where, and each side's failure told apart."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from workspaces.runtime.splice import SourceFailed, can_splice, splice_between

MiB = 1024 * 1024


def _pair(timeout_s: float = 5) -> tuple[socket.socket, socket.socket]:
    one, other = socket.socketpair()
    for sock in (one, other):
        sock.settimeout(timeout_s)  # non-blocking underneath, as the agent's sockets are
    return one, other


def _drain(sock: socket.socket, into: bytearray, *, pause_s: float = 0) -> threading.Thread:
    def run() -> None:
        while data := sock.recv(256 * 1024):
            into.extend(data)
            time.sleep(pause_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_exactly_the_length_moves_and_what_follows_stays() -> None:
    caller, src = _pair()
    dst, engine = _pair()
    payload, after = os.urandom(8 * MiB + 3), b"next request"
    sender = threading.Thread(target=caller.sendall, args=(payload + after,), daemon=True)
    sender.start()
    received = bytearray()
    # A slow reader: the destination fills up and the splice waits for it.
    reader = _drain(engine, received, pause_s=0.001)
    taken: list[int] = []
    splice_between(src, dst, len(payload), on_taken=taken.append)
    dst.close()
    reader.join(10)
    sender.join(10)
    assert bytes(received) == payload
    assert sum(taken) == len(payload)
    assert src.recv(100) == after  # the next request is left on the source


def test_without_a_length_everything_moves_until_the_source_ends() -> None:
    engine, src = _pair()
    dst, caller = _pair()
    payload = os.urandom(5 * MiB + 11)

    def send_and_close() -> None:
        engine.sendall(payload)
        engine.close()

    sender = threading.Thread(target=send_and_close, daemon=True)
    sender.start()
    received = bytearray()
    reader = _drain(caller, received, pause_s=0.001)
    taken: list[int] = []
    splice_between(src, dst, None, on_taken=taken.append)
    dst.close()
    reader.join(10)
    sender.join(10)
    assert bytes(received) == payload and sum(taken) == len(payload)


def test_a_source_that_ends_early_is_a_source_failure() -> None:
    caller, src = _pair()
    dst, engine = _pair()
    received = bytearray()
    reader = _drain(engine, received)

    def send_and_leave() -> None:
        caller.sendall(b"x" * 300_000)
        caller.close()

    threading.Thread(target=send_and_leave, daemon=True).start()
    taken: list[int] = []
    with pytest.raises(SourceFailed, match="early"):
        splice_between(src, dst, MiB, on_taken=taken.append)
    dst.close()
    reader.join(10)
    assert sum(taken) == len(received) == 300_000


def test_a_quiet_source_fails_after_its_timeout() -> None:
    caller, src = _pair(timeout_s=0.2)
    dst, _engine = _pair()
    caller.sendall(b"y" * 1000)
    with pytest.raises(SourceFailed, match="not ready"):
        splice_between(src, dst, 2000, on_taken=lambda n: None)


def test_a_destination_that_breaks_is_not_the_sources_failure() -> None:
    caller, src = _pair()
    dst, engine = _pair()
    engine.close()
    threading.Thread(target=caller.sendall, args=(b"z" * MiB,), daemon=True).start()
    taken: list[int] = []
    with pytest.raises(BrokenPipeError):
        splice_between(src, dst, MiB, on_taken=taken.append)
    # What was taken is known: the rest is still on the source, to be read off.
    rest = b""
    while len(rest) < MiB - sum(taken):
        rest += src.recv(MiB)
    assert len(rest) == MiB - sum(taken)


def test_only_plain_stream_sockets_are_spliced() -> None:
    one, other = socket.socketpair()
    datagram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        assert can_splice(one)
        assert not can_splice(datagram)
    finally:
        for sock in (one, other, datagram):
            sock.close()
