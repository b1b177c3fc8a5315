"""The streaming server end to end over loopback, with a fake backend in place of runc and
conmon: token redemption, stream set-up, the outcome on the error stream, WebSocket channels,
port forwarding, and refusals."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from cri_shim.streaming import spdy
from cri_shim.streaming import websocket as ws
from cri_shim.streaming.conn import RemoteStreams, SpdyConnection
from cri_shim.streaming.portforward import serve_port_forward
from cri_shim.streaming.remotecommand import Outcome, StreamOptions
from cri_shim.streaming.server import StreamingServer
from cri_shim.streaming.targets import AttachTarget, ExecTarget, PortForwardTarget
from tests.unit.streaming.client import SpdyClient, WsClient, close_all


class FakeBackend:
    """exec: echoes stdin to stdout (upper-cased), writes 'err' to stderr, exits with the
    command's first argument; attach: reports the resizes it saw."""

    def __init__(self, echo_port: int) -> None:
        self.echo_port = echo_port
        self.resizes: list[bytes] = []

    def exec(
        self, target: ExecTarget, streams: RemoteStreams, peer_gone: threading.Event
    ) -> Outcome:
        assert streams.stdout is not None
        if streams.stdin is not None:
            while chunk := streams.stdin.read(5):
                streams.stdout.write(chunk.upper())
        streams.stdout.write(b"out")
        if streams.stderr is not None:
            streams.stderr.write(b"err")
        return Outcome(exit_code=int(target.cmd[0]))

    def attach(
        self, target: AttachTarget, streams: RemoteStreams, peer_gone: threading.Event
    ) -> Outcome:
        if streams.resize is not None:
            self.resizes.append(streams.resize.read(5))
        return Outcome(error="container went away")

    def port_forward(self, target: PortForwardTarget, conn: SpdyConnection) -> None:
        serve_port_forward(
            conn, lambda port: socket.create_connection(("127.0.0.1", self.echo_port))
        )


@pytest.fixture
def echo_port() -> Iterator[int]:
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                while data := c.recv(4096):
                    c.sendall(b"echo:" + data)

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


@pytest.fixture
def server(echo_port: int) -> Iterator[StreamingServer]:
    s = StreamingServer("127.0.0.1", 0, FakeBackend(echo_port))
    s.start()
    yield s
    close_all()
    s.stop()


def exec_url(server: StreamingServer, code: int, opts: StreamOptions) -> str:
    return server.url(ExecTarget("c1", (str(code),), opts))


def test_exec_over_spdy(server: StreamingServer) -> None:
    url = exec_url(server, 3, StreamOptions(stdin=True, stdout=True, stderr=True, tty=False))
    assert url.startswith(server.base_url + "/exec/")
    c = SpdyClient(url)
    assert c.status == 101
    assert b"X-Stream-Protocol-Version: v5.channel.k8s.io" in c.head
    err = c.open(("streamtype", "error"))
    sin = c.open(("streamtype", "stdin"))
    out = c.open(("streamtype", "stdout"))
    serr = c.open(("streamtype", "stderr"))
    c.read_until(lambda f: isinstance(f, spdy.SynReply) and f.stream_id == serr)
    c.send(spdy.DataFrame(sin, b"hello"))
    c.send(spdy.DataFrame(sin, b"", fin=True))
    frames = c.read_all()
    replies = [f.stream_id for f in frames if isinstance(f, spdy.SynReply)]
    assert replies == [err, sin, out, serr]
    assert c.data(out) == b"HELLOout"
    assert c.data(serr) == b"err"
    assert c.finished(out)
    assert c.finished(serr)
    assert c.finished(err)
    status = json.loads(c.data(err))
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert isinstance(frames[-1], spdy.GoAway)


def test_success_and_v4(server: StreamingServer) -> None:
    url = exec_url(server, 0, StreamOptions(stdin=False, stdout=True, stderr=False, tty=False))
    c = SpdyClient(url, protocols=("v4.channel.k8s.io",))
    err = c.open(("streamtype", "error"))
    out = c.open(("streamtype", "stdout"))
    c.read_all()
    assert c.data(out) == b"out"
    assert json.loads(c.data(err)) == {"metadata": {}, "status": "Success"}


def test_a_token_works_once(server: StreamingServer) -> None:
    url = exec_url(server, 0, StreamOptions(stdin=False, stdout=True, stderr=False, tty=False))
    c = SpdyClient(url)
    c.open(("streamtype", "error"))
    c.open(("streamtype", "stdout"))
    c.read_all()
    again = SpdyClient(url)
    assert again.status == 404


def test_kind_must_match_the_token(server: StreamingServer) -> None:
    url = exec_url(server, 0, StreamOptions(stdin=False, stdout=True, stderr=False, tty=False))
    assert SpdyClient(url.replace("/exec/", "/attach/")).status == 404
    assert SpdyClient(server.base_url + "/nothing/here").status == 404


def test_unexpected_streams_are_refused(server: StreamingServer) -> None:
    url = exec_url(server, 0, StreamOptions(stdin=False, stdout=True, stderr=False, tty=False))
    c = SpdyClient(url)
    bogus = c.open(("streamtype", "stdin"))
    c.open(("streamtype", "error"))
    c.open(("streamtype", "stdout"))
    frames = c.read_all()
    assert spdy.RstStream(bogus, spdy.RstStatus.REFUSED_STREAM) in frames


