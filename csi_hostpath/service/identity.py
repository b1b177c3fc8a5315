"""CSI Identity service."""

from __future__ import annotations

from typing import Any

from csi_hostpath._pb import csi_pb2 as pb
from csi_hostpath._pb import csi_pb2_grpc as pb_grpc
from csi_hostpath.config import DriverConfig

__all__ = ["IdentityService"]

_Service = pb.PluginCapability.Service
_Expansion = pb.PluginCapability.VolumeExpansion


class IdentityService(pb_grpc.IdentityServicer):  # type: ignore[misc]
    def __init__(self, config: DriverConfig) -> None:
        self.config = config

    def GetPluginInfo(self, request: Any, context: Any) -> Any:
        return pb.GetPluginInfoResponse(name=self.config.name, vendor_version=self.config.version)

    def GetPluginCapabilities(self, request: Any, context: Any) -> Any:
        services = (
            _Service.CONTROLLER_SERVICE,
            _Service.VOLUME_ACCESSIBILITY_CONSTRAINTS,
            _Service.GROUP_CONTROLLER_SERVICE,
        )
        caps = [pb.PluginCapability(service=_Service(type=t)) for t in services]
        caps.append(pb.PluginCapability(volume_expansion=_Expansion(type=_Expansion.ONLINE)))
        return pb.GetPluginCapabilitiesResponse(capabilities=caps)

    def Probe(self, request: Any, context: Any) -> Any:
        resp = pb.ProbeResponse()
        resp.ready.value = True
        return resp
