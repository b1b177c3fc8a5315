"""CSI GroupController service: volume group snapshots."""

from __future__ import annotations

from typing import Any

from csi_hostpath import convert
from csi_hostpath._pb import csi_pb2 as pb
from csi_hostpath._pb import csi_pb2_grpc as pb_grpc
from csi_hostpath.driver import Driver

__all__ = ["GroupControllerService"]

_RPC = pb.GroupControllerServiceCapability.RPC


class GroupControllerService(pb_grpc.GroupControllerServicer):  # type: ignore[misc]
    def __init__(self, driver: Driver) -> None:
        self.snapshotter = driver.snapshotter

    def GroupControllerGetCapabilities(self, request: Any, context: Any) -> Any:
        cap = pb.GroupControllerServiceCapability(
            rpc=_RPC(type=_RPC.CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT)
        )
        return pb.GroupControllerGetCapabilitiesResponse(capabilities=[cap])

    def CreateVolumeGroupSnapshot(self, request: Any, context: Any) -> Any:
        group, members = self.snapshotter.create_group(
            request.name, list(request.source_volume_ids), dict(request.parameters)
        )
        return pb.CreateVolumeGroupSnapshotResponse(
            group_snapshot=convert.group_snapshot_pb(group, members)
        )

    def DeleteVolumeGroupSnapshot(self, request: Any, context: Any) -> Any:
        self.snapshotter.delete_group(request.group_snapshot_id, list(request.snapshot_ids))
        return pb.DeleteVolumeGroupSnapshotResponse()

    def GetVolumeGroupSnapshot(self, request: Any, context: Any) -> Any:
        group, members = self.snapshotter.get_group(
            request.group_snapshot_id, list(request.snapshot_ids)
        )
        return pb.GetVolumeGroupSnapshotResponse(
            group_snapshot=convert.group_snapshot_pb(group, members)
        )
