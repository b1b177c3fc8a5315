"""The driver's decisions, as pure functions over records: sizes and limits, whether a repeated
call is the same request (idempotent) or a conflict, and what a publish or stage must do.

Every function either returns what to do or raises the spec's error; none touches the
filesystem or the clock. The idempotency contract they implement is documented in
``csi_hostpath/IDEMPOTENCY.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from csi_hostpath.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
)
from csi_hostpath.model import (
    AccessMode,
    AccessType,
    Attachment,
    Capability,
    NodeVolume,
    Publication,
    Snapshot,
    SourceKind,
    Volume,
)

__all__ = [
    "DEFAULT_VOLUME_BYTES",
    "EPHEMERAL_KEY",
    "CreateVolumeSpec",
    "capability_problem",
    "check_mutable_parameters",
    "check_topology",
    "choose_capacity",
    "expand_to",
    "is_ephemeral",
    "parse_size",
    "plan_attach",
    "plan_publish",
    "plan_stage",
    "reserve",
    "reuse_snapshot",
    "reuse_volume",
    "topology_matches",
    "validate_capabilities",
]

DEFAULT_VOLUME_BYTES = 1 << 30
EPHEMERAL_KEY = "csi.storage.k8s.io/ephemeral"


@dataclass(frozen=True)
class CreateVolumeSpec:
    """A CreateVolume request in the driver's terms."""

    name: str
    capabilities: tuple[Capability, ...]
    required_bytes: int = 0
    limit_bytes: int = 0
    parameters: Mapping[str, str] = field(default_factory=dict)
    mutable_parameters: Mapping[str, str] = field(default_factory=dict)
    source_kind: SourceKind = SourceKind.NONE
    source_id: str = ""
    requisite: tuple[Mapping[str, str], ...] = ()
    preferred: tuple[Mapping[str, str], ...] = ()


# --- sizes -------------------------------------------------------------------------------------


def choose_capacity(required: int, limit: int, *, minimum: int, max_volume: int) -> int:
    """The size to provision for a capacity range: the required bytes, at least ``minimum``
    (the source's size for a restore or clone), else the default size capped by the limit."""
    if required < 0 or limit < 0:
        raise InvalidArgument("capacity_range bytes must not be negative")
    if limit and required > limit:
        raise InvalidArgument(f"required_bytes {required} exceeds limit_bytes {limit}")
    size = max(required, minimum)
    if size == 0:
        size = min(DEFAULT_VOLUME_BYTES, limit) if limit else DEFAULT_VOLUME_BYTES
    if limit and size > limit:
        raise OutOfRange(f"the source needs {minimum} bytes, more than limit_bytes {limit}")
    if size > max_volume:
        raise OutOfRange(f"{size} bytes exceeds the maximum volume size of {max_volume} bytes")
    return size


def reserve(allocated: int, size: int, max_total: int) -> None:
    if allocated + size > max_total:
        raise ResourceExhausted(
            f"not enough capacity: {size} bytes requested, "
            f"{max(max_total - allocated, 0)} of {max_total} bytes free"
        )


def expand_to(volume: Volume, required: int, limit: int, *, max_volume: int) -> int:
    """The capacity after ControllerExpandVolume; never shrinks (a smaller request is done)."""
    if required < 0 or limit < 0:
        raise InvalidArgument("capacity_range bytes must not be negative")
    if limit and required > limit:
        raise InvalidArgument(f"required_bytes {required} exceeds limit_bytes {limit}")
    if limit and volume.capacity_bytes > limit:
        raise OutOfRange(f"the volume already has {volume.capacity_bytes} bytes, over the limit")
    size = max(required, volume.capacity_bytes)
    if size > max_volume:
        raise OutOfRange(f"{size} bytes exceeds the maximum volume size of {max_volume} bytes")
    return size


_SIZE_RE = re.compile(r"(\d+)(|k|K|M|G|T|Ki|Mi|Gi|Ti)")
_UNITS = {
    "": 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 1 << 10,
    "Mi": 1 << 20,
    "Gi": 1 << 30,
    "Ti": 1 << 40,
}


def parse_size(text: str) -> int:
    """A Kubernetes-style quantity ("100Mi", "1G", "4096") as bytes."""
    m = _SIZE_RE.fullmatch(text.strip())
    if m is None:
        raise InvalidArgument(f"invalid size {text[:40]!r}")
    return int(m.group(1)) * _UNITS[m.group(2)]


# --- capabilities and topology -----------------------------------------------------------------


def capability_problem(cap: Capability) -> str | None:
    """Why this driver cannot serve ``cap``, or None. One node serves every volume, so the
    multi-node modes are refused."""
    if cap.access_mode.multi_node:
        return f"access mode {cap.access_mode.value} needs more than one node"
    if cap.access_type is AccessType.BLOCK and (cap.fs_type or cap.mount_flags or cap.mount_group):
        return "a block capability cannot carry fs_type, mount_flags or volume_mount_group"
    return None


def validate_capabilities(caps: Sequence[Capability]) -> AccessType:
    """The access type a CreateVolume request asks for (all its capabilities must agree)."""
    if not caps:
        raise InvalidArgument("volume_capabilities are required")
    for cap in caps:
        problem = capability_problem(cap)
        if problem:
            raise InvalidArgument(problem)
    types = {cap.access_type for cap in caps}
    if len(types) != 1:
        raise InvalidArgument("a volume is either block or mount, not both")
    return types.pop()


def topology_matches(topology: Mapping[str, str], segments: Mapping[str, str]) -> bool:
    """A topology matches this node if every key it names that the node knows has the node's
    value (a topology of unrelated keys does not match)."""
    shared = [k for k in topology if k in segments]
    return bool(shared) and all(topology[k] == segments[k] for k in shared)


