"""The driver's settings, from the command line of ``stowage-csi``."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULT_NAME", "TOPOLOGY_KEY", "DriverConfig"]

DEFAULT_NAME = "hostpath.csi.stowage.dev"
TOPOLOGY_KEY = "topology.hostpath.csi.stowage.dev/node"


@dataclass(frozen=True)
class DriverConfig:
    node_id: str
    root: str = "/var/lib/stowage/csi"
    name: str = DEFAULT_NAME
    version: str = "0.1.0"
    max_total_bytes: int = 1 << 40
    max_volume_bytes: int = 1 << 40
    # NodeGetInfo's max_volumes_per_node, enforced by ControllerPublishVolume; 0 = no limit.
    max_volumes_per_node: int = 0
    # Where target and staging paths may be: the kubelet's directory unless told otherwise.
    allowed_path_prefixes: tuple[str, ...] = ("/var/lib/kubelet",)
    accepted_mutable_parameters: frozenset[str] = field(default_factory=frozenset)

    @property
    def topology(self) -> dict[str, str]:
        return {TOPOLOGY_KEY: self.node_id}
