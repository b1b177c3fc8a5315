"""Streaming connections after the upgrade: SPDY sessions and WebSocket channels over a socket
(the I/O shell around ``spdy.py`` and ``websocket.py``).

Threads: each connection has one reader thread that parses what arrives and files data under
its stream; any thread may write, writes are serialised by a lock (the SPDY header compressor
is stateful, so a frame is encoded and sent under the same lock). A stream's inbound data is
queued without bound: the clients push stdin and port-forward uploads no faster than the
kubelet would, and a bounded queue would let one slow stream block the whole connection.

Closing is a lingering close: we finish our streams, half-close the socket and wait (a few
seconds at most) for the peer to hang up. Closing outright while the peer still sends would
make the kernel answer with a reset, which can destroy output the peer has not read yet.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from cri_shim.streaming import spdy
from cri_shim.streaming import websocket as ws
from cri_shim.streaming.remotecommand import (
    CHANNEL_OF,
    CLOSE_CHANNEL,
    StreamOptions,
    StreamType,
    expected_streams,
)

__all__ = [
    "ByteTransport",
    "Inbound",
    "Outbound",
    "RemoteStreams",
    "SocketTransport",
    "SpdyConnection",
    "SpdyStream",
    "StreamSetupError",
    "WebSocketConnection",
    "WebSocketTunnel",
    "spdy_remote_streams",
    "websocket_remote_streams",
]

log = logging.getLogger("stowage.cri.streaming")

# A peer that stops reading for this long is gone: our blocked write fails instead of hanging.
SEND_TIMEOUT = 60.0
LINGER = 5.0


class ByteTransport(Protocol):
    def recv(self) -> bytes: ...  # b"" at end of stream
    def send(self, data: bytes) -> None: ...
    def shutdown_write(self) -> None: ...
    def close(self) -> None: ...


class Inbound(Protocol):
    def read(self, timeout: float | None = None) -> bytes: ...  # b"" at end of stream


class Outbound(Protocol):
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class SocketTransport:
    """A connected socket, with the bytes that were read past the HTTP head."""

    def __init__(self, sock: socket.socket, leftover: bytes = b"") -> None:
        self.sock = sock
        self._leftover = leftover
        sock.settimeout(None)
        tv = struct.pack("ll", int(SEND_TIMEOUT), 0)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)

    def recv(self) -> bytes:
        if self._leftover:
            data, self._leftover = self._leftover, b""
            return data
        try:
            return self.sock.recv(65536)
        except OSError:
            return b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shutdown_write(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class _Queue:
    """Inbound bytes of one stream: chunks and an end-of-stream mark."""

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._eof = False

    def push(self, data: bytes) -> None:
        with self._cond:
            if not self._eof and data:
                self._chunks.append(data)
                self._cond.notify_all()

    def end(self) -> None:
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def read(self, timeout: float | None = None) -> bytes:
        """The next chunk; b"" at the end; raises TimeoutError if nothing came in time."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._chunks or self._eof, timeout):
                raise TimeoutError
            return self._chunks.popleft() if self._chunks else b""


# SPDY


class SpdyStream:
    def __init__(self, conn: SpdyConnection, stream_id: int, headers: spdy.Headers) -> None:
        self.conn = conn
        self.id = stream_id
        self.headers = headers
        self._in = _Queue()
        self._lock = threading.Lock()
        self.local_closed = False
        self.reset_by_peer = False

    def header(self, name: str) -> str | None:
        return spdy.header_value(self.headers, name)

    def read(self, timeout: float | None = None) -> bytes:
        return self._in.read(timeout)

    def write(self, data: bytes) -> None:
        if self.local_closed or self.reset_by_peer:
            raise BrokenPipeError(f"stream {self.id} is closed")
        if data:
            self.conn.send_data(self.id, data)

    def close(self) -> None:
        """Half-closes our side (FIN); harmless to repeat."""
        with self._lock:
            if self.local_closed or self.reset_by_peer:
                return
            self.local_closed = True
        with contextlib.suppress(OSError):
            self.conn.send_data(self.id, b"", fin=True)

    def reset(self, status: int = spdy.RstStatus.CANCEL) -> None:
        with self._lock:
            done = self.reset_by_peer
            self.local_closed = True
        self._in.end()
        if not done:
            with contextlib.suppress(OSError):
                self.conn.send_frame(spdy.RstStream(self.id, status))


