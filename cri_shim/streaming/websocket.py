"""WebSocket framing (RFC 6455), server side, pure: the opening handshake's accept key, frame
encoding, and a parser that turns client bytes (in any pieces) into whole messages and control
frames. Written here rather than taken from a library because the server needs only this small
part (no extensions, no client side) over a socket it already owns after the HTTP upgrade.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "CloseCode",
    "Frame",
    "Message",
    "MessageParser",
    "Opcode",
    "WebSocketProtocolError",
    "accept_key",
    "close_payload",
    "encode_frame",
    "parse_close",
]

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# A reassembled message larger than this fails the connection (1009): the streaming peers
# send stdin chunks and resize events of a few KiB.
MAX_MESSAGE = 16 << 20


class Opcode(IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    TOO_BIG = 1009
    INTERNAL_ERROR = 1011


class WebSocketProtocolError(Exception):
    def __init__(self, message: str, code: CloseCode = CloseCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for the client's ``Sec-WebSocket-Key``."""
    digest = hashlib.sha1((key.strip() + _GUID).encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()


def valid_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == 16
    except ValueError:
        return False


def encode_frame(
    opcode: Opcode, payload: bytes, fin: bool = True, mask: bytes | None = None
) -> bytes:
    """One frame; servers send unmasked frames (``mask`` exists for tests that play client)."""
    head = bytes([(0x80 if fin else 0) | int(opcode)])
    n = len(payload)
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 1 << 16:
        head += bytes([mbit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack(">Q", n)
    if mask is None:
        return head + payload
    return head + mask + _unmask(payload, mask)


def close_payload(code: CloseCode | int, reason: str = "") -> bytes:
    return struct.pack(">H", int(code)) + reason.encode()[:123]


def parse_close(payload: bytes) -> tuple[int, str]:
    if not payload:
        return int(CloseCode.NORMAL), ""
    if len(payload) == 1:
        raise WebSocketProtocolError("close frame with a one-byte body")
    return struct.unpack(">H", payload[:2])[0], payload[2:].decode("utf-8", "replace")


def _unmask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return b""
    # XOR with the repeated 4-byte key, done as one big-integer operation (fast in CPython).
    key = (mask * (len(data) // 4 + 1))[: len(data)]
    n = int.from_bytes(data, "big") ^ int.from_bytes(key, "big")
    return n.to_bytes(len(data), "big")


@dataclass(frozen=True)
class Frame:
    fin: bool
    opcode: Opcode
    payload: bytes


@dataclass(frozen=True)
class Message:
    """A complete data message (text or binary, fragments joined) or a control frame."""

    opcode: Opcode
    payload: bytes


class MessageParser:
    """Parses a client's frames, unmasking them and joining fragments into messages. Control
    frames come out as soon as they arrive, even between the fragments of a message."""

    def __init__(self, require_mask: bool = True, max_message: int = MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self._require_mask = require_mask
        self._max = max_message
        self._partial: bytearray | None = None
        self._partial_op = Opcode.BINARY

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        while True:
            frame = self._next_frame()
            if frame is None:
                return out
            msg = self._assemble(frame)
            if msg is not None:
                out.append(msg)

    def _next_frame(self) -> Frame | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        if b0 & 0x70:
            raise WebSocketProtocolError("reserved bits set without a negotiated extension")
        try:
            opcode = Opcode(b0 & 0x0F)
        except ValueError as exc:
            raise WebSocketProtocolError(f"unknown opcode {b0 & 0x0F}") from exc
        masked = bool(b1 & 0x80)
        if self._require_mask and not masked:
            raise WebSocketProtocolError("client frame is not masked")
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                return None
            n = struct.unpack(">H", buf[2:4])[0]
            pos = 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n = struct.unpack(">Q", buf[2:10])[0]
            pos = 10
        if opcode >= Opcode.CLOSE and (n > 125 or not b0 & 0x80):
            raise WebSocketProtocolError("control frame too long or fragmented")
        if n > self._max:
            raise WebSocketProtocolError("frame too large", CloseCode.TOO_BIG)
        mask = b""
        if masked:
            if len(buf) < pos + 4:
                return None
            mask = bytes(buf[pos : pos + 4])
            pos += 4
        if len(buf) < pos + n:
            return None
        payload = bytes(buf[pos : pos + n])
        del buf[: pos + n]
        if masked:
            payload = _unmask(payload, mask)
        return Frame(bool(b0 & 0x80), opcode, payload)

    def _assemble(self, frame: Frame) -> Message | None:
        if frame.opcode >= Opcode.CLOSE:
            return Message(frame.opcode, frame.payload)
        if frame.opcode == Opcode.CONTINUATION:
            if self._partial is None:
                raise WebSocketProtocolError("continuation frame without a message")
            self._partial += frame.payload
        else:
            if self._partial is not None:
                raise WebSocketProtocolError("new message before the previous one ended")
            self._partial = bytearray(frame.payload)
            self._partial_op = frame.opcode
        if len(self._partial) > self._max:
            raise WebSocketProtocolError("message too large", CloseCode.TOO_BIG)
        if not frame.fin:
            return None
        msg = Message(self._partial_op, bytes(self._partial))
        self._partial = None
        return msg
