"""SPDY/3.1 framing: every frame type round-trips, header compression keeps its state across
frames, frames survive any split of the byte stream, and malformed input is refused."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cri_shim.streaming import spdy


def roundtrip(*frames: spdy.Frame) -> list[spdy.Frame]:
    w, p = spdy.FrameWriter(), spdy.FrameParser()
    return p.feed(b"".join(w.encode(f) for f in frames))


def test_dictionary_is_the_spdy3_one() -> None:
    # The zlib dictionary id (adler32) is what a peer checks before inflating our headers.
    assert len(spdy.HEADER_DICTIONARY) == 1423
    assert zlib.adler32(spdy.HEADER_DICTIONARY) == 3821447106
    assert spdy.HEADER_DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.HEADER_DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


@pytest.mark.parametrize(
    "frame",
    [
        spdy.DataFrame(1, b"hello"),
        spdy.DataFrame(3, b"", fin=True),
        spdy.SynStream(1, (("streamtype", "error"),), priority=3, fin=True),
        spdy.SynStream(
            5, (("port", "80"), ("requestid", "0")), associated_id=3, unidirectional=True
        ),
        spdy.SynReply(1),
        spdy.SynReply(7, (("x", "a\x00b"),), fin=True),
        spdy.HeadersFrame(9, (("k", "v"),), fin=True),
        spdy.RstStream(3, spdy.RstStatus.CANCEL),
        spdy.Settings(((1, 4, 100), (0, 7, 65536)), clear=True),
        spdy.Ping(17),
        spdy.GoAway(41, 2),
        spdy.WindowUpdate(5, 1 << 20),
    ],
)
def test_frames_round_trip(frame: spdy.Frame) -> None:
    assert roundtrip(frame) == [frame]


def test_wire_layout_of_a_data_frame() -> None:
    raw = spdy.FrameWriter().encode(spdy.DataFrame(5, b"ab", fin=True))
    assert raw == struct.pack(">II", 5, (1 << 24) | 2) + b"ab"


def test_wire_layout_of_a_control_frame() -> None:
    raw = spdy.FrameWriter().encode(spdy.Ping(9))
    assert raw == bytes([0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 9])


def test_header_compression_is_one_stream_per_connection() -> None:
    w, p = spdy.FrameWriter(), spdy.FrameParser()
    headers = (("streamtype", "stdout"), ("x-long", "y" * 200))
    first = w.encode(spdy.SynStream(1, headers))
    second = w.encode(spdy.SynStream(3, headers))
    # The second block refers back into the first: it is much smaller, and only a parser that
    # saw the first frame can read it.
    assert len(second) < len(first) // 2
    assert p.feed(first + second) == [spdy.SynStream(1, headers), spdy.SynStream(3, headers)]
    with pytest.raises(spdy.SpdyProtocolError):
        spdy.FrameParser().feed(second)


def test_headers_are_lowercased_and_repeats_merged() -> None:
    block = spdy.encode_header_block([("StreamType", "a"), ("streamtype", "b"), ("Port", "1")])
    assert spdy.decode_header_block(block) == (("streamtype", "a\x00b"), ("port", "1"))
    assert spdy.header_value((("streamtype", "a\x00b"),), "StreamType") == "a"
    assert spdy.header_value((), "x") is None


def test_compressed_block_inflates_with_plain_zlib_and_the_dictionary() -> None:
    raw = spdy.FrameWriter().encode(spdy.SynReply(1, (("a", "b"),)))
    d = zlib.decompressobj(zdict=spdy.HEADER_DICTIONARY)
    assert spdy.decode_header_block(d.decompress(raw[12:])) == (("a", "b"),)


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=30))
def test_any_split_of_the_stream_gives_the_same_frames(cuts: list[int]) -> None:
    w = spdy.FrameWriter()
    frames: list[spdy.Frame] = [
        spdy.SynStream(1, (("streamtype", "error"),)),
        spdy.DataFrame(1, b"x" * 100),
        spdy.Ping(1),
        spdy.SynStream(3, (("streamtype", "stdout"),)),
        spdy.DataFrame(3, b"", fin=True),
    ]
    data = b"".join(w.encode(f) for f in frames)
    p = spdy.FrameParser()
    out: list[spdy.Frame] = []
    pos = 0
    for n in cuts:
        out += p.feed(data[pos : pos + n])
        pos += n
    out += p.feed(data[pos:])
    assert out == frames
    assert p.pending == 0


def test_partial_frame_is_held_back() -> None:
    raw = spdy.FrameWriter().encode(spdy.DataFrame(1, b"abcdef"))
    p = spdy.FrameParser()
    assert p.feed(raw[:9]) == []
    assert p.pending == 9
    assert p.feed(raw[9:]) == [spdy.DataFrame(1, b"abcdef")]


def test_data_is_split_into_frames_with_fin_on_the_last() -> None:
    raw = spdy.FrameWriter().data(3, b"a" * 10, fin=True, chunk=4)
    assert spdy.FrameParser().feed(raw) == [
        spdy.DataFrame(3, b"aaaa"),
        spdy.DataFrame(3, b"aaaa"),
        spdy.DataFrame(3, b"aa", fin=True),
    ]
    assert spdy.FrameParser().feed(spdy.FrameWriter().data(3, b"", fin=True)) == [
        spdy.DataFrame(3, b"", fin=True)
    ]


def test_unknown_control_frames_are_passed_over() -> None:
    raw = bytes([0x80, 3, 0, 0x42, 0, 0, 0, 2]) + b"zz"
    assert spdy.FrameParser().feed(raw) == [spdy.UnknownControl(0x42, 0, b"zz")]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (bytes([0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]), "version"),
        (struct.pack(">II", 0, 1) + b"x", "stream 0"),
        (bytes([0x80, 3, 0, 6, 0, 0, 0, 3, 0, 0, 1]), "PING"),
        (bytes([0x80, 3, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1]), "RST_STREAM"),
        (bytes([0x80, 3, 0, 1, 0, 0, 0, 5, 0, 0, 0, 1, 0]), "SYN_STREAM"),
        (bytes([0x80, 3, 0, 2, 0, 0, 0, 8, 0, 0, 0, 1]) + b"notzlib!", "decompress"),
        (bytes([0x80, 3, 0, 2, 0, 0, 0, 4, 0, 0, 0, 0]), "stream id 0"),
    ],
)
def test_malformed_frames_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(spdy.SpdyProtocolError, match=message):
        spdy.FrameParser().feed(raw)


def _compressed(block: bytes) -> bytes:
    z = zlib.compressobj(zdict=spdy.HEADER_DICTIONARY)
    return z.compress(block) + z.flush(zlib.Z_SYNC_FLUSH)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (struct.pack(">I", 1) + struct.pack(">I", 1) + b"A" + struct.pack(">I", 0), "lowercase"),
        (struct.pack(">I", 2) + (struct.pack(">I", 1) + b"a" + struct.pack(">I", 0)) * 2, "twice"),
        (struct.pack(">I", 5000), "too many"),
        (struct.pack(">I", 1) + struct.pack(">I", 9) + b"ab", "truncated"),
    ],
)
def test_bad_header_blocks_are_refused(block: bytes, message: str) -> None:
    payload = struct.pack(">I", 1) + _compressed(block)
    raw = bytes([0x80, 3, 0, 2]) + struct.pack(">I", len(payload)) + payload
    with pytest.raises(spdy.SpdyProtocolError, match=message):
        spdy.FrameParser().feed(raw)


def test_header_bombs_are_refused() -> None:
    block = struct.pack(">I", 1) + struct.pack(">I", 1) + b"a" + struct.pack(">I", 2 << 20)
    block += b"\x00" * (2 << 20)
    payload = struct.pack(">I", 1) + _compressed(block)
    raw = bytes([0x80, 3, 0, 2]) + struct.pack(">I", len(payload)) + payload
    with pytest.raises(spdy.SpdyProtocolError, match="too large"):
        spdy.FrameParser().feed(raw)
