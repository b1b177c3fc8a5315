"""CSI Node service."""

from __future__ import annotations

from typing import Any

from csi_hostpath import convert
from csi_hostpath._pb import csi_pb2 as pb
from csi_hostpath._pb import csi_pb2_grpc as pb_grpc
from csi_hostpath.driver import Driver

__all__ = ["NodeService"]

_RPC = pb.NodeServiceCapability.RPC
CAPABILITIES = (
    _RPC.STAGE_UNSTAGE_VOLUME,
    _RPC.GET_VOLUME_STATS,
    _RPC.EXPAND_VOLUME,
    _RPC.VOLUME_CONDITION,
    _RPC.SINGLE_NODE_MULTI_WRITER,
    _RPC.VOLUME_MOUNT_GROUP,
)


class NodeService(pb_grpc.NodeServicer):  # type: ignore[misc]
    def __init__(self, driver: Driver) -> None:
        self.publisher = driver.publisher
        self.config = driver.env.config

    def NodeStageVolume(self, request: Any, context: Any) -> Any:
        self.publisher.stage(
            request.volume_id,
            request.staging_target_path,
            convert.optional_capability(request, "volume_capability"),
        )
        return pb.NodeStageVolumeResponse()

    def NodeUnstageVolume(self, request: Any, context: Any) -> Any:
        self.publisher.unstage(request.volume_id, request.staging_target_path)
        return pb.NodeUnstageVolumeResponse()

    def NodePublishVolume(self, request: Any, context: Any) -> Any:
        self.publisher.publish(
            request.volume_id,
            request.target_path,
            request.staging_target_path,
            convert.optional_capability(request, "volume_capability"),
            request.readonly,
            dict(request.volume_context),
        )
        return pb.NodePublishVolumeResponse()

    def NodeUnpublishVolume(self, request: Any, context: Any) -> Any:
        self.publisher.unpublish(request.volume_id, request.target_path)
        return pb.NodeUnpublishVolumeResponse()

    def NodeGetVolumeStats(self, request: Any, context: Any) -> Any:
        stats = self.publisher.stats(request.volume_id, request.volume_path)
        return pb.NodeGetVolumeStatsResponse(
            usage=convert.usage_pb(stats.usage, stats.access_type),
            volume_condition=pb.VolumeCondition(abnormal=stats.abnormal, message=stats.message),
        )

    def NodeExpandVolume(self, request: Any, context: Any) -> Any:
        size = self.publisher.expand(
            request.volume_id, request.volume_path, request.capacity_range.required_bytes
        )
        return pb.NodeExpandVolumeResponse(capacity_bytes=size)

    def NodeGetCapabilities(self, request: Any, context: Any) -> Any:
        caps = [pb.NodeServiceCapability(rpc=_RPC(type=t)) for t in CAPABILITIES]
        return pb.NodeGetCapabilitiesResponse(capabilities=caps)

    def NodeGetInfo(self, request: Any, context: Any) -> Any:
        return pb.NodeGetInfoResponse(
            node_id=self.config.node_id,
            max_volumes_per_node=self.config.max_volumes_per_node,
            accessible_topology=convert.topology_pb(self.config.topology),
        )
