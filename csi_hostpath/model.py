"""The driver's records: what it stores about volumes, snapshots, group snapshots and the
node-side state of each volume, as frozen dataclasses with a versioned dict form.

Controller records (``Volume``, ``Snapshot``, ``GroupSnapshot``) and node records
(``NodeVolume``) are kept apart, because in a cluster the controller and node plugins are
different processes that only share the volume id.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "RECORD_VERSION",
    "AccessMode",
    "AccessType",
    "Attachment",
    "Capability",
    "GroupSnapshot",
    "NodeVolume",
    "Phase",
    "Publication",
    "Snapshot",
    "SourceKind",
    "Staging",
    "Volume",
]

RECORD_VERSION = 1


class AccessType(enum.Enum):
    MOUNT = "mount"
    BLOCK = "block"


class AccessMode(enum.Enum):
    """The CSI access modes, by their spec names."""

    SINGLE_NODE_WRITER = "SINGLE_NODE_WRITER"
    SINGLE_NODE_READER_ONLY = "SINGLE_NODE_READER_ONLY"
    MULTI_NODE_READER_ONLY = "MULTI_NODE_READER_ONLY"
    MULTI_NODE_SINGLE_WRITER = "MULTI_NODE_SINGLE_WRITER"
    MULTI_NODE_MULTI_WRITER = "MULTI_NODE_MULTI_WRITER"
    SINGLE_NODE_SINGLE_WRITER = "SINGLE_NODE_SINGLE_WRITER"
    SINGLE_NODE_MULTI_WRITER = "SINGLE_NODE_MULTI_WRITER"

    @property
    def read_only(self) -> bool:
        return self in (AccessMode.SINGLE_NODE_READER_ONLY, AccessMode.MULTI_NODE_READER_ONLY)

    @property
    def multi_node(self) -> bool:
        return self.name.startswith("MULTI_NODE")


class Phase(enum.Enum):
    """Lifecycle of a controller record. A record is written in CREATING before any data exists
    and in DELETING before any data is removed, so recovery knows what a crash interrupted."""

    CREATING = "creating"
    READY = "ready"
    DELETING = "deleting"


class SourceKind(enum.Enum):
    NONE = ""
    SNAPSHOT = "snapshot"
    VOLUME = "volume"


@dataclass(frozen=True)
class Capability:
    """One CSI VolumeCapability. ``mount_flags``, ``fs_type`` and ``mount_group`` only apply to
    mount access."""

    access_type: AccessType
    access_mode: AccessMode
    fs_type: str = ""
    mount_flags: tuple[str, ...] = ()
    mount_group: str = ""


@dataclass(frozen=True)
class Attachment:
    """A ControllerPublishVolume that succeeded: the volume is attached to ``node_id``."""

    node_id: str
    readonly: bool


@dataclass(frozen=True)
class Volume:
    id: str
    name: str
    capacity_bytes: int
    access_type: AccessType
    phase: Phase
    created_ns: int
    parameters: Mapping[str, str] = field(default_factory=dict)
    mutable_parameters: Mapping[str, str] = field(default_factory=dict)
    source_kind: SourceKind = SourceKind.NONE
    source_id: str = ""
    ephemeral: bool = False
    attachments: tuple[Attachment, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "id": self.id,
            "name": self.name,
            "capacity_bytes": self.capacity_bytes,
            "access_type": self.access_type.value,
            "phase": self.phase.value,
            "created_ns": self.created_ns,
            "parameters": dict(self.parameters),
            "mutable_parameters": dict(self.mutable_parameters),
            "source_kind": self.source_kind.value,
            "source_id": self.source_id,
            "ephemeral": self.ephemeral,
            "attachments": [[a.node_id, a.readonly] for a in self.attachments],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Volume:
        _check_version(d)
        return cls(
            id=str(d["id"]),
            name=str(d["name"]),
            capacity_bytes=int(d["capacity_bytes"]),
            access_type=AccessType(d["access_type"]),
            phase=Phase(d["phase"]),
            created_ns=int(d["created_ns"]),
            parameters=_str_map(d.get("parameters", {})),
            mutable_parameters=_str_map(d.get("mutable_parameters", {})),
            source_kind=SourceKind(d.get("source_kind", "")),
            source_id=str(d.get("source_id", "")),
            ephemeral=bool(d.get("ephemeral", False)),
            attachments=tuple(Attachment(str(n), bool(r)) for n, r in d.get("attachments", [])),
        )


@dataclass(frozen=True)
class Snapshot:
    id: str
    name: str
    source_volume_id: str
    size_bytes: int
    access_type: AccessType
    phase: Phase
    created_ns: int
    group_id: str = ""
    parameters: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "id": self.id,
            "name": self.name,
            "source_volume_id": self.source_volume_id,
            "size_bytes": self.size_bytes,
            "access_type": self.access_type.value,
            "phase": self.phase.value,
            "created_ns": self.created_ns,
            "group_id": self.group_id,
            "parameters": dict(self.parameters),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Snapshot:
        _check_version(d)
        return cls(
            id=str(d["id"]),
            name=str(d["name"]),
            source_volume_id=str(d["source_volume_id"]),
            size_bytes=int(d["size_bytes"]),
            access_type=AccessType(d["access_type"]),
            phase=Phase(d["phase"]),
            created_ns=int(d["created_ns"]),
            group_id=str(d.get("group_id", "")),
            parameters=_str_map(d.get("parameters", {})),
        )


@dataclass(frozen=True)
class GroupSnapshot:
    id: str
    name: str
    source_volume_ids: tuple[str, ...]
    snapshot_ids: tuple[str, ...]
    phase: Phase
    created_ns: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "id": self.id,
            "name": self.name,
            "source_volume_ids": list(self.source_volume_ids),
            "snapshot_ids": list(self.snapshot_ids),
            "phase": self.phase.value,
            "created_ns": self.created_ns,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GroupSnapshot:
        _check_version(d)
        return cls(
            id=str(d["id"]),
            name=str(d["name"]),
            source_volume_ids=tuple(str(v) for v in d["source_volume_ids"]),
            snapshot_ids=tuple(str(s) for s in d["snapshot_ids"]),
            phase=Phase(d["phase"]),
            created_ns=int(d["created_ns"]),
        )


@dataclass(frozen=True)
class Staging:
    path: str
    access_type: AccessType


@dataclass(frozen=True)
class Publication:
    target: str
    access_type: AccessType
    access_mode: AccessMode
    readonly: bool
    mount_flags: tuple[str, ...] = ()
    staging_path: str = ""


@dataclass(frozen=True)
class NodeVolume:
    """What this node did with one volume: where it is staged and published, and the loop
    device that backs a block volume while it is in use. Written before a mount is made, so a
    crash leaves at worst a record whose mount is missing, which recovery drops."""

    volume_id: str
    staged: tuple[Staging, ...] = ()
    published: tuple[Publication, ...] = ()
    loop_device: str = ""

    @property
    def in_use(self) -> bool:
        return bool(self.staged or self.published)

    def publication(self, target: str) -> Publication | None:
        return next((p for p in self.published if p.target == target), None)

    def staging(self, path: str) -> Staging | None:
        return next((s for s in self.staged if s.path == path), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION,
            "volume_id": self.volume_id,
            "staged": [[s.path, s.access_type.value] for s in self.staged],
            "published": [
                {
                    "target": p.target,
                    "access_type": p.access_type.value,
                    "access_mode": p.access_mode.value,
                    "readonly": p.readonly,
                    "mount_flags": list(p.mount_flags),
                    "staging_path": p.staging_path,
                }
                for p in self.published
            ],
            "loop_device": self.loop_device,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NodeVolume:
        _check_version(d)
        return cls(
            volume_id=str(d["volume_id"]),
            staged=tuple(Staging(str(p), AccessType(t)) for p, t in d.get("staged", [])),
            published=tuple(
                Publication(
                    target=str(p["target"]),
                    access_type=AccessType(p["access_type"]),
                    access_mode=AccessMode(p["access_mode"]),
                    readonly=bool(p["readonly"]),
                    mount_flags=tuple(str(f) for f in p.get("mount_flags", [])),
                    staging_path=str(p.get("staging_path", "")),
                )
                for p in d.get("published", [])
            ),
            loop_device=str(d.get("loop_device", "")),
        )


def _check_version(d: Mapping[str, Any]) -> None:
    if d.get("version") != RECORD_VERSION:
        raise ValueError(f"unsupported record version {d.get('version')!r}")


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError("expected a string map")
    return {str(k): str(v) for k, v in value.items()}
