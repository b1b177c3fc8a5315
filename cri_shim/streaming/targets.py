"""What a streaming token stands for: the validated request of an Exec, Attach or
PortForward call, parked until the client connects."""

from __future__ import annotations

from dataclasses import dataclass

from cri_shim.streaming.remotecommand import StreamOptions

__all__ = ["AttachTarget", "ExecTarget", "PortForwardTarget", "Target"]


@dataclass(frozen=True)
class ExecTarget:
    container_id: str
    cmd: tuple[str, ...]
    opts: StreamOptions


@dataclass(frozen=True)
class AttachTarget:
    container_id: str
    opts: StreamOptions


@dataclass(frozen=True)
class PortForwardTarget:
    sandbox_id: str


Target = ExecTarget | AttachTarget | PortForwardTarget
