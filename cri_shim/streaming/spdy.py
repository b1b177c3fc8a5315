"""SPDY/3.1 framing, as the kubelet's streaming clients speak it (pure: bytes in, frames out).

There is no maintained SPDY library for Python, so this module implements the wire format by
hand from the SPDY/3 draft: the eight-byte frame headers, the control frames an httpstream
peer sends (SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE),
data frames, and the name/value header blocks with their zlib compression. Header compression
is one zlib stream per direction for the whole connection, primed with the dictionary that the
SPDY/3 draft defines and flushed (Z_SYNC_FLUSH) at the end of every header block, so both the
compressor and the decompressor are stateful and live in :class:`FrameWriter` and
:class:`FrameParser`, one each per connection.

No I/O happens here: the parser is fed whatever bytes arrived (any split, even mid-header) and
returns the complete frames; the writer returns bytes to send. Flow control (WINDOW_UPDATE) is
parsed but not enforced: the Go clients (moby/spdystream) neither send nor honour windows.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "HEADER_DICTIONARY",
    "DataFrame",
    "Frame",
    "FrameParser",
    "FrameWriter",
    "GoAway",
    "Headers",
    "HeadersFrame",
    "Ping",
    "RstStatus",
    "RstStream",
    "Settings",
    "SpdyProtocolError",
    "SynReply",
    "SynStream",
    "UnknownControl",
    "WindowUpdate",
    "decode_header_block",
    "encode_header_block",
    "header_value",
]

VERSION = 3
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
MAX_DATA = (1 << 24) - 1
# A peer's decompressed header block may not exceed this (a zlib bomb guard), nor hold more
# names than MAX_HEADER_COUNT; the Go framer enforces similar limits.
MAX_HEADER_BLOCK = 1 << 20
MAX_HEADER_COUNT = 1000
_STREAM_MASK = 0x7FFFFFFF


class SpdyProtocolError(Exception):
    """The peer sent bytes that are not valid SPDY/3; the connection cannot continue."""


class RstStatus(IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9


class _Type(IntEnum):
    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


def _build_dictionary() -> bytes:
    """The SPDY/3 header compression dictionary: length-prefixed common header names and
    values, then one run of common status codes, reason phrases, dates and media types."""
    words = [
        *("options", "head", "post", "put", "delete", "trace", "accept", "accept-charset"),
        *("accept-encoding", "accept-language", "accept-ranges", "age", "allow"),
        *("authorization", "cache-control", "connection", "content-base", "content-encoding"),
        *("content-language", "content-length", "content-location", "content-md5"),
        *("content-range", "content-type", "date", "etag", "expect", "expires", "from", "host"),
        *("if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since"),
        *("last-modified", "location", "max-forwards", "pragma", "proxy-authenticate"),
        *("proxy-authorization", "range", "referer", "retry-after", "server", "te", "trailer"),
        *("transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning"),
        *("www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1"),
        *("url", "public", "set-cookie", "keep-alive", "origin"),
    ]
    out = b"".join(struct.pack(">I", len(w)) + w.encode() for w in words)
    codes = [str(c) for c in (100, 101, 201, 202, 205, 206, 300, 302, 303, 304, 305, 306, 307)]
    codes += [str(c) for c in (402, *range(405, 418), 502, 504, 505)]
    tail = [
        "".join(codes),
        "203 Non-Authoritative Information",
        "204 No Content",
        "301 Moved Permanently",
        "400 Bad Request",
        "401 Unauthorized",
        "403 Forbidden",
        "404 Not Found",
        "500 Internal Server Error",
        "501 Not Implemented",
        "503 Service Unavailable",
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec",
        " 00:00:00",
        " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,"
        "application/xhtml+xml,text/plain,text/javascript,public",
        "private",
        "max-age=",
        "gzip,deflate,sdch",
        "charset=utf-8",
        "charset=iso-8859-1,utf-,*,enq=0.",
    ]
    return out + "".join(tail).encode()


HEADER_DICTIONARY = _build_dictionary()

# Header names and values as they travel: names lowercase, several values of one name joined
# by NUL in a single pair. Kept as ordered pairs so that a frame round-trips exactly.
Headers = tuple[tuple[str, str], ...]


def header_value(headers: Headers, name: str) -> str | None:
    """The first value of ``name`` (case-insensitive), or None."""
    name = name.lower()
    for key, value in headers:
        if key == name:
            return value.split("\x00", 1)[0]
    return None


@dataclass(frozen=True)
class DataFrame:
    stream_id: int
    data: bytes
    fin: bool = False


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: Headers
    associated_id: int = 0
    priority: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: Headers = ()
    fin: bool = False


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    entries: tuple[tuple[int, int, int], ...]  # (flags, id, value)
    clear: bool = False


@dataclass(frozen=True)
class Ping:
    id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = 0


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: Headers
    fin: bool = False


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(frozen=True)
class UnknownControl:
    """A control frame type SPDY/3 does not define: the draft says to ignore it."""

    type: int
    flags: int
    payload: bytes


Frame = (
    DataFrame
    | SynStream
    | SynReply
    | RstStream
    | Settings
    | Ping
    | GoAway
    | HeadersFrame
    | WindowUpdate
    | UnknownControl
)


def encode_header_block(headers: Iterable[tuple[str, str]]) -> bytes:
    """The uncompressed name/value block; repeated names are merged into one NUL-joined value
    (SPDY forbids a name twice in one block)."""
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        merged.setdefault(name.lower(), []).append(value)
    out = [struct.pack(">I", len(merged))]
    for name, values in merged.items():
        n, v = name.encode(), "\x00".join(values).encode()
        out += [struct.pack(">I", len(n)), n, struct.pack(">I", len(v)), v]
    return b"".join(out)


def decode_header_block(block: bytes) -> Headers:
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(block):
            raise SpdyProtocolError("truncated header block")
        chunk = block[pos : pos + n]
        pos += n
        return chunk

    (count,) = struct.unpack(">I", take(4))
    if count > MAX_HEADER_COUNT:
        raise SpdyProtocolError(f"too many headers: {count}")
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for _ in range(count):
        (n,) = struct.unpack(">I", take(4))
        name = take(n).decode("utf-8", "replace")
        (v,) = struct.unpack(">I", take(4))
        value = take(v).decode("utf-8", "replace")
        if not name or name != name.lower():
            raise SpdyProtocolError(f"header name {name!r} is empty or not lowercase")
        if name in seen:
            raise SpdyProtocolError(f"header {name!r} appears twice")
        seen.add(name)
        out.append((name, value))
    return tuple(out)


def _control(ftype: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_DATA:
        raise ValueError("control frame too large")
    return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(payload)) + payload


def _flags(fin: bool, unidirectional: bool = False) -> int:
    return (FLAG_FIN if fin else 0) | (FLAG_UNIDIRECTIONAL if unidirectional else 0)


class FrameWriter:
    """Encodes frames for one direction of one connection (it owns that direction's header
    compressor, so frames must be sent in the order they were encoded)."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(
            zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, 15, 8, zdict=HEADER_DICTIONARY
        )

    def _compress(self, headers: Headers) -> bytes:
        block = encode_header_block(headers)
        return self._z.compress(block) + self._z.flush(zlib.Z_SYNC_FLUSH)

    def encode(self, frame: Frame) -> bytes:
        if isinstance(frame, DataFrame):
            return _data(frame.stream_id, frame.data, frame.fin)
        if isinstance(frame, SynStream):
            payload = struct.pack(
                ">IIBB",
                frame.stream_id & _STREAM_MASK,
                frame.associated_id & _STREAM_MASK,
                (frame.priority & 0x7) << 5,
                0,
            )
            payload += self._compress(frame.headers)
            return _control(_Type.SYN_STREAM, _flags(frame.fin, frame.unidirectional), payload)
        if isinstance(frame, SynReply):
            payload = struct.pack(">I", frame.stream_id & _STREAM_MASK)
            payload += self._compress(frame.headers)
            return _control(_Type.SYN_REPLY, _flags(frame.fin), payload)
        if isinstance(frame, HeadersFrame):
            payload = struct.pack(">I", frame.stream_id & _STREAM_MASK)
            payload += self._compress(frame.headers)
            return _control(_Type.HEADERS, _flags(frame.fin), payload)
        if isinstance(frame, RstStream):
            payload = struct.pack(">II", frame.stream_id & _STREAM_MASK, frame.status)
            return _control(_Type.RST_STREAM, 0, payload)
        if isinstance(frame, Settings):
            payload = struct.pack(">I", len(frame.entries)) + b"".join(
                struct.pack(">II", (fl << 24) | (sid & 0xFFFFFF), value)
                for fl, sid, value in frame.entries
            )
            return _control(_Type.SETTINGS, 1 if frame.clear else 0, payload)
        if isinstance(frame, Ping):
            return _control(_Type.PING, 0, struct.pack(">I", frame.id))
        if isinstance(frame, GoAway):
            payload = struct.pack(">II", frame.last_good_stream_id & _STREAM_MASK, frame.status)
            return _control(_Type.GOAWAY, 0, payload)
        if isinstance(frame, WindowUpdate):
            payload = struct.pack(">II", frame.stream_id & _STREAM_MASK, frame.delta & _STREAM_MASK)
            return _control(_Type.WINDOW_UPDATE, 0, payload)
        return _control(frame.type, frame.flags, frame.payload)

    def data(self, stream_id: int, data: bytes, fin: bool = False, chunk: int = 32768) -> bytes:
        """Data for a stream, split into frames of at most ``chunk`` bytes; the last frame
        carries FIN when asked."""
        if not data:
            return _data(stream_id, b"", fin)
        parts = [data[i : i + chunk] for i in range(0, len(data), chunk)]
        return b"".join(
            _data(stream_id, p, fin and i == len(parts) - 1) for i, p in enumerate(parts)
        )


