"""Coalescing output into chunks: order, sizes, timing and UTF-8 boundaries."""

import base64

from hypothesis import given
from hypothesis import strategies as st

from execution.coalesce import (
    MAX_CHUNK_BYTES,
    MIN_CHUNK_BYTES,
    Coalescer,
    chunk_bytes_for,
    encode,
    incomplete_tail,
    split_points,
)

OUT, ERR = 1, 2


def _drain(c: Coalescer, frames, *, now=0.0):
    chunks = []
    for stream, data in frames:
        c.add(stream, data, now)
        if c.due(now):
            chunks += c.take()
    return chunks + c.take(final=True)


def test_consecutive_frames_of_a_stream_merge_and_a_switch_starts_a_new_chunk():
    c = Coalescer()
    chunks = _drain(c, [(OUT, b"a"), (OUT, b"b"), (ERR, b"c"), (OUT, b"d")])
    assert chunks == [(OUT, b"ab"), (ERR, b"c"), (OUT, b"d")]


def test_a_frame_that_makes_a_whole_chunk_goes_on_without_a_copy():
    c = Coalescer(max_bytes=8)
    frame = bytes(range(97, 105))  # 8 bytes: a whole chunk
    c.add(OUT, frame, 0.0)
    [(stream, data)] = c.take()
    assert stream == OUT and data is frame
    c.add(OUT, frame + b"xy", 0.0)  # longer: cut, the pieces are its bytes
    assert c.take() == [(OUT, frame), (OUT, b"xy")]


def test_flushes_by_size_and_by_age():
    c = Coalescer(max_bytes=4, max_delay_s=0.05)
    c.add(OUT, b"ab", 0.0)
    assert not c.due(0.01)
    assert c.due(0.05)  # the oldest byte is 50 ms old
    assert c.next_deadline() == 0.05
    assert c.take() == [(OUT, b"ab")]
    assert c.next_deadline() is None
    c.add(OUT, b"abcdefghij", 1.0)
    assert c.due(1.0)
    assert c.take() == [(OUT, b"abcd"), (OUT, b"efgh"), (OUT, b"ij")]


def test_an_incomplete_character_waits_for_its_stream_to_continue():
    euro = "€".encode()  # 3 bytes
    c = Coalescer()
    c.add(OUT, b"x" + euro[:1], 0.0)
    assert c.take() == [(OUT, b"x")]
    assert not c.due(10.0)  # held bytes alone are never "due"
    c.add(OUT, euro[1:] + b"y", 1.0)
    assert c.take() == [(OUT, euro + b"y")]


def test_held_bytes_go_out_before_the_other_stream_and_at_the_end():
    c = Coalescer()
    c.add(OUT, "é".encode()[:1], 0.0)
    assert c.take() == []
    c.add(ERR, b"e", 0.0)
    assert c.take(final=True) == [(OUT, b"\xc3"), (ERR, b"e")]
    c.add(OUT, b"\xe2\x82", 0.0)
    assert c.take(final=True) == [(OUT, b"\xe2\x82")]


def test_size_cut_backs_up_to_a_character_boundary():
    data = "aé€".encode() * 3
    ends = split_points(data, 4)
    pieces = [data[s:e] for s, e in zip([0, *ends], ends, strict=False)]
    assert b"".join(pieces) == data
    assert all(len(p) <= 4 for p in pieces)
    for piece in pieces:
        piece.decode()  # every piece is whole characters


def test_incomplete_tail():
    assert incomplete_tail(b"abc") == 0
    assert incomplete_tail("€".encode()) == 0
    assert incomplete_tail("€".encode()[:2]) == 2
    assert incomplete_tail(b"a\xf0\x9f\x98") == 3
    assert incomplete_tail(b"\x80\x80\x80\x80") == 0  # garbage: nothing to wait for


def test_encode_text_or_base64():
    assert encode("héllo".encode()) == ("héllo", "utf-8")
    data, encoding = encode(b"\xff\x00")
    assert encoding == "base64" and base64.b64decode(data) == b"\xff\x00"


frames_strategy = st.lists(
    st.tuples(st.sampled_from([OUT, ERR]), st.binary(min_size=0, max_size=300)), max_size=40
)


@given(frames_strategy, st.integers(min_value=4, max_value=128))
def test_per_stream_bytes_and_order_survive_exactly(frames, max_bytes):
    c = Coalescer(max_bytes=max_bytes)
    chunks = _drain(c, frames)
    for stream in (OUT, ERR):
        sent = b"".join(d for s, d in frames if s == stream)
        got = b"".join(d for s, d in chunks if s == stream)
        assert got == sent
    assert all(0 < len(d) <= max_bytes for _, d in chunks)
    # The interleaving survives: the same runs of stdout/stderr, in the same order.
    assert _runs(chunks) == _runs(frames)


def _runs(items):
    runs: list[tuple[int, bytes]] = []
    for stream, data in items:
        if not data:
            continue
        if runs and runs[-1][0] == stream:
            runs[-1] = (stream, runs[-1][1] + data)
        else:
            runs.append((stream, data))
    return runs


texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=200)


@given(st.lists(st.tuples(texts, st.integers(min_value=0, max_value=50)), max_size=20))
def test_utf8_text_cut_anywhere_arrives_as_valid_utf8_chunks(pieces):
    """One stream of valid UTF-8 split into frames at arbitrary byte offsets."""
    data = "".join(text for text, _ in pieces).encode()
    cuts = sorted({min(len(data), sum(n for _, n in pieces[: i + 1])) for i in range(len(pieces))})
    frames, start = [], 0
    for cut in [*cuts, len(data)]:
        frames.append((OUT, data[start:cut]))
        start = cut
    chunks = _drain(Coalescer(max_bytes=16), frames)
    assert b"".join(d for _, d in chunks) == data
    for _, chunk in chunks:
        assert encode(chunk)[1] == "utf-8"


def test_a_chunk_is_at_most_a_quarter_of_the_output_cap():
    assert chunk_bytes_for(16 * 1024 * 1024) == MAX_CHUNK_BYTES
    assert chunk_bytes_for(200_000) == 50_000  # the tail kept: more than 150,000 bytes
    assert chunk_bytes_for(100) == MIN_CHUNK_BYTES
