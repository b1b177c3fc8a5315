"""The streaming service as the runtime sees it: validation of the Exec, Attach and
PortForward requests for the gRPC handlers, the URL they return, and the sessions run on our
containers (runc exec, conmon's attach socket, the pod's network namespace) once a client
connects.

Checks happen twice on purpose: when the URL is handed out, so the kubelet gets a proper gRPC
error (NotFound, FailedPrecondition, InvalidArgument), and again when the client connects,
because the container may have exited in between; the second failure is reported on the
session's error stream.
"""

from __future__ import annotations

import threading

import grpc

from cri_shim.containers import ContainerManager
from cri_shim.errors import CriError
from cri_shim.runtime import Container, Registry
from cri_shim.streaming.attach import attach
from cri_shim.streaming.conn import RemoteStreams, SpdyConnection
from cri_shim.streaming.exec import run_exec
from cri_shim.streaming.portforward import dial_in_netns, serve_port_forward
from cri_shim.streaming.remotecommand import Outcome, StreamOptions
from cri_shim.streaming.server import StreamingServer
from cri_shim.streaming.targets import AttachTarget, ExecTarget, PortForwardTarget, Target
from cri_shim.streaming.tokens import TokenCacheFullError

__all__ = ["RuntimeBackend", "StreamingService"]


def _check_options(opts: StreamOptions) -> None:
    # The kubelet's own streaming server refuses the same combinations.
    if opts.tty and opts.stderr:
        raise CriError(grpc.StatusCode.INVALID_ARGUMENT, "tty and stderr cannot both be true")
    if not (opts.stdin or opts.stdout or opts.stderr):
        raise CriError(
            grpc.StatusCode.INVALID_ARGUMENT, "one of stdin, stdout, or stderr must be set"
        )


class RuntimeBackend:
    def __init__(self, reg: Registry, containers: ContainerManager) -> None:
        self.reg = reg
        self.containers = containers

    def running(self, container_id: str) -> Container:
        c = self.containers.status(container_id)
        if c.status.state != "running":
            raise CriError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"container {c.meta.id} is {c.status.state}, not running",
            )
        return c

    # checks for the gRPC handlers

    def check_exec(self, t: ExecTarget) -> None:
        if not t.cmd:
            raise CriError(grpc.StatusCode.INVALID_ARGUMENT, "exec needs a command")
        _check_options(t.opts)
        self.running(t.container_id)

    def check_attach(self, t: AttachTarget) -> None:
        _check_options(t.opts)
        self.running(t.container_id)

    def check_port_forward(self, t: PortForwardTarget) -> None:
        sb = self.reg.need_sandbox(t.sandbox_id)
        if sb.status.state != "ready":
            raise CriError(
                grpc.StatusCode.FAILED_PRECONDITION, f"pod sandbox {sb.meta.id} is not ready"
            )

    # sessions (the streaming server's Backend)

    def exec(
        self, target: ExecTarget, streams: RemoteStreams, peer_gone: threading.Event
    ) -> Outcome:
        try:
            c = self.running(target.container_id)
        except CriError as exc:
            return Outcome(error=str(exc))
        self.containers.warmer.warm()  # runc exec attaches the command to the container's cgroup
        return run_exec(
            self.containers.oci_of(c),
            c.meta.id,
            c.meta.bundle,
            list(target.cmd),
            target.opts.tty,
            streams,
            peer_gone,
        )

    def attach(
        self, target: AttachTarget, streams: RemoteStreams, peer_gone: threading.Event
    ) -> Outcome:
        try:
            c = self.running(target.container_id)
        except CriError as exc:
            return Outcome(error=str(exc))
        return attach(c.meta.bundle, streams, peer_gone)

    def port_forward(self, target: PortForwardTarget, conn: SpdyConnection) -> None:
        sb = self.reg.sandbox(target.sandbox_id)
        if sb is None:
            return
        netns = sb.meta.netns_path
        serve_port_forward(conn, lambda port: dial_in_netns(netns, port))


class StreamingService:
    """What the RuntimeService's Exec, Attach and PortForward handlers call."""

    def __init__(
        self, reg: Registry, containers: ContainerManager, address: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.backend = RuntimeBackend(reg, containers)
        self.server = StreamingServer(address, port, self.backend)

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def exec_url(self, target: ExecTarget) -> str:
        self.backend.check_exec(target)
        return self._url(target)

    def attach_url(self, target: AttachTarget) -> str:
        self.backend.check_attach(target)
        return self._url(target)

    def port_forward_url(self, target: PortForwardTarget) -> str:
        self.backend.check_port_forward(target)
        return self._url(target)

    def _url(self, target: Target) -> str:
        try:
            return self.server.url(target)
        except TokenCacheFullError as exc:
            raise CriError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from exc
