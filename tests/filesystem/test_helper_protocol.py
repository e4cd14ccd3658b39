"""The helper shell's answers, however the engine's stream frames them (a socket pair
stands in for the engine's connection)."""

from __future__ import annotations

import socket
import struct

import pytest

from workspaces.runtime.docker import helpers

TAG = b"0123456789abcdef0123456789abcdef"


def _frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def _reader(sock: socket.socket) -> helpers._Helper:
    helper = object.__new__(helpers._Helper)
    helper._sock = sock
    helper._pending = bytearray()
    return helper


@pytest.mark.parametrize("output", [b"", b"mv: can't rename '\xc3\xa9': No such file\n2nd line"])
def test_an_answer_split_anywhere_reads_the_same(output):
    answer = output + b"\n" + TAG + b" 1\n"
    following = b"next answer's start"
    for cut in range(1, len(answer)):
        ours, engine = socket.socketpair()
        with ours, engine:
            ours.settimeout(5)
            engine.sendall(
                _frame(1, answer[:cut])
                + _frame(2, b"sh: a complaint on stderr\n")
                + _frame(1, answer[cut:] + following)
            )
            helper = _reader(ours)
            assert helper._read_answer(TAG) == (output, 1)
            assert bytes(helper._pending) == following


def test_a_stream_that_ends_mid_answer_breaks_the_helper():
    ours, engine = socket.socketpair()
    with ours:
        ours.settimeout(5)
        engine.sendall(_frame(1, b"partial\n" + TAG[:10]))
        engine.close()
        with pytest.raises(helpers.HelperBroken):
            _reader(ours)._read_answer(TAG)
