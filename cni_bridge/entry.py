"""The installed executables' code path, stdlib only until the work starts.

Every CNI call is a fresh process, so what runs before the work is paid on each call. An
executable is ``#!<venv python> -I -S`` (no site, no user paths: ~6 ms to a prompt) plus
three lines that put this package on ``sys.path`` and call ``main`` here. ``main`` first
offers the request to a resident agent (``cni_bridge.agent``) when one listens: the agent
has every module loaded and forks a child that runs exactly the code below, so the answer
is the same, only sooner. With no agent (or an agent in another network namespace, or any
doubt) the call runs in this process. Correctness never depends on the agent.
"""

from __future__ import annotations

import os
import sys

__all__ = ["AGENT_SOCKET", "main"]

AGENT_SOCKET = "/run/stowage/cni-agent.sock"
_ENV_PREFIXES = ("CNI_", "PATH")


def _via_agent(plugin: str, sock_path: str, stdin: bytes) -> tuple[bytes, int] | None:
    import _socket

    try:
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        try:
            s.connect(sock_path)
        except OSError:
            return None
        st = os.stat("/proc/self/ns/net")
        env = {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}
        head = repr((plugin, st.st_dev, st.st_ino, env)).encode()
        s.sendall(len(head).to_bytes(4, "big") + head + len(stdin).to_bytes(4, "big") + stdin)
        s.shutdown(_socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        data = b"".join(chunks)
        # Reply: one status byte (0: answered, 1: declined, e.g. another namespace), exit code
        # byte, then stdout. Anything shorter means the agent died: run the call here.
        if len(data) < 2 or data[0] != 0:
            return None
        return data[2:], data[1]
    except OSError:
        return None
    finally:
        s.close()


def main(plugin: str, agent_socket: str = AGENT_SOCKET) -> None:
    stdin = sys.stdin.buffer.read() if sys.stdin is not None else b""
    answered = _via_agent(plugin, agent_socket, stdin) if agent_socket else None
    if answered is None:
        from cni_bridge import main as edge

        run = edge.run_bridge if plugin == "bridge" else edge.run_hostlocal
        answered = run(os.environ, stdin)
    out, code = answered
    if out:
        os.write(1, out + b"\n")
    sys.exit(code)