def check_topology(requisite: Iterable[Mapping[str, str]], segments: Mapping[str, str]) -> None:
    requisite = list(requisite)
    if requisite and not any(topology_matches(t, segments) for t in requisite):
        raise ResourceExhausted("no requisite topology is reachable from this driver's node")


def check_mutable_parameters(params: Mapping[str, str], accepted: Iterable[str]) -> None:
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InvalidArgument(f"unsupported mutable parameters: {', '.join(unknown)}")


# --- idempotency of creates --------------------------------------------------------------------


def _satisfies(capacity: int, required: int, limit: int) -> bool:
    return capacity >= required and (limit == 0 or capacity <= limit)


def reuse_volume(existing: Volume, spec: CreateVolumeSpec, access_type: AccessType) -> Volume:
    """A CreateVolume with a name that exists: the same request returns the volume, anything
    else is ALREADY_EXISTS (the spec's conflict)."""
    if not _satisfies(existing.capacity_bytes, spec.required_bytes, spec.limit_bytes):
        raise AlreadyExists(
            f"volume {spec.name!r} exists with {existing.capacity_bytes} bytes, "
            "outside the requested capacity range"
        )
    if existing.access_type is not access_type:
        raise AlreadyExists(f"volume {spec.name!r} exists as a {existing.access_type.value} volume")
    if (existing.source_kind, existing.source_id) != (spec.source_kind, spec.source_id):
        raise AlreadyExists(f"volume {spec.name!r} exists with a different content source")
    if dict(existing.parameters) != dict(spec.parameters):
        raise AlreadyExists(f"volume {spec.name!r} exists with different parameters")
    return existing


def reuse_snapshot(existing: Snapshot, source_volume_id: str) -> Snapshot:
    if existing.source_volume_id != source_volume_id:
        raise AlreadyExists(
            f"snapshot {existing.name!r} exists for another source volume "
            f"({existing.source_volume_id})"
        )
    return existing


# --- controller publish ------------------------------------------------------------------------


def plan_attach(
    volume: Volume,
    node_id: str,
    readonly: bool,
    cap: Capability,
    *,
    own_node: str,
    attached_on_node: int,
    max_per_node: int,
) -> Attachment | None:
    """The attachment to record, or None if the volume is already attached the same way."""
    if node_id != own_node:
        raise NotFound(f"node {node_id!r} is not served by this driver")
    problem = capability_problem(cap)
    if problem:
        raise InvalidArgument(problem)
    if cap.access_type is not volume.access_type:
        raise InvalidArgument(
            f"volume {volume.id} is a {volume.access_type.value} volume, "
            f"not {cap.access_type.value}"
        )
    for att in volume.attachments:
        if att.node_id == node_id:
            if att.readonly == readonly:
                return None
            raise AlreadyExists(
                f"volume {volume.id} is already attached to {node_id} with readonly={att.readonly}"
            )
    if max_per_node and attached_on_node >= max_per_node:
        raise ResourceExhausted(f"node {node_id} already has {max_per_node} volumes attached")
    return Attachment(node_id, readonly)


# --- node stage and publish --------------------------------------------------------------------


def _check_node_capability(volume: Volume, cap: Capability) -> None:
    problem = capability_problem(cap)
    if problem:
        raise InvalidArgument(problem)
    if cap.access_type is not volume.access_type:
        raise InvalidArgument(
            f"volume {volume.id} is a {volume.access_type.value} volume, "
            f"not {cap.access_type.value}"
        )


def plan_stage(volume: Volume, node: NodeVolume, path: str, cap: Capability) -> bool:
    """True if the volume must be staged at ``path``; False if it already is."""
    _check_node_capability(volume, cap)
    if node.staging(path) is not None:
        return False
    if node.staged:
        raise FailedPrecondition(
            f"volume {volume.id} is already staged at {node.staged[0].path}, not {path}"
        )
    return True


def plan_publish(
    volume: Volume,
    node: NodeVolume,
    target: str,
    cap: Capability,
    readonly: bool,
    staging_path: str,
) -> Publication | None:
    """The publication to make at ``target``, or None when the same one exists. Publishing a
    volume that needs staging (every non-ephemeral volume) at a staging path it was not staged
    at is FAILED_PRECONDITION, as is a second target for a single-writer volume."""
    _check_node_capability(volume, cap)
    readonly = readonly or cap.access_mode.read_only
    wanted = Publication(
        target=target,
        access_type=cap.access_type,
        access_mode=cap.access_mode,
        readonly=readonly,
        mount_flags=cap.mount_flags,
        staging_path=staging_path,
    )
    existing = node.publication(target)
    if existing is not None:
        if existing == wanted:
            return None
        raise AlreadyExists(f"volume {volume.id} is already published at {target} differently")
    if not volume.ephemeral:
        if not staging_path:
            raise FailedPrecondition(f"volume {volume.id}: staging_target_path is required")
        if node.staging(staging_path) is None:
            raise FailedPrecondition(f"volume {volume.id} is not staged at {staging_path}")
    single = AccessMode.SINGLE_NODE_SINGLE_WRITER
    if node.published and (
        cap.access_mode is single or any(p.access_mode is single for p in node.published)
    ):
        raise FailedPrecondition(
            f"volume {volume.id} is single-writer and already published at "
            f"{node.published[0].target}"
        )
    return wanted


def is_ephemeral(volume_context: Mapping[str, str]) -> bool:
    return volume_context.get(EPHEMERAL_KEY, "").lower() == "true"
