"""The HTTP upgrade: request heads, and the answers to SPDY and WebSocket upgrades."""

from __future__ import annotations

import pytest

from cri_shim.streaming import handshake as hs
from cri_shim.streaming.remotecommand import SPDY_PROTOCOLS, WEBSOCKET_PROTOCOLS

SPDY_HEAD = (
    b"POST /exec/tok?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
    b"Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v5.channel.k8s.io\r\n"
    b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
)


def request(head: bytes) -> hs.Request:
    split = hs.split_head(head + b"\r\nrest")
    assert split is not None
    raw, rest = split
    assert rest == b"rest"
    return hs.parse_head(raw)


def test_head_is_parsed() -> None:
    req = request(SPDY_HEAD)
    assert (req.method, req.path, req.version) == ("POST", "/exec/tok", "HTTP/1.1")
    assert req.get("upgrade") == "SPDY/3.1"
    assert req.get_all("x-stream-protocol-version") == ["v5.channel.k8s.io", "v4.channel.k8s.io"]


def test_incomplete_and_oversized_heads() -> None:
    assert hs.split_head(b"GET / HTTP/1.1\r\n") is None
    with pytest.raises(hs.BadRequestError) as info:
        hs.split_head(b"x" * (hs.MAX_HEAD + 1))
    assert info.value.status == 431


@pytest.mark.parametrize(
    "head",
    [b"GET /\r\n", b"GET / HTTP/2\r\n", b"GET / HTTP/1.1\r\nbad", b"GET / HTTP/1.1\r\n x: y"],
)
def test_malformed_heads(head: bytes) -> None:
    with pytest.raises(hs.BadRequestError):
        hs.parse_head(head)


def test_spdy_upgrade() -> None:
    up = hs.plan_upgrade(request(SPDY_HEAD), SPDY_PROTOCOLS, WEBSOCKET_PROTOCOLS)
    assert up == hs.Upgrade(hs.Transport.SPDY, "v5.channel.k8s.io")
    answer = hs.upgrade_response(up).decode()
    assert answer.startswith("HTTP/1.1 101 ")
    assert "Upgrade: SPDY/3.1\r\n" in answer
    assert "X-Stream-Protocol-Version: v5.channel.k8s.io\r\n" in answer
    assert answer.endswith("\r\n\r\n")


def test_spdy_upgrade_without_a_common_protocol_is_forbidden() -> None:
    head = SPDY_HEAD.replace(b"v5.channel", b"v9.channel").replace(b"v4.channel", b"v8.channel")
    with pytest.raises(hs.BadRequestError) as info:
        hs.plan_upgrade(request(head), SPDY_PROTOCOLS, WEBSOCKET_PROTOCOLS)
    assert info.value.status == 403


WS_HEAD = (
    b"GET /attach/tok HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n"
)


def test_websocket_upgrade() -> None:
    up = hs.plan_upgrade(request(WS_HEAD), SPDY_PROTOCOLS, WEBSOCKET_PROTOCOLS)
    assert up.transport is hs.Transport.WEBSOCKET
    answer = hs.upgrade_response(up).decode()
    assert "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in answer
    assert "Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n" in answer


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (WS_HEAD.replace(b"GET", b"POST"), 405),
        (WS_HEAD.replace(b"Version: 13", b"Version: 8"), 400),
        (WS_HEAD.replace(b"v5.channel.k8s.io", b"base64.channel.k8s.io"), 400),
        (WS_HEAD.replace(b"keep-alive, Upgrade", b"keep-alive"), 400),
        (WS_HEAD.replace(b"Upgrade: websocket", b"Upgrade: h2c"), 400),
    ],
)
def test_bad_websocket_upgrades(head: bytes, status: int) -> None:
    with pytest.raises(hs.BadRequestError) as info:
        hs.plan_upgrade(request(head), SPDY_PROTOCOLS, WEBSOCKET_PROTOCOLS)
    assert info.value.status == status


def test_error_response() -> None:
    raw = hs.error_response(404, "gone")
    assert raw.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert raw.endswith(b"\r\n\r\ngone\n")
    assert b"Content-Length: 5\r\n" in raw
