"""The pure parts of exec, attach and port-forward, and the pumps on plain pipes."""

from __future__ import annotations

import os
import threading
from typing import Any, cast

from cri_shim.streaming import spdy
from cri_shim.streaming.attach import demux_packet, resize_message
from cri_shim.streaming.conn import SpdyConnection, SpdyStream
from cri_shim.streaming.exec import exec_process
from cri_shim.streaming.portforward import PairTracker
from cri_shim.streaming.pumps import copy_in, drain_outputs, write_all
from cri_shim.streaming.remotecommand import TerminalSize


def test_exec_process_keeps_the_container_settings() -> None:
    base: dict[str, Any] = {
        "args": ["nginx"],
        "env": ["PATH=/bin"],
        "user": {"uid": 5},
        "cwd": "/srv",
        "terminal": False,
        "consoleSize": {"height": 1, "width": 1},
    }
    p = exec_process(base, ["sh", "-c", "id"], tty=True)
    assert p["args"] == ["sh", "-c", "id"]
    assert p["terminal"] is True
    assert p["env"] == ["PATH=/bin", "TERM=xterm"]
    assert p["user"] == {"uid": 5}
    assert p["cwd"] == "/srv"
    assert "consoleSize" not in p
    assert base["args"] == ["nginx"]  # the container's own spec is untouched
    assert exec_process({"env": ["TERM=vt100"]}, ["x"], tty=True)["env"] == ["TERM=vt100"]
    assert exec_process({}, ["x"], tty=False)["env"] == []


def test_attach_packets_and_resizes() -> None:
    assert demux_packet(b"\x02hello") == (2, b"hello")
    assert demux_packet(b"\x03") == (3, b"")
    assert demux_packet(b"") == (0, b"")
    assert resize_message(TerminalSize(width=80, height=24)) == b"1 24 80\n"


class FakeConn:
    def __init__(self) -> None:
        self.sent: list[spdy.Frame] = []

    def send_frame(self, frame: spdy.Frame) -> None:
        self.sent.append(frame)


def stream(conn: FakeConn, sid: int, *headers: tuple[str, str]) -> SpdyStream:
    return SpdyStream(cast(SpdyConnection, conn), sid, tuple(headers))


def test_port_forward_streams_pair_by_request_id() -> None:
    conn, pairs = FakeConn(), PairTracker()
    e1 = stream(conn, 1, ("streamtype", "error"), ("port", "80"), ("requestid", "1"))
    e2 = stream(conn, 3, ("streamtype", "error"), ("port", "81"), ("requestid", "2"))
    d2 = stream(conn, 5, ("streamtype", "data"), ("port", "81"), ("requestid", "2"))
    d1 = stream(conn, 7, ("streamtype", "data"), ("port", "80"), ("requestid", "1"))
    assert pairs.add(e1) is None
    assert pairs.add(e2) is None
    assert pairs.add(d2) == ("81", e2, d2)
    assert pairs.add(d1) == ("80", e1, d1)


def test_port_forward_pairs_without_request_ids_and_refuses_duplicates() -> None:
    conn, pairs = FakeConn(), PairTracker()
    err = stream(conn, 1, ("streamtype", "error"), ("port", "80"))
    dup = stream(conn, 5, ("streamtype", "error"), ("port", "80"), ("requestid", "1"))
    data = stream(conn, 3, ("streamtype", "data"), ("port", "80"))
    assert pairs.add(err) is None
    assert pairs.add(dup) is None
    assert pairs.add(data) == ("80", err, data)
    assert conn.sent == [spdy.RstStream(5, spdy.RstStatus.CANCEL)]


class Sink:
    def __init__(self, fail: bool = False) -> None:
        self.data = b""
        self.fail = fail

    def write(self, data: bytes) -> None:
        if self.fail:
            raise BrokenPipeError
        self.data += data

    def close(self) -> None:
        return


class Source:
    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    def read(self, timeout: float | None = None) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


def test_drain_outputs_until_eof() -> None:
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    out, err = Sink(), Sink(fail=True)
    write_all(w1, b"one")
    write_all(w2, b"two")
    os.close(w1)
    os.close(w2)
    drain_outputs({r1: out, r2: err}, threading.Event())
    assert out.data == b"one"
    os.close(r1)
    os.close(r2)


def test_drain_outputs_stops_after_the_grace_period() -> None:
    r, w = os.pipe()  # a background child would hold the write end open
    exited = threading.Event()
    exited.set()
    out = Sink()
    write_all(w, b"late")
    drain_outputs({r: out}, exited, grace=0.2)
    assert out.data == b"late"
    os.close(r)
    os.close(w)


def test_copy_in_keeps_draining_after_the_target_breaks() -> None:
    got: list[bytes] = []
    ended: list[bool] = []

    def write(data: bytes) -> None:
        got.append(data)
        raise BrokenPipeError

    src = Source(b"a", b"b", b"c")
    copy_in(src, write, lambda: ended.append(True))
    assert got == [b"a"]
    assert src.chunks == []
    assert ended == [True]