def _data(stream_id: int, data: bytes, fin: bool) -> bytes:
    if len(data) > MAX_DATA:
        raise ValueError("data frame too large")
    if not 0 < stream_id <= _STREAM_MASK:
        raise ValueError(f"invalid stream id {stream_id}")
    return struct.pack(">II", stream_id, ((FLAG_FIN if fin else 0) << 24) | len(data)) + data


class FrameParser:
    """Decodes the frames of one direction of one connection; feed it bytes in any pieces."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._z = zlib.decompressobj(zdict=HEADER_DICTIONARY)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            length = int.from_bytes(self._buf[5:8], "big")
            if len(self._buf) < 8 + length:
                break
            head = bytes(self._buf[:8])
            payload = bytes(self._buf[8 : 8 + length])
            del self._buf[: 8 + length]
            frame = self._frame(head, payload)
            if frame is not None:
                frames.append(frame)
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back for the next feed."""
        return len(self._buf)

    def _headers(self, block: bytes) -> Headers:
        try:
            raw = self._z.decompress(block, MAX_HEADER_BLOCK + 1)
        except zlib.error as exc:
            raise SpdyProtocolError(f"header block does not decompress: {exc}") from exc
        if len(raw) > MAX_HEADER_BLOCK or self._z.unconsumed_tail:
            raise SpdyProtocolError("header block too large")
        return decode_header_block(raw)

    def _frame(self, head: bytes, payload: bytes) -> Frame | None:
        (first,) = struct.unpack(">I", head[:4])
        flags = head[4]
        if not first & 0x80000000:
            stream_id = first & _STREAM_MASK
            if stream_id == 0:
                raise SpdyProtocolError("data frame on stream 0")
            return DataFrame(stream_id, payload, bool(flags & FLAG_FIN))
        version = (first >> 16) & 0x7FFF
        ftype = first & 0xFFFF
        if version != VERSION:
            raise SpdyProtocolError(f"unsupported SPDY version {version}")
        return self._control(ftype, flags, payload)

    def _control(self, ftype: int, flags: int, p: bytes) -> Frame | None:
        fin = bool(flags & FLAG_FIN)
        try:
            if ftype == _Type.SYN_STREAM:
                _need(len(p) >= 10, "SYN_STREAM")
                sid, assoc, prio = struct.unpack(">IIB", p[:9])
                return SynStream(
                    _sid(sid),
                    self._headers(p[10:]),
                    associated_id=assoc & _STREAM_MASK,
                    priority=prio >> 5,
                    fin=fin,
                    unidirectional=bool(flags & FLAG_UNIDIRECTIONAL),
                )
            if ftype == _Type.SYN_REPLY:
                (sid,) = struct.unpack(">I", p[:4])
                return SynReply(_sid(sid), self._headers(p[4:]), fin=fin)
            if ftype == _Type.HEADERS:
                (sid,) = struct.unpack(">I", p[:4])
                return HeadersFrame(_sid(sid), self._headers(p[4:]), fin=fin)
            if ftype == _Type.RST_STREAM:
                _need(len(p) == 8, "RST_STREAM")
                sid, status = struct.unpack(">II", p)
                return RstStream(_sid(sid), status)
            if ftype == _Type.SETTINGS:
                (count,) = struct.unpack(">I", p[:4])
                _need(len(p) == 4 + 8 * count, "SETTINGS")
                entries = tuple(
                    (word >> 24, word & 0xFFFFFF, value)
                    for word, value in struct.iter_unpack(">II", p[4:])
                )
                return Settings(entries, clear=bool(flags & 1))
            if ftype == _Type.PING:
                _need(len(p) == 4, "PING")
                return Ping(struct.unpack(">I", p)[0])
            if ftype == _Type.GOAWAY:
                _need(len(p) in (4, 8), "GOAWAY")
                last = struct.unpack(">I", p[:4])[0] & _STREAM_MASK
                status = struct.unpack(">I", p[4:8])[0] if len(p) == 8 else 0
                return GoAway(last, status)
            if ftype == _Type.WINDOW_UPDATE:
                _need(len(p) == 8, "WINDOW_UPDATE")
                sid, delta = struct.unpack(">II", p)
                return WindowUpdate(sid & _STREAM_MASK, delta & _STREAM_MASK)
        except struct.error as exc:
            raise SpdyProtocolError(f"control frame {ftype} too short") from exc
        return UnknownControl(ftype, flags, p)


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise SpdyProtocolError(f"malformed {what} frame")


def _sid(word: int) -> int:
    sid = word & _STREAM_MASK
    if sid == 0:
        raise SpdyProtocolError("stream id 0 is not allowed here")
    return sid


def headers_of(pairs: Sequence[tuple[str, str]]) -> Headers:
    """Normalises ``pairs`` to the wire form (lowercase names)."""
    return tuple((k.lower(), v) for k, v in pairs)