class SpdyConnection:
    """The server end of a SPDY/3.1 connection. Streams the peer opens are answered with a
    SYN_REPLY at once and handed out by :meth:`accept`."""

    def __init__(self, transport: ByteTransport) -> None:
        self.transport = transport
        self._writer = spdy.FrameWriter()
        self._parser = spdy.FrameParser()
        self._wlock = threading.Lock()
        self._streams: dict[int, SpdyStream] = {}
        self._new: queue.Queue[SpdyStream | None] = queue.Queue()
        self._last_id = 0
        self.closed = threading.Event()  # the peer is gone (EOF, error or GOAWAY)
        self._reader = threading.Thread(target=self._read_loop, name="spdy-read", daemon=True)

    def start(self) -> None:
        self._reader.start()

    # writing

    def send_frame(self, frame: spdy.Frame) -> None:
        with self._wlock:
            self.transport.send(self._writer.encode(frame))

    def send_data(self, stream_id: int, data: bytes, fin: bool = False) -> None:
        with self._wlock:
            self.transport.send(self._writer.data(stream_id, data, fin))

    # reading

    def accept(self, timeout: float | None = None) -> SpdyStream | None:
        """The next stream the peer opened; None once it can open no more, or on timeout."""
        try:
            return self._new.get(timeout=timeout)
        except queue.Empty:
            return None

    def _read_loop(self) -> None:
        try:
            while True:
                data = self.transport.recv()
                if not data:
                    break
                for frame in self._parser.feed(data):
                    if not self._dispatch(frame):
                        return
        except spdy.SpdyProtocolError as exc:
            log.info("spdy protocol error", extra={"error": str(exc)})
            with contextlib.suppress(OSError):
                self.send_frame(spdy.GoAway(self._last_id, 1))
        except OSError as exc:
            log.debug("spdy connection lost", extra={"error": str(exc)})
        finally:
            self._peer_gone()

    def _peer_gone(self) -> None:
        self.closed.set()
        for s in list(self._streams.values()):
            s._in.end()
        self._new.put(None)

    def _dispatch(self, frame: spdy.Frame) -> bool:
        if isinstance(frame, spdy.DataFrame):
            s = self._streams.get(frame.stream_id)
            if s is not None:
                s._in.push(frame.data)
                if frame.fin:
                    s._in.end()
        elif isinstance(frame, spdy.SynStream):
            self._open(frame)
        elif isinstance(frame, spdy.RstStream):
            s = self._streams.get(frame.stream_id)
            if s is not None:
                s.reset_by_peer = True
                s._in.end()
        elif isinstance(frame, spdy.Ping):
            # Pings the client starts carry odd ids; answering one of ours would loop.
            if frame.id % 2 == 1:
                self.send_frame(frame)
        elif isinstance(frame, spdy.GoAway):
            # The client opens no more streams; the ones it has keep working until it hangs up.
            self._new.put(None)
        return True

    def _open(self, frame: spdy.SynStream) -> None:
        sid = frame.stream_id
        if sid % 2 == 0 or sid <= self._last_id:
            self.send_frame(spdy.RstStream(sid, spdy.RstStatus.PROTOCOL_ERROR))
            return
        self._last_id = sid
        s = SpdyStream(self, sid, frame.headers)
        self._streams[sid] = s
        if frame.fin or frame.unidirectional:
            s._in.end()
        self.send_frame(spdy.SynReply(sid))
        self._new.put(s)

    def close(self, linger: float = LINGER) -> None:
        """Ends the connection: every stream half-closed, GOAWAY, then a lingering close."""
        for s in list(self._streams.values()):
            s.close()
        with contextlib.suppress(OSError):
            self.send_frame(spdy.GoAway(self._last_id, 0))
        self.transport.shutdown_write()
        if threading.current_thread() is not self._reader:
            self.closed.wait(linger)
        self.transport.close()


class StreamSetupError(Exception):
    """The client did not open the streams the request needs."""


def spdy_remote_streams(
    conn: SpdyConnection, opts: StreamOptions, protocol: str, timeout: float = 30.0
) -> RemoteStreams:
    """Waits for the client to open the streams that ``opts`` calls for (the kubelet's server
    gives it 30 seconds) and returns them by type."""
    want = expected_streams(opts, protocol)
    got: dict[StreamType, SpdyStream] = {}
    deadline = time.monotonic() + timeout
    while set(got) != want:
        left = deadline - time.monotonic()
        s = conn.accept(max(left, 0.0)) if left > 0 else None
        if s is None:
            missing = sorted(t.value for t in want - set(got))
            raise StreamSetupError(f"timed out waiting for client streams: {missing}")
        try:
            kind = StreamType(s.header("streamtype") or "")
        except ValueError:
            kind = None
        if kind is None or kind not in want or kind in got:
            log.info("unexpected stream", extra={"type": s.header("streamtype")})
            s.reset(spdy.RstStatus.REFUSED_STREAM)
            continue
        got[kind] = s
    return RemoteStreams(
        protocol=protocol,
        error=got[StreamType.ERROR],
        stdin=got.get(StreamType.STDIN),
        stdout=got.get(StreamType.STDOUT),
        stderr=got.get(StreamType.STDERR),
        resize=got.get(StreamType.RESIZE),
        closer=conn.close,
    )


class RemoteStreams:
    """The streams of one exec or attach, whatever the transport."""

    def __init__(
        self,
        protocol: str,
        error: Outbound,
        stdin: Inbound | None,
        stdout: Outbound | None,
        stderr: Outbound | None,
        resize: Inbound | None,
        closer: Callable[[], None],
    ) -> None:
        self.protocol = protocol
        self.error = error
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.resize = resize
        self._closer = closer

    def finish(self, error_message: bytes) -> None:
        """Output streams ended, the outcome on the error stream, the connection closed."""
        for out in (self.stdout, self.stderr):
            if out is not None:
                with contextlib.suppress(OSError):
                    out.close()
        with contextlib.suppress(OSError):
            if error_message:
                self.error.write(error_message)
            self.error.close()
        self._closer()


