"""Test clients for the streaming server: the client half of SPDY/3.1 and WebSocket, built on
the same pure framing modules, speaking over a real loopback socket."""

from __future__ import annotations

import base64
import os
import socket
from urllib.parse import urlsplit

from cri_shim.streaming import spdy
from cri_shim.streaming import websocket as ws

# Every client socket, so that a fixture can close what a test left open.
OPEN: list[socket.socket] = []


def close_all() -> None:
    while OPEN:
        OPEN.pop().close()


def _connect(url: str, head_lines: list[str]) -> tuple[socket.socket, bytes, bytes]:
    u = urlsplit(url)
    sock = socket.create_connection((u.hostname or "", u.port or 80), timeout=10)
    OPEN.append(sock)
    sock.sendall(("\r\n".join([*head_lines, "", ""]).replace("PATH", u.path)).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return sock, head, rest


class SpdyClient:
    def __init__(self, url: str, protocols: tuple[str, ...] = ("v5.channel.k8s.io",)) -> None:
        lines = [
            "POST PATH HTTP/1.1",
            "Host: 127.0.0.1",
            "Connection: Upgrade",
            "Upgrade: SPDY/3.1",
            *(f"X-Stream-Protocol-Version: {p}" for p in protocols),
        ]
        self.sock, self.head, self._rest = _connect(url, lines)
        self.w, self.p = spdy.FrameWriter(), spdy.FrameParser()
        self.next_id = 1
        self.frames: list[spdy.Frame] = []

    @property
    def status(self) -> int:
        return int(self.head.split(b" ")[1])

    def open(self, *headers: tuple[str, str], fin: bool = False) -> int:
        sid = self.next_id
        self.next_id += 2
        self.sock.sendall(self.w.encode(spdy.SynStream(sid, tuple(headers), fin=fin)))
        return sid

    def send(self, frame: spdy.Frame) -> None:
        self.sock.sendall(self.w.encode(frame))

    def read_all(self) -> list[spdy.Frame]:
        """Every frame until the server closes the connection."""
        data = self._rest
        self._rest = b""
        while True:
            self.frames += self.p.feed(data)
            data = self.sock.recv(65536)
            if not data:
                return self.frames

    def read_until(self, pred: object) -> list[spdy.Frame]:
        data = self._rest
        self._rest = b""
        while True:
            self.frames += self.p.feed(data)
            if any(pred(f) for f in self.frames):  # type: ignore[operator]
                return self.frames
            data = self.sock.recv(65536)
            if not data:
                return self.frames

    def data(self, sid: int) -> bytes:
        return b"".join(
            f.data for f in self.frames if isinstance(f, spdy.DataFrame) and f.stream_id == sid
        )

    def finished(self, sid: int) -> bool:
        return any(
            isinstance(f, spdy.DataFrame) and f.stream_id == sid and f.fin for f in self.frames
        )


class WsClient:
    MASK = b"\x01\x02\x03\x04"

    def __init__(self, url: str, protocol: str = "v5.channel.k8s.io") -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            "GET PATH HTTP/1.1",
            "Host: 127.0.0.1",
            "Connection: Upgrade",
            "Upgrade: websocket",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            f"Sec-WebSocket-Protocol: {protocol}",
        ]
        self.sock, self.head, rest = _connect(url, lines)
        self.key = key
        self.p = ws.MessageParser(require_mask=False)
        self.messages = self.p.feed(rest)

    def send(self, payload: bytes, opcode: ws.Opcode = ws.Opcode.BINARY) -> None:
        self.sock.sendall(ws.encode_frame(opcode, payload, mask=self.MASK))

    def read_until_close(self) -> list[ws.Message]:
        while not any(m.opcode == ws.Opcode.CLOSE for m in self.messages):
            data = self.sock.recv(65536)
            if not data:
                break
            self.messages += self.p.feed(data)
        return self.messages
