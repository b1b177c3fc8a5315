"""The HTTP side of a streaming connection (pure): parsing the request head that arrives on
the socket, deciding how to upgrade it (SPDY/3.1 or WebSocket, and which subprotocol), and
the bytes of the answer. The server reads the head itself instead of using ``http.server``,
because after the upgrade it needs the raw socket and every byte that followed the head.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from cri_shim.streaming.remotecommand import client_protocols, negotiate
from cri_shim.streaming.websocket import accept_key, valid_key

__all__ = [
    "MAX_HEAD",
    "BadRequestError",
    "Request",
    "Transport",
    "Upgrade",
    "error_response",
    "parse_head",
    "plan_upgrade",
    "split_head",
    "upgrade_response",
]

MAX_HEAD = 64 * 1024
PROTOCOL_HEADER = "x-stream-protocol-version"


class BadRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    version: str
    headers: tuple[tuple[str, str], ...]  # names lowercased, in arrival order

    def get(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


def split_head(buf: bytes) -> tuple[bytes, bytes] | None:
    """(head, rest) once the blank line that ends the head has arrived, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise BadRequestError(431, "request head too large")
        return None
    return buf[:end], buf[end + 4 :]


def parse_head(head: bytes) -> Request:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise BadRequestError(400, "undecodable request head") from exc
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequestError(400, "malformed request line")
    method, target, version = parts
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":
            raise BadRequestError(400, "folded header lines are not accepted")
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequestError(400, f"malformed header line {line[:40]!r}")
        headers.append((name.lower(), value.strip()))
    return Request(method, urlsplit(target).path, version, tuple(headers))


class Transport(StrEnum):
    SPDY = "spdy"
    WEBSOCKET = "websocket"


@dataclass(frozen=True)
class Upgrade:
    transport: Transport
    protocol: str
    # WebSocket only: the Sec-WebSocket-Accept value.
    accept: str = ""


def _tokens(value: str | None) -> set[str]:
    return {t.strip().lower() for t in (value or "").split(",") if t.strip()}


def plan_upgrade(
    req: Request, spdy_protocols: tuple[str, ...], ws_protocols: tuple[str, ...]
) -> Upgrade:
    """How to answer ``req``: which transport, which subprotocol; or a BadRequestError with
    the status the kubelet's own server answers in the same case."""
    if "upgrade" not in _tokens(req.get("connection")):
        raise BadRequestError(400, "streaming requests must upgrade the connection")
    upgrade = _tokens(req.get("upgrade"))
    if "spdy/3.1" in upgrade:
        offered = client_protocols(req.get_all(PROTOCOL_HEADER))
        chosen = negotiate(offered, spdy_protocols)
        if chosen is None:
            raise BadRequestError(
                403,
                f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                f"server supports {list(spdy_protocols)}",
            )
        return Upgrade(Transport.SPDY, chosen)
    if "websocket" in upgrade:
        if req.method != "GET":
            raise BadRequestError(405, "websocket upgrades must use GET")
        key = req.get("sec-websocket-key") or ""
        if req.get("sec-websocket-version") != "13" or not valid_key(key):
            raise BadRequestError(400, "bad websocket handshake (version 13 and a key required)")
        offered = client_protocols(req.get_all("sec-websocket-protocol"))
        chosen = negotiate(offered, ws_protocols)
        if chosen is None:
            raise BadRequestError(
                400,
                f"unable to upgrade: client offered {offered}, "
                f"server supports {list(ws_protocols)}",
            )
        return Upgrade(Transport.WEBSOCKET, chosen, accept_key(key))
    raise BadRequestError(400, "unsupported upgrade (SPDY/3.1 or websocket)")


def upgrade_response(up: Upgrade) -> bytes:
    if up.transport is Transport.SPDY:
        lines = [
            "HTTP/1.1 101 Switching Protocols",
            "Connection: Upgrade",
            "Upgrade: SPDY/3.1",
            f"X-Stream-Protocol-Version: {up.protocol}",
        ]
    else:
        lines = [
            "HTTP/1.1 101 Switching Protocols",
            "Connection: Upgrade",
            "Upgrade: websocket",
            f"Sec-WebSocket-Accept: {up.accept}",
            f"Sec-WebSocket-Protocol: {up.protocol}",
        ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


def error_response(status: int, message: str) -> bytes:
    body = (message + "\n").encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body