# WebSocket


class WebSocketConnection:
    """The server end of a WebSocket: whole messages in, frames out. Pings are answered and a
    close is acknowledged inside :meth:`recv_message`, on the caller's (reader) thread."""

    def __init__(self, transport: ByteTransport) -> None:
        self.transport = transport
        self._parser = ws.MessageParser()
        self._pending: deque[ws.Message] = deque()
        self._wlock = threading.Lock()
        self._close_sent = False
        self.closed = threading.Event()

    def recv_message(self) -> bytes | None:
        """The next binary message; None once the peer closed or broke the connection."""
        while True:
            while self._pending:
                msg = self._pending.popleft()
                if msg.opcode == ws.Opcode.PING:
                    with contextlib.suppress(OSError):
                        self.send_frame(ws.Opcode.PONG, msg.payload)
                elif msg.opcode == ws.Opcode.CLOSE:
                    code, _ = ws.parse_close(msg.payload)
                    self.send_close(code if code in (1000, 1001) else 1000)
                    return self._gone()
                elif msg.opcode in (ws.Opcode.BINARY, ws.Opcode.TEXT):
                    return msg.payload
            data = self.transport.recv()
            if not data:
                return self._gone()
            try:
                self._pending.extend(self._parser.feed(data))
            except ws.WebSocketProtocolError as exc:
                log.info("websocket protocol error", extra={"error": str(exc)})
                self.send_close(exc.code, str(exc))
                return self._gone()

    def _gone(self) -> bytes | None:
        self.closed.set()
        return None

    def send_frame(self, opcode: ws.Opcode, payload: bytes) -> None:
        with self._wlock:
            if self._close_sent:
                raise BrokenPipeError("websocket is closing")
            self.transport.send(ws.encode_frame(opcode, payload))

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        with self._wlock:
            if self._close_sent:
                return
            self._close_sent = True
            with contextlib.suppress(OSError):
                self.transport.send(
                    ws.encode_frame(ws.Opcode.CLOSE, ws.close_payload(code, reason))
                )

    def close(self, linger: float = LINGER, reader: threading.Thread | None = None) -> None:
        self.send_close(1000)
        if reader is not None and reader is not threading.current_thread():
            self.closed.wait(linger)
        self.transport.shutdown_write()
        self.transport.close()


class WebSocketTunnel:
    """A byte transport inside a WebSocket (each binary message carries the next bytes): port
    forwarding over WebSocket runs a whole SPDY connection through it."""

    def __init__(self, conn: WebSocketConnection) -> None:
        self.conn = conn

    def recv(self) -> bytes:
        while True:
            msg = self.conn.recv_message()
            if msg is None:
                return b""
            if msg:
                return msg

    def send(self, data: bytes) -> None:
        self.conn.send_frame(ws.Opcode.BINARY, data)

    def shutdown_write(self) -> None:
        self.conn.send_close(1000)

    def close(self) -> None:
        self.conn.transport.shutdown_write()
        self.conn.transport.close()


class _WsOut:
    def __init__(self, conn: WebSocketConnection, channel: int) -> None:
        self.conn = conn
        self.channel = channel

    def write(self, data: bytes) -> None:
        if data:
            self.conn.send_frame(ws.Opcode.BINARY, bytes([self.channel]) + data)

    def close(self) -> None:
        # The channel protocol has no way for the server to end one output stream; the end of
        # the connection ends them all.
        return


def websocket_remote_streams(
    conn: WebSocketConnection, opts: StreamOptions, protocol: str
) -> RemoteStreams:
    """Channels over a WebSocket: they exist from the start; a reader thread files stdin and
    resize messages under their channel and ends stdin on the v5 close signal."""
    want = expected_streams(opts, protocol)
    inbound = {CHANNEL_OF[t]: _Queue() for t in (StreamType.STDIN, StreamType.RESIZE) if t in want}

    def read_loop() -> None:
        while True:
            msg = conn.recv_message()
            if msg is None:
                break
            if not msg:
                continue
            channel, body = msg[0], msg[1:]
            if channel == CLOSE_CHANNEL:
                if body and body[0] in inbound:
                    inbound[body[0]].end()
                continue
            q = inbound.get(channel)
            if q is not None:
                q.push(body)
        for q in inbound.values():
            q.end()

    reader = threading.Thread(target=read_loop, name="ws-read", daemon=True)
    reader.start()

    def out(t: StreamType) -> Outbound | None:
        return _WsOut(conn, CHANNEL_OF[t]) if t in want else None

    return RemoteStreams(
        protocol=protocol,
        error=_WsOut(conn, CHANNEL_OF[StreamType.ERROR]),
        stdin=inbound.get(CHANNEL_OF[StreamType.STDIN]),
        stdout=out(StreamType.STDOUT),
        stderr=out(StreamType.STDERR),
        resize=inbound.get(CHANNEL_OF[StreamType.RESIZE]),
        closer=lambda: conn.close(reader=reader),
    )