def test_pings_are_answered(server: StreamingServer) -> None:
    url = exec_url(server, 0, StreamOptions(stdin=True, stdout=True, stderr=False, tty=False))
    c = SpdyClient(url)
    c.send(spdy.Ping(7))
    c.read_until(lambda f: f == spdy.Ping(7))
    c.sock.close()


def test_attach_reports_errors_and_reads_resizes(server: StreamingServer) -> None:
    backend = server.backend
    assert isinstance(backend, FakeBackend)
    url = server.url(
        AttachTarget("c1", StreamOptions(stdin=True, stdout=True, stderr=False, tty=True))
    )
    c = SpdyClient(url)
    err = c.open(("streamtype", "error"))
    c.open(("streamtype", "stdin"))
    c.open(("streamtype", "stdout"))
    resize = c.open(("streamtype", "resize"))
    c.read_until(lambda f: isinstance(f, spdy.SynReply) and f.stream_id == resize)
    c.send(spdy.DataFrame(resize, b'{"Width":80,"Height":24}\n'))
    c.read_all()
    assert json.loads(c.data(err))["message"] == "container went away"
    assert backend.resizes == [b'{"Width":80,"Height":24}\n']


def test_exec_over_websocket(server: StreamingServer) -> None:
    url = exec_url(server, 2, StreamOptions(stdin=True, stdout=True, stderr=True, tty=False))
    c = WsClient(url)
    assert c.head.startswith(b"HTTP/1.1 101")
    assert f"Sec-WebSocket-Accept: {ws.accept_key(c.key)}".encode() in c.head
    c.send(b"\x00abc")
    c.send(b"\x09", ws.Opcode.PING)
    c.send(b"\xff\x00")  # v5: the client closes stdin
    msgs = c.read_until_close()
    data = [m.payload for m in msgs if m.opcode == ws.Opcode.BINARY]
    assert data[:3] == [b"\x01ABC", b"\x01out", b"\x02err"]
    assert json.loads(data[3][1:])["details"]["causes"][0]["message"] == "2"
    assert ws.Message(ws.Opcode.PONG, b"\x09") in msgs
    assert msgs[-1].opcode == ws.Opcode.CLOSE


def test_port_forward_over_spdy(server: StreamingServer) -> None:
    c = SpdyClient(server.url(PortForwardTarget("pod")), protocols=("portforward.k8s.io",))
    assert b"X-Stream-Protocol-Version: portforward.k8s.io" in c.head
    hdrs = (("port", "80"), ("requestid", "0"))
    err = c.open(("streamtype", "error"), *hdrs, fin=True)
    data = c.open(("streamtype", "data"), *hdrs)
    c.read_until(lambda f: isinstance(f, spdy.SynReply) and f.stream_id == data)
    c.send(spdy.DataFrame(data, b"ping"))
    c.send(spdy.DataFrame(data, b"", fin=True))
    c.read_until(lambda f: isinstance(f, spdy.DataFrame) and f.stream_id == err and f.fin)
    assert c.data(data) == b"echo:ping"
    assert c.finished(data)
    assert c.data(err) == b""
    c.sock.close()


def test_port_forward_reports_a_bad_port(server: StreamingServer) -> None:
    c = SpdyClient(server.url(PortForwardTarget("pod")), protocols=("portforward.k8s.io",))
    err = c.open(("streamtype", "error"), ("port", "99999"), ("requestid", "1"), fin=True)
    c.open(("streamtype", "data"), ("port", "99999"), ("requestid", "1"))
    c.read_until(lambda f: isinstance(f, spdy.DataFrame) and f.stream_id == err and f.fin)
    assert b"invalid port" in c.data(err)
    c.sock.close()


def test_port_forward_over_websocket_tunnels_spdy(server: StreamingServer) -> None:
    c = WsClient(server.url(PortForwardTarget("pod")), protocol="SPDY/3.1+portforward.k8s.io")
    assert b"Sec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io" in c.head
    w, p = spdy.FrameWriter(), spdy.FrameParser()
    hdrs = (("port", "80"), ("requestid", "0"))
    c.send(w.encode(spdy.SynStream(1, (("streamtype", "error"), *hdrs), fin=True)))
    c.send(w.encode(spdy.SynStream(3, (("streamtype", "data"), *hdrs))))
    c.send(w.encode(spdy.DataFrame(3, b"hi", fin=True)))
    frames: list[spdy.Frame] = []
    while not any(isinstance(f, spdy.DataFrame) and f.stream_id == 1 and f.fin for f in frames):
        chunk = c.sock.recv(65536)
        assert chunk
        for m in c.p.feed(chunk):
            frames += p.feed(m.payload)
    got = b"".join(f.data for f in frames if isinstance(f, spdy.DataFrame) and f.stream_id == 3)
    assert got == b"echo:hi"
    c.sock.close()


def test_plain_http_is_refused(server: StreamingServer) -> None:
    url = exec_url(server, 0, StreamOptions(stdin=False, stdout=True, stderr=False, tty=False))
    path = url.removeprefix(server.base_url)
    with socket.create_connection(("127.0.0.1", int(server.base_url.rsplit(":", 1)[1]))) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 400 ")


def test_only_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        StreamingServer("0.0.0.0", 0, FakeBackend(0))  # noqa: S104 - the refusal under test
