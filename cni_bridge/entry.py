"""The installed executables' code path: built-in modules only until the work starts.

Every CNI call is a fresh process, so what runs before the work is paid on each call. An
executable is ``#!<python> -I -S`` (no site, no user paths) plus three lines that put this
package on ``sys.path`` and call ``main`` here. ``main`` first offers the request to a
resident agent (``cni_bridge.agent``) when one listens: the agent has every module loaded
and a worker of it runs exactly the code below, so the answer is the same, only sooner.
With no agent (or an agent in another network namespace, or any doubt) the call runs in
this process. Correctness never depends on the agent.

Measured, so kept out of this path: ``os`` (~1 ms of imports under ``-S``: ``posix`` is
built in and does the same here), ``from __future__``, ``repr``/``ast`` encodings, and the
interpreter's teardown at exit (~1 ms: the process leaves with ``_exit``). The
request is ``u32 length, head, u32 length, stdin``; the head is NUL-separated: protocol
version, plugin, the caller's network namespace (st_dev, st_ino) and its ``CNI_*``/``PATH``
variables as ``KEY=value``. The reply is a status byte (0 answered, anything else: run the
call here), the exit code byte, then stdout.
"""

import posix
import sys

__all__ = ["AGENT_SOCKET", "PROTOCOL", "encode", "main", "via_agent"]

AGENT_SOCKET = "/run/stowage/cni-agent.sock"
PROTOCOL = b"2"
_ENV_PREFIXES = (b"CNI_", b"PATH")


def encode(plugin: str, netns: tuple[int, int], env: dict[bytes, bytes], stdin: bytes) -> bytes:
    """One request: the CNI variables of ``env`` only, never the rest of the environment."""
    fields = [PROTOCOL, plugin.encode(), b"%d" % netns[0], b"%d" % netns[1]]
    fields += [k + b"=" + v for k, v in env.items() if k.startswith(_ENV_PREFIXES)]
    head = b"\0".join(fields)
    return len(head).to_bytes(4, "big") + head + len(stdin).to_bytes(4, "big") + stdin


def via_agent(plugin: str, sock_path: str, stdin: bytes, env: dict[bytes, bytes]
              ) -> tuple[bytes, int] | None:
    """(stdout, exit code) as the agent at ``sock_path`` answered; None when it did not."""
    import _socket

    try:
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            s.connect(sock_path)
        except OSError:
            return None
        st = posix.stat("/proc/self/ns/net")
        s.sendall(encode(plugin, (st.st_dev, st.st_ino), env, stdin))
        s.shutdown(_socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        data = b"".join(chunks)
        # Anything shorter than two bytes means the agent died: run the call here.
        if len(data) < 2 or data[0] != 0:
            return None
        return data[2:], data[1]
    except OSError:
        return None
    finally:
        s.close()


def main(plugin: str, agent_socket: str = AGENT_SOCKET) -> None:
    stdin = sys.stdin.buffer.read() if sys.stdin is not None else b""
    answered = via_agent(plugin, agent_socket, stdin, posix.environ) if agent_socket else None
    if answered is None:
        import os

        from cni_bridge import main as edge

        run = edge.run_bridge if plugin == "bridge" else edge.run_hostlocal
        answered = run(os.environ, stdin)
    out, code = answered
    data = out + b"\n" if out else b""
    while data:
        data = data[posix.write(1, data):]
    # Nothing is left to clean up that the kernel does not do at exit, and the
    # interpreter's own teardown costs ~1 ms (measured): flush what Python buffers, leave.
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    posix._exit(code)
