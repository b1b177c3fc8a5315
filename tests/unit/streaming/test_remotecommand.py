"""The remotecommand channel protocol: negotiation, which streams a request implies, what the
error stream says, and resize events."""

from __future__ import annotations

import json

import pytest

from cri_shim.streaming import remotecommand as rc
from cri_shim.streaming.remotecommand import Outcome, StreamOptions, StreamType, TerminalSize


def test_negotiation_takes_our_preference_among_the_offered() -> None:
    offered = rc.client_protocols(["v5.channel.k8s.io, v4.channel.k8s.io", "v3.channel.k8s.io"])
    assert offered == ["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io"]
    assert rc.negotiate(offered, rc.SPDY_PROTOCOLS) == rc.V5
    assert rc.negotiate(["v4.channel.k8s.io"], rc.SPDY_PROTOCOLS) == rc.V4
    assert rc.negotiate(["channel.k8s.io"], rc.SPDY_PROTOCOLS) is None
    assert rc.negotiate(["v3.channel.k8s.io"], rc.WEBSOCKET_PROTOCOLS) is None


ERR, IN, OUT, RSZ, SERR = (
    StreamType.ERROR,
    StreamType.STDIN,
    StreamType.STDOUT,
    StreamType.RESIZE,
    StreamType.STDERR,
)


@pytest.mark.parametrize(
    ("opts", "protocol", "want"),
    [
        (StreamOptions(False, True, True, False), rc.V4, {ERR, OUT, SERR}),
        (StreamOptions(True, True, False, True), rc.V4, {ERR, IN, OUT, RSZ}),
        (StreamOptions(True, True, True, True), rc.V5, {ERR, IN, OUT, RSZ}),
        (StreamOptions(True, True, False, True), rc.V2, {ERR, IN, OUT}),
        (StreamOptions(True, False, False, False), rc.V3, {ERR, IN}),
    ],
)
def test_expected_streams(opts: StreamOptions, protocol: str, want: set[StreamType]) -> None:
    assert rc.expected_streams(opts, protocol) == want


def test_success_is_a_status_object_in_v4_and_nothing_in_v2() -> None:
    assert json.loads(rc.error_stream_message(Outcome(), rc.V5)) == {
        "metadata": {},
        "status": "Success",
    }
    assert rc.error_stream_message(Outcome(), rc.V2) == b""


def test_exit_code_is_a_nonzero_exit_code_cause() -> None:
    status = json.loads(rc.error_stream_message(Outcome(exit_code=3), rc.V4, ["false"]))
    assert status["status"] == "Failure"
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert "non-zero exit code" in status["message"]
    # The client parses the cause as a uint8.
    status = json.loads(rc.error_stream_message(Outcome(exit_code=300), rc.V4))
    assert status["details"]["causes"][0]["message"] == "44"
    assert b"exited with 3" in rc.error_stream_message(Outcome(exit_code=3), rc.V3)


def test_errors_are_failures_with_their_message() -> None:
    status = json.loads(rc.error_stream_message(Outcome(error="boom"), rc.V4))
    assert status["status"] == "Failure"
    assert status["message"] == "boom"
    assert "details" not in status
    assert rc.error_stream_message(Outcome(error="boom"), rc.V2) == b"boom"


def test_resize_events_in_pieces() -> None:
    d = rc.ResizeDecoder()
    assert d.feed(b'{"Width":80,') == []
    assert d.feed(b'"Height":24}\n{"Width":100,"Height":40}\n') == [
        TerminalSize(80, 24),
        TerminalSize(100, 40),
    ]


def test_bad_resize_events_are_skipped() -> None:
    d = rc.ResizeDecoder()
    got = d.feed(
        b'garbage\n{"Width":-1,"Height":2}{"Width":true,"Height":2}[1]{"Width":5,"Height":6}'
    )
    assert got == [TerminalSize(5, 6)]
    d = rc.ResizeDecoder(limit=16)
    assert d.feed(b'{"Width":1' + b" " * 40) == []
    assert d.feed(b'\n{"Width":2,"Height":3}') == [TerminalSize(2, 3)]
