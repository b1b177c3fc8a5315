"""CSI Controller service."""

from __future__ import annotations

from typing import Any

from csi_hostpath import convert
from csi_hostpath._pb import csi_pb2 as pb
from csi_hostpath._pb import csi_pb2_grpc as pb_grpc
from csi_hostpath.driver import Driver
from csi_hostpath.errors import InvalidArgument
from csi_hostpath.provision import VolumeStatus

__all__ = ["ControllerService"]

_RPC = pb.ControllerServiceCapability.RPC
CAPABILITIES = (
    _RPC.CREATE_DELETE_VOLUME,
    _RPC.PUBLISH_UNPUBLISH_VOLUME,
    _RPC.LIST_VOLUMES,
    _RPC.GET_CAPACITY,
    _RPC.CREATE_DELETE_SNAPSHOT,
    _RPC.LIST_SNAPSHOTS,
    _RPC.CLONE_VOLUME,
    _RPC.PUBLISH_READONLY,
    _RPC.EXPAND_VOLUME,
    _RPC.LIST_VOLUMES_PUBLISHED_NODES,
    _RPC.VOLUME_CONDITION,
    _RPC.GET_VOLUME,
    _RPC.SINGLE_NODE_MULTI_WRITER,
    _RPC.MODIFY_VOLUME,
    _RPC.GET_SNAPSHOT,
)


class ControllerService(pb_grpc.ControllerServicer):  # type: ignore[misc]
    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.provisioner = driver.provisioner
        self.snapshotter = driver.snapshotter
        self.segments = driver.env.config.topology

    def _volume(self, volume: Any) -> Any:
        return convert.volume_pb(volume, self.segments)

    def _status(self, st: VolumeStatus) -> dict[str, Any]:
        return {
            "published_node_ids": list(st.published_node_ids),
            "volume_condition": pb.VolumeCondition(abnormal=st.abnormal, message=st.message),
        }

    def CreateVolume(self, request: Any, context: Any) -> Any:
        volume = self.provisioner.create_volume(convert.create_spec(request))
        return pb.CreateVolumeResponse(volume=self._volume(volume))

    def DeleteVolume(self, request: Any, context: Any) -> Any:
        self.provisioner.delete_volume(request.volume_id)
        return pb.DeleteVolumeResponse()

    def ControllerPublishVolume(self, request: Any, context: Any) -> Any:
        publish_context = self.provisioner.attach(
            request.volume_id,
            request.node_id,
            convert.optional_capability(request, "volume_capability"),
            request.readonly,
        )
        return pb.ControllerPublishVolumeResponse(publish_context=publish_context)

    def ControllerUnpublishVolume(self, request: Any, context: Any) -> Any:
        self.provisioner.detach(request.volume_id, request.node_id)
        return pb.ControllerUnpublishVolumeResponse()

    def ValidateVolumeCapabilities(self, request: Any, context: Any) -> Any:
        problem = self.provisioner.validate(
            request.volume_id, convert.capabilities(request.volume_capabilities)
        )
        if problem:
            return pb.ValidateVolumeCapabilitiesResponse(message=problem)
        confirmed = pb.ValidateVolumeCapabilitiesResponse.Confirmed(
            volume_context=dict(request.volume_context),
            volume_capabilities=list(request.volume_capabilities),
            parameters=dict(request.parameters),
            mutable_parameters=dict(request.mutable_parameters),
        )
        return pb.ValidateVolumeCapabilitiesResponse(confirmed=confirmed)

    def ListVolumes(self, request: Any, context: Any) -> Any:
        page, token = self.provisioner.list_volumes(request.starting_token, request.max_entries)
        entries = [
            pb.ListVolumesResponse.Entry(
                volume=self._volume(st.volume),
                status=pb.ListVolumesResponse.VolumeStatus(**self._status(st)),
            )
            for st in page
        ]
        return pb.ListVolumesResponse(entries=entries, next_token=token)

    def ControllerGetVolume(self, request: Any, context: Any) -> Any:
        st = self.provisioner.get_volume(request.volume_id)
        return pb.ControllerGetVolumeResponse(
            volume=self._volume(st.volume),
            status=pb.ControllerGetVolumeResponse.VolumeStatus(**self._status(st)),
        )

    def ControllerModifyVolume(self, request: Any, context: Any) -> Any:
        self.provisioner.modify_volume(request.volume_id, dict(request.mutable_parameters))
        return pb.ControllerModifyVolumeResponse()

    def GetCapacity(self, request: Any, context: Any) -> Any:
        topology = (
            dict(request.accessible_topology.segments)
            if request.HasField("accessible_topology")
            else None
        )
        cap = self.provisioner.capacity(convert.capabilities(request.volume_capabilities), topology)
        resp = pb.GetCapacityResponse(available_capacity=cap.available)
        resp.maximum_volume_size.value = cap.maximum_volume_size
        resp.minimum_volume_size.value = cap.minimum_volume_size
        return resp

    def ControllerGetCapabilities(self, request: Any, context: Any) -> Any:
        caps = [
            pb.ControllerServiceCapability(rpc=pb.ControllerServiceCapability.RPC(type=t))
            for t in CAPABILITIES
        ]
        return pb.ControllerGetCapabilitiesResponse(capabilities=caps)

    def CreateSnapshot(self, request: Any, context: Any) -> Any:
        snap = self.snapshotter.create(
            request.name, request.source_volume_id, dict(request.parameters)
        )
        return pb.CreateSnapshotResponse(snapshot=convert.snapshot_pb(snap))

    def DeleteSnapshot(self, request: Any, context: Any) -> Any:
        self.snapshotter.delete(request.snapshot_id)
        return pb.DeleteSnapshotResponse()

    def ListSnapshots(self, request: Any, context: Any) -> Any:
        page, token = self.snapshotter.list_snapshots(
            request.snapshot_id,
            request.source_volume_id,
            request.starting_token,
            request.max_entries,
        )
        entries = [pb.ListSnapshotsResponse.Entry(snapshot=convert.snapshot_pb(s)) for s in page]
        return pb.ListSnapshotsResponse(entries=entries, next_token=token)

    def GetSnapshot(self, request: Any, context: Any) -> Any:
        snap = self.snapshotter.get(request.snapshot_id)
        return pb.GetSnapshotResponse(snapshot=convert.snapshot_pb(snap))

    def ControllerExpandVolume(self, request: Any, context: Any) -> Any:
        if request.volume_id and not request.HasField("capacity_range"):
            raise InvalidArgument("capacity_range is required")
        size, node_needed = self.provisioner.expand_volume(
            request.volume_id,
            request.capacity_range.required_bytes,
            request.capacity_range.limit_bytes,
        )
        return pb.ControllerExpandVolumeResponse(
            capacity_bytes=size, node_expansion_required=node_needed
        )
