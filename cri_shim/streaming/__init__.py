"""The CRI streaming server: Exec, Attach and PortForward sessions over SPDY/3.1 and WebSocket.

The gRPC handlers hand out single-use URLs (``StreamingService``); the HTTP server
(``server.py``) redeems them. Protocol logic is pure and unit-tested: SPDY framing
(``spdy.py``), WebSocket framing (``websocket.py``), the remotecommand channel protocol
(``remotecommand.py``), the HTTP upgrade (``handshake.py``) and the tokens (``tokens.py``). The
I/O shell is ``conn.py`` (connections), ``exec.py``, ``attach.py`` and ``portforward.py``.
"""

from cri_shim.streaming.backend import StreamingService
from cri_shim.streaming.remotecommand import StreamOptions
from cri_shim.streaming.targets import AttachTarget, ExecTarget, PortForwardTarget

__all__ = ["AttachTarget", "ExecTarget", "PortForwardTarget", "StreamOptions", "StreamingService"]
