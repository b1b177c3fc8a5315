"""Exec over a streaming connection: ``runc exec`` with the container's own process settings
(user, environment, capabilities, working directory) and the client's command.

Without a tty the command's stdin, stdout and stderr are pipes (runc hands its stdio straight
to the process). With a tty, runc creates the container's terminal and, since it stays in the
foreground to report the exit status, relays it to its own stdio: we give runc the slave end
of a pty of ours (which runc puts in raw mode) and relay our master end to the client. A
resize sets our pty's size (TIOCSWINSZ) and sends runc SIGWINCH, on which runc copies the
size to the container's terminal. (runc 1.1 accepts ``--console-socket`` only together with
``--detach``, and a detached runc cannot tell us the exit status.) runc exits with the
command's exit status, which becomes the outcome. If the client hangs up first, the command
is killed, as the kubelet's runtimes do: nobody is left to read its output.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from typing import Any

from cri_shim.oci.runc import Runc
from cri_shim.streaming.conn import RemoteStreams
from cri_shim.streaming.pumps import (
    copy_in,
    drain_outputs,
    set_winsize,
    start_thread,
    watch_resizes,
    write_all,
)
from cri_shim.streaming.remotecommand import Outcome, TerminalSize

__all__ = ["exec_process", "run_exec"]


def exec_process(base: dict[str, Any], cmd: list[str], tty: bool) -> dict[str, Any]:
    """The OCI process of an exec: the container's process with the client's command (pure)."""
    process = copy.deepcopy(base)
    process["args"] = list(cmd)
    process["terminal"] = tty
    process.pop("consoleSize", None)
    env = list(process.get("env") or [])
    if tty and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    process["env"] = env
    return process


def run_exec(
    runc: Runc,
    container_id: str,
    bundle: str,
    cmd: list[str],
    tty: bool,
    streams: RemoteStreams,
    peer_gone: threading.Event,
) -> Outcome:
    with open(os.path.join(bundle, "config.json")) as f:
        base = json.load(f)["process"]
    work = tempfile.mkdtemp(prefix="exec-", dir=bundle)
    try:
        with open(os.path.join(work, "process.json"), "w") as f:
            json.dump(exec_process(base, cmd, tty), f)
        args = [*runc.global_args(), "exec", "--process", "process.json", "--pid-file", "pid"]
        if tty:
            return _run_tty(args, container_id, work, streams, peer_gone)
        return _run_pipes([*args, container_id], work, streams, peer_gone)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _watch_peer(proc: subprocess.Popen[bytes], work: str, peer_gone: threading.Event) -> None:
    """Kills the command if the client hangs up while it runs."""

    def watch() -> None:
        while proc.poll() is None:
            if peer_gone.wait(0.2):
                if proc.poll() is None:
                    _kill_command(work)
                return

    start_thread("exec-watch", watch)


def _kill_command(work: str) -> None:
    with contextlib.suppress(OSError, ValueError), open(os.path.join(work, "pid")) as f:
        os.kill(int(f.read().strip()), signal.SIGKILL)


def _run_pipes(
    args: list[str], work: str, streams: RemoteStreams, peer_gone: threading.Event
) -> Outcome:
    pipe, null = subprocess.PIPE, subprocess.DEVNULL
    proc = subprocess.Popen(
        args,
        cwd=work,
        stdin=pipe if streams.stdin is not None else null,
        stdout=pipe if streams.stdout is not None else null,
        stderr=pipe if streams.stderr is not None else null,
    )
    _watch_peer(proc, work, peer_gone)
    src = streams.stdin
    if src is not None and proc.stdin is not None:
        fd, pipe_in = proc.stdin.fileno(), proc.stdin
        start_thread("exec-stdin", lambda: copy_in(src, lambda d: write_all(fd, d), pipe_in.close))
    outputs = {}
    if proc.stdout is not None:
        outputs[proc.stdout.fileno()] = streams.stdout
    if proc.stderr is not None:
        outputs[proc.stderr.fileno()] = streams.stderr
    exited = threading.Event()
    pump = start_thread("exec-out", lambda: drain_outputs(outputs, exited))
    code = proc.wait()
    exited.set()
    pump.join()
    for f in (proc.stdout, proc.stderr):
        if f is not None:
            f.close()
    return Outcome(exit_code=_exit_status(code))


def _run_tty(
    args: list[str],
    container_id: str,
    work: str,
    streams: RemoteStreams,
    peer_gone: threading.Event,
) -> Outcome:
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            [*args, "--tty", container_id],
            cwd=work,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    try:
        _watch_peer(proc, work, peer_gone)
        if streams.resize is not None:
            resize = streams.resize

            def apply(size: TerminalSize) -> None:
                # runc copies our terminal's size to the container's on SIGWINCH.
                set_winsize(master, size)
                with contextlib.suppress(OSError):
                    proc.send_signal(signal.SIGWINCH)

            start_thread("exec-resize", lambda: watch_resizes(resize, apply))
        if streams.stdin is not None:
            stdin = streams.stdin
            # A terminal has no half-close: the end of the client's stdin changes nothing.
            start_thread(
                "exec-stdin", lambda: copy_in(stdin, lambda d: write_all(master, d), lambda: None)
            )
        exited = threading.Event()
        pump = start_thread("exec-out", lambda: drain_outputs({master: streams.stdout}, exited))
        code = proc.wait()
        exited.set()
        pump.join()
    finally:
        os.close(master)
    return Outcome(exit_code=_exit_status(code))


def _exit_status(code: int) -> int:
    # Popen reports a signal death of runc itself as a negative number.
    return 128 - code if code < 0 else code
