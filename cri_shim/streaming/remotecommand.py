"""The remotecommand channel protocol of exec and attach, and the port-forward protocol names
(pure: no sockets, no processes).

A client (crictl, the kubelet, critest; client-go underneath) opens one connection and then
one stream per purpose, named by a ``streamType`` header over SPDY or by a channel number over
WebSocket: ``error`` (always), ``stdin``, ``stdout``, ``stderr`` (never with a tty) and
``resize`` (only with a tty, protocol v3 and later). The server writes the outcome on the
error stream: in v4/v5 a Kubernetes ``Status`` object in JSON (Success, or Failure with reason
``NonZeroExitCode`` and the exit code as an ``ExitCode`` cause); in v2/v3 plain text, and
nothing at all for success. Resize events are JSON objects ``{"Width":w,"Height":h}``, one
after the other on the resize stream. Over WebSocket each binary message starts with the
channel number (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize); v5 adds a close signal, a
message ``[255, channel]``, with which the client half-closes its stdin.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "CHANNEL_OF",
    "CLOSE_CHANNEL",
    "PORTFORWARD_PROTOCOL",
    "PORTFORWARD_WEBSOCKET_PROTOCOL",
    "SPDY_PROTOCOLS",
    "WEBSOCKET_PROTOCOLS",
    "Outcome",
    "ResizeDecoder",
    "StreamOptions",
    "StreamType",
    "TerminalSize",
    "client_protocols",
    "error_stream_message",
    "expected_streams",
    "negotiate",
]

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V3 = "v3.channel.k8s.io"
V2 = "v2.channel.k8s.io"
# In our order of preference. Over SPDY v5 behaves as v4 (its close signal exists only on
# WebSocket), so both are offered.
SPDY_PROTOCOLS = (V5, V4, V3, V2)
WEBSOCKET_PROTOCOLS = (V5, V4)
PORTFORWARD_PROTOCOL = "portforward.k8s.io"
# Port forwarding over WebSocket tunnels the SPDY connection itself inside binary messages.
PORTFORWARD_WEBSOCKET_PROTOCOL = "SPDY/3.1+" + PORTFORWARD_PROTOCOL

CLOSE_CHANNEL = 255


class StreamType(StrEnum):
    STDIN = "stdin"
    STDOUT = "stdout"
    STDERR = "stderr"
    ERROR = "error"
    RESIZE = "resize"


CHANNEL_OF = {
    StreamType.STDIN: 0,
    StreamType.STDOUT: 1,
    StreamType.STDERR: 2,
    StreamType.ERROR: 3,
    StreamType.RESIZE: 4,
}


@dataclass(frozen=True)
class StreamOptions:
    """Which streams the CRI request asked for (the client must open exactly these)."""

    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


def client_protocols(values: Iterable[str]) -> list[str]:
    """The protocols a client offers: header values, possibly repeated and comma-separated."""
    out: list[str] = []
    for value in values:
        out += [p.strip() for p in value.split(",") if p.strip()]
    return out


def negotiate(offered: Iterable[str], supported: Iterable[str]) -> str | None:
    """The first protocol of ours (in our order of preference) that the client offers."""
    offered_set = set(offered)
    for proto in supported:
        if proto in offered_set:
            return proto
    return None


def expected_streams(opts: StreamOptions, protocol: str) -> frozenset[StreamType]:
    want = {StreamType.ERROR}
    if opts.stdin:
        want.add(StreamType.STDIN)
    if opts.stdout:
        want.add(StreamType.STDOUT)
    # With a tty, stderr is merged into stdout by the terminal: the client opens no stream.
    if opts.stderr and not opts.tty:
        want.add(StreamType.STDERR)
    if opts.tty and protocol != V2:
        want.add(StreamType.RESIZE)
    return frozenset(want)


@dataclass(frozen=True)
class Outcome:
    """How an exec or attach ended: an exit code, or an error that prevented it."""

    exit_code: int = 0
    error: str | None = None


def error_stream_message(outcome: Outcome, protocol: str, cmd: list[str] | None = None) -> bytes:
    """What goes on the error stream before it is closed (empty: write nothing)."""
    structured = protocol in (V4, V5)
    if outcome.error is not None:
        if not structured:
            return outcome.error.encode()
        return _status("Failure", message=outcome.error, reason="InternalError", code=500)
    if outcome.exit_code == 0:
        return _status("Success") if structured else b""
    what = f"command {cmd!r}" if cmd else "process"
    message = f"command terminated with non-zero exit code: {what} exited with {outcome.exit_code}"
    if not structured:
        return message.encode()
    # The client parses the cause as an 8-bit unsigned number.
    code = outcome.exit_code & 0xFF
    return _status(
        "Failure",
        message=message,
        reason="NonZeroExitCode",
        details={"causes": [{"reason": "ExitCode", "message": str(code)}]},
    )


def _status(
    status: str,
    message: str = "",
    reason: str = "",
    code: int = 0,
    details: dict[str, object] | None = None,
) -> bytes:
    obj: dict[str, object] = {"metadata": {}, "status": status}
    if message:
        obj["message"] = message
    if reason:
        obj["reason"] = reason
    if details is not None:
        obj["details"] = details
    if code:
        obj["code"] = code
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass(frozen=True)
class TerminalSize:
    width: int
    height: int


class ResizeDecoder:
    """Turns the bytes of a resize stream (concatenated JSON objects, in any pieces) into
    terminal sizes; malformed objects are skipped, as a resize is never worth failing for."""

    def __init__(self, limit: int = 1 << 16) -> None:
        self._buf = ""
        self._limit = limit
        self._decoder = json.JSONDecoder()

    def feed(self, data: bytes) -> list[TerminalSize]:
        self._buf += data.decode("utf-8", "replace")
        out: list[TerminalSize] = []
        while True:
            text = self._buf.lstrip()
            if not text:
                self._buf = ""
                return out
            try:
                obj, end = self._decoder.raw_decode(text)
            except json.JSONDecodeError:
                if len(text) > self._limit or not text.startswith("{"):
                    # Garbage that can never become an object: drop through the next line.
                    nl = text.find("\n")
                    self._buf = "" if nl < 0 else text[nl + 1 :]
                    continue
                self._buf = text  # incomplete: wait for more
                return out
            self._buf = text[end:]
            size = _size(obj)
            if size is not None:
                out.append(size)


def _size(obj: object) -> TerminalSize | None:
    if not isinstance(obj, dict):
        return None
    w, h = obj.get("Width", obj.get("width")), obj.get("Height", obj.get("height"))
    if not isinstance(w, int) or not isinstance(h, int) or isinstance(w, bool):
        return None
    if not (0 <= w <= 0xFFFF and 0 <= h <= 0xFFFF):
        return None
    return TerminalSize(width=w, height=h)
