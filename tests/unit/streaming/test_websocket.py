"""WebSocket framing: the RFC 6455 handshake key, frames of every length class, masking,
fragments, interleaved control frames, and the refusals a server owes a bad client."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cri_shim.streaming import websocket as ws

MASK = b"\x11\x22\x33\x44"


def test_accept_key_matches_the_rfc_example() -> None:
    assert ws.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert ws.valid_key("dGhlIHNhbXBsZSBub25jZQ==")
    assert not ws.valid_key("short")
    assert not ws.valid_key("!!!")


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536, 70000])
def test_masked_frames_of_every_length_class_parse(n: int) -> None:
    payload = bytes(i % 251 for i in range(n))
    raw = ws.encode_frame(ws.Opcode.BINARY, payload, mask=MASK)
    assert ws.MessageParser().feed(raw) == [ws.Message(ws.Opcode.BINARY, payload)]


def test_server_frames_are_unmasked() -> None:
    assert ws.encode_frame(ws.Opcode.BINARY, b"\x01hi") == b"\x82\x03\x01hi"
    assert ws.encode_frame(ws.Opcode.TEXT, b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"


def test_fragments_join_and_control_frames_interleave() -> None:
    raw = (
        ws.encode_frame(ws.Opcode.BINARY, b"ab", fin=False, mask=MASK)
        + ws.encode_frame(ws.Opcode.PING, b"p", mask=MASK)
        + ws.encode_frame(ws.Opcode.CONTINUATION, b"cd", fin=False, mask=MASK)
        + ws.encode_frame(ws.Opcode.CONTINUATION, b"ef", mask=MASK)
    )
    assert ws.MessageParser().feed(raw) == [
        ws.Message(ws.Opcode.PING, b"p"),
        ws.Message(ws.Opcode.BINARY, b"abcdef"),
    ]


@given(st.lists(st.integers(min_value=1, max_value=7), max_size=40))
def test_any_split_gives_the_same_messages(cuts: list[int]) -> None:
    raw = b"".join(
        ws.encode_frame(ws.Opcode.BINARY, bytes([i]) * (i * 50), mask=MASK) for i in range(1, 5)
    )
    p = ws.MessageParser()
    out: list[ws.Message] = []
    pos = 0
    for n in cuts:
        out += p.feed(raw[pos : pos + n])
        pos += n
    out += p.feed(raw[pos:])
    assert [m.payload for m in out] == [bytes([i]) * (i * 50) for i in range(1, 5)]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (ws.encode_frame(ws.Opcode.BINARY, b"x"), "not masked"),
        (b"\xc2\x81" + MASK + b"x", "reserved bits"),
        (b"\x83\x81" + MASK + b"x", "opcode"),
        (ws.encode_frame(ws.Opcode.PING, b"p", fin=False, mask=MASK), "control frame"),
        (ws.encode_frame(ws.Opcode.CONTINUATION, b"x", mask=MASK), "continuation"),
        (
            ws.encode_frame(ws.Opcode.BINARY, b"x", fin=False, mask=MASK)
            + ws.encode_frame(ws.Opcode.BINARY, b"y", mask=MASK),
            "previous one",
        ),
    ],
)
def test_protocol_errors(raw: bytes, message: str) -> None:
    with pytest.raises(ws.WebSocketProtocolError, match=message) as info:
        ws.MessageParser().feed(raw)
    assert info.value.code == ws.CloseCode.PROTOCOL_ERROR


def test_oversized_messages_are_refused_with_1009() -> None:
    p = ws.MessageParser(max_message=10)
    with pytest.raises(ws.WebSocketProtocolError) as info:
        p.feed(ws.encode_frame(ws.Opcode.BINARY, b"x" * 11, mask=MASK))
    assert info.value.code == ws.CloseCode.TOO_BIG
    p = ws.MessageParser(max_message=10)
    p.feed(ws.encode_frame(ws.Opcode.BINARY, b"x" * 6, fin=False, mask=MASK))
    with pytest.raises(ws.WebSocketProtocolError):
        p.feed(ws.encode_frame(ws.Opcode.CONTINUATION, b"x" * 6, mask=MASK))


def test_close_payloads() -> None:
    assert ws.parse_close(ws.close_payload(1000, "bye")) == (1000, "bye")
    assert ws.parse_close(b"") == (1000, "")
    with pytest.raises(ws.WebSocketProtocolError):
        ws.parse_close(b"\x03")
