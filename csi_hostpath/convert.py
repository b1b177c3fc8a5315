"""Protobuf to model and back: the only module besides the servicers that imports ``_pb``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from csi_hostpath._pb import csi_pb2 as pb
from csi_hostpath.decisions import CreateVolumeSpec
from csi_hostpath.errors import InvalidArgument
from csi_hostpath.model import (
    AccessMode,
    AccessType,
    Capability,
    GroupSnapshot,
    Snapshot,
    SourceKind,
    Volume,
)
from csi_hostpath.volumes import Usage

__all__ = [
    "capabilities",
    "capability",
    "create_spec",
    "group_snapshot_pb",
    "snapshot_pb",
    "topology_pb",
    "usage_pb",
    "volume_pb",
]


def capability(cap: Any) -> Capability:
    kind = cap.WhichOneof("access_type")
    if kind is None:
        raise InvalidArgument("volume capability has no access_type (mount or block)")
    mode_value = cap.access_mode.mode
    name = (
        pb.VolumeCapability.AccessMode.Mode.Name(mode_value)
        if mode_value in (pb.VolumeCapability.AccessMode.Mode.values())
        else "UNKNOWN"
    )
    if name == "UNKNOWN":
        raise InvalidArgument("volume capability has no supported access_mode")
    if kind == "block":
        return Capability(AccessType.BLOCK, AccessMode(name))
    mount = cap.mount
    return Capability(
        AccessType.MOUNT,
        AccessMode(name),
        fs_type=mount.fs_type,
        mount_flags=tuple(mount.mount_flags),
        mount_group=mount.volume_mount_group,
    )


def optional_capability(msg: Any, field: str) -> Capability | None:
    return capability(getattr(msg, field)) if msg.HasField(field) else None


def capabilities(caps: Iterable[Any]) -> tuple[Capability, ...]:
    return tuple(capability(c) for c in caps)


def create_spec(req: Any) -> CreateVolumeSpec:
    kind, source_id = SourceKind.NONE, ""
    if req.HasField("volume_content_source"):
        src = req.volume_content_source
        which = src.WhichOneof("type")
        if which == "snapshot":
            kind, source_id = SourceKind.SNAPSHOT, src.snapshot.snapshot_id
        elif which == "volume":
            kind, source_id = SourceKind.VOLUME, src.volume.volume_id
        else:
            raise InvalidArgument("volume_content_source names no snapshot or volume")
    acc = req.accessibility_requirements
    return CreateVolumeSpec(
        name=req.name,
        capabilities=capabilities(req.volume_capabilities),
        required_bytes=req.capacity_range.required_bytes,
        limit_bytes=req.capacity_range.limit_bytes,
        parameters=dict(req.parameters),
        mutable_parameters=dict(req.mutable_parameters),
        source_kind=kind,
        source_id=source_id,
        requisite=tuple(dict(t.segments) for t in acc.requisite),
        preferred=tuple(dict(t.segments) for t in acc.preferred),
    )


def topology_pb(segments: Mapping[str, str]) -> Any:
    return pb.Topology(segments=dict(segments))


def volume_pb(volume: Volume, segments: Mapping[str, str]) -> Any:
    out = pb.Volume(
        volume_id=volume.id,
        capacity_bytes=volume.capacity_bytes,
        accessible_topology=[topology_pb(segments)],
    )
    if volume.source_kind is SourceKind.SNAPSHOT:
        out.content_source.snapshot.snapshot_id = volume.source_id
    elif volume.source_kind is SourceKind.VOLUME:
        out.content_source.volume.volume_id = volume.source_id
    return out


def _timestamp(ns: int) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp()
    ts.FromNanoseconds(ns)
    return ts


def snapshot_pb(snap: Snapshot) -> Any:
    return pb.Snapshot(
        snapshot_id=snap.id,
        source_volume_id=snap.source_volume_id,
        size_bytes=snap.size_bytes,
        creation_time=_timestamp(snap.created_ns),
        ready_to_use=True,
        group_snapshot_id=snap.group_id,
    )


def group_snapshot_pb(group: GroupSnapshot, members: Iterable[Snapshot]) -> Any:
    return pb.VolumeGroupSnapshot(
        group_snapshot_id=group.id,
        snapshots=[snapshot_pb(s) for s in members],
        creation_time=_timestamp(group.created_ns),
        ready_to_use=True,
    )


def usage_pb(usage: Usage, access_type: AccessType) -> list[Any]:
    out = [
        pb.VolumeUsage(
            unit=pb.VolumeUsage.BYTES,
            total=usage.total_bytes,
            used=usage.used_bytes,
            available=usage.available_bytes,
        )
    ]
    if access_type is AccessType.MOUNT:
        out.append(
            pb.VolumeUsage(
                unit=pb.VolumeUsage.INODES,
                total=usage.total_inodes,
                used=usage.used_inodes,
                available=usage.available_inodes,
            )
        )
    return out
