"""Volume lifecycle on the controller side: create (empty, from a snapshot, as a clone),
delete, expand, modify, inspect, list, capacity, and attach/detach (ControllerPublish).

Theory of operation: a volume record is written in CREATING (claiming its capacity) before
any data exists, the data is built in the root's tmp/ and renamed into place, then the record
becomes READY. Deletion writes DELETING first, removes the data, then the record. Each step's
undo is registered on an ExitStack as it is taken, so a failed create leaves nothing behind;
a crash between steps leaves a CREATING or DELETING record that start-up recovery finishes.
Calls are serialised per name (creates) and per volume id (everything else).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from csi_hostpath.decisions import (
    CreateVolumeSpec,
    capability_problem,
    check_mutable_parameters,
    check_topology,
    choose_capacity,
    expand_to,
    plan_attach,
    reuse_volume,
    topology_matches,
    validate_capabilities,
)
from csi_hostpath.env import Env
from csi_hostpath.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
)
from csi_hostpath.model import AccessType, Capability, Phase, SourceKind, Volume
from csi_hostpath.pagination import paginate
from csi_hostpath.paths import check_id, check_name

__all__ = ["Capacity", "Provisioner", "VolumeStatus"]

log = logging.getLogger("stowage.csi")


@dataclass(frozen=True)
class VolumeStatus:
    volume: Volume
    published_node_ids: tuple[str, ...]
    abnormal: bool
    message: str


@dataclass(frozen=True)
class Capacity:
    available: int
    maximum_volume_size: int
    minimum_volume_size: int


class Provisioner:
    def __init__(self, env: Env) -> None:
        self.env = env

    # --- create and delete --------------------------------------------------------------------

    def create_volume(self, spec: CreateVolumeSpec) -> Volume:
        env = self.env
        check_name("name", spec.name)
        access_type = validate_capabilities(spec.capabilities)
        check_mutable_parameters(spec.mutable_parameters, env.config.accepted_mutable_parameters)
        check_topology(spec.requisite, env.config.topology)
        if spec.source_kind is not SourceKind.NONE:
            check_id(f"source {spec.source_kind.value} id", spec.source_id)
        with env.locks.hold("volname:" + spec.name):
            existing = env.state.volume_by_name(spec.name)
            if existing is not None:
                if existing.phase is not Phase.READY:
                    raise Aborted(f"volume {spec.name!r} is being {existing.phase.value}")
                return reuse_volume(existing, spec, access_type)
            # The source is locked while it is read, so it cannot be deleted mid-copy.
            source_keys = (
                ()
                if spec.source_kind is SourceKind.NONE
                else (f"{spec.source_kind.value}:{spec.source_id}",)
            )
            with env.locks.hold(*source_keys):
                minimum = self._source_size(spec, access_type)
                size = choose_capacity(
                    spec.required_bytes,
                    spec.limit_bytes,
                    minimum=minimum,
                    max_volume=env.config.max_volume_bytes,
                )
                volume = Volume(
                    id=env.new_id(),
                    name=spec.name,
                    capacity_bytes=size,
                    access_type=access_type,
                    phase=Phase.CREATING,
                    created_ns=env.now(),
                    parameters=dict(spec.parameters),
                    mutable_parameters=dict(spec.mutable_parameters),
                    source_kind=spec.source_kind,
                    source_id=spec.source_id,
                )
                return self._build(volume)

    def _source_size(self, spec: CreateVolumeSpec, access_type: AccessType) -> int:
        state = self.env.state
        if spec.source_kind is SourceKind.SNAPSHOT:
            snap = state.snapshots.get(spec.source_id)
            if snap is None or snap.phase is not Phase.READY:
                raise NotFound(f"snapshot {spec.source_id} does not exist")
            if snap.access_type is not access_type:
                raise InvalidArgument(
                    f"snapshot {snap.id} is of a {snap.access_type.value} volume, "
                    f"the request is for a {access_type.value} volume"
                )
            return snap.size_bytes
        if spec.source_kind is SourceKind.VOLUME:
            src = state.volumes.get(spec.source_id)
            if src is None or src.phase is not Phase.READY:
                raise NotFound(f"volume {spec.source_id} does not exist")
            if src.access_type is not access_type:
                raise InvalidArgument(
                    f"volume {src.id} is a {src.access_type.value} volume, "
                    f"the request is for a {access_type.value} volume"
                )
            return src.capacity_bytes
        return 0

    def _build(self, volume: Volume) -> Volume:
        env = self.env
        with contextlib.ExitStack() as undo:
            env.state.reserve_volume(volume, env.config.max_total_bytes)
            undo.callback(self._forget, volume.id)
            if volume.source_kind is SourceKind.SNAPSHOT:
                env.backing.restore_snapshot(
                    volume.id, volume.source_id, volume.access_type, volume.capacity_bytes
                )
            elif volume.source_kind is SourceKind.VOLUME:
                env.backing.clone_volume(
                    volume.id, volume.source_id, volume.access_type, volume.capacity_bytes
                )
            else:
                env.backing.create_volume(volume.id, volume.access_type, volume.capacity_bytes)
            undo.callback(self._remove_data, volume.id)
            ready = replace(volume, phase=Phase.READY)
            env.state.save_volume(ready)
            undo.pop_all()
            return ready

    def _forget(self, volume_id: str) -> None:
        try:
            self.env.state.drop_volume(volume_id)
        except OSError:
            log.exception("rollback: cannot drop volume record", extra={"volume": volume_id})

    def _remove_data(self, volume_id: str) -> None:
        try:
            self.env.backing.remove_volume(volume_id)
        except OSError:
            log.exception("rollback: cannot remove volume data", extra={"volume": volume_id})

    def create_ephemeral(self, volume_id: str, size: int) -> Volume:
        """An inline volume of a pod: created by NodePublishVolume, named after its id. The
        caller holds the volume's lock."""
        env = self.env
        size = choose_capacity(size, 0, minimum=0, max_volume=env.config.max_volume_bytes)
        volume = Volume(
            id=volume_id,
            name=f"ephemeral/{volume_id}",
            capacity_bytes=size,
            access_type=AccessType.MOUNT,
            phase=Phase.CREATING,
            created_ns=env.now(),
            ephemeral=True,
        )
        return self._build(volume)

    def delete_volume(self, volume_id: str) -> None:
        check_id("volume_id", volume_id)
        with self.env.locks.hold("volume:" + volume_id):
            volume = self.env.state.volumes.get(volume_id)
            if volume is None:
                return
            if volume.attachments:
                nodes = ", ".join(a.node_id for a in volume.attachments)
                raise FailedPrecondition(f"volume {volume_id} is still attached to {nodes}")
            node = self.env.state.node(volume_id)
            if node.in_use:
                raise FailedPrecondition(f"volume {volume_id} is still staged or published")
            self.destroy(volume)

    def destroy(self, volume: Volume) -> None:
        """Remove a volume's data and record; the caller holds its lock. Also finishes a
        deletion a crash interrupted."""
        state = self.env.state
        if volume.phase is not Phase.DELETING:
            state.save_volume(replace(volume, phase=Phase.DELETING))
        self.env.backing.remove_volume(volume.id)
        state.drop_node(volume.id)
        state.drop_volume(volume.id)

    # --- change -------------------------------------------------------------------------------

    def expand_volume(self, volume_id: str, required: int, limit: int) -> tuple[int, bool]:
        """The new capacity, and whether NodeExpandVolume is needed (a block volume's loop
        device must learn its new size)."""
        check_id("volume_id", volume_id)
        env = self.env
        with env.locks.hold("volume:" + volume_id):
            volume = self._ready(volume_id)
            size = expand_to(volume, required, limit, max_volume=env.config.max_volume_bytes)
            if size > volume.capacity_bytes:
                grown = env.state.grow_volume(volume, size, env.config.max_total_bytes)
                try:
                    env.backing.grow_volume(volume_id, volume.access_type, size)
                except BaseException:
                    env.state.save_volume(volume)
                    raise
                volume = grown
            return volume.capacity_bytes, volume.access_type is AccessType.BLOCK

    def modify_volume(self, volume_id: str, params: Mapping[str, str]) -> None:
        check_id("volume_id", volume_id)
        with self.env.locks.hold("volume:" + volume_id):
            volume = self._ready(volume_id)
            check_mutable_parameters(params, self.env.config.accepted_mutable_parameters)
            merged = {**volume.mutable_parameters, **params}
            if merged != dict(volume.mutable_parameters):
                self.env.state.save_volume(replace(volume, mutable_parameters=merged))

    # --- inspect ------------------------------------------------------------------------------

    def _ready(self, volume_id: str) -> Volume:
        volume = self.env.state.volumes.get(volume_id)
        if volume is None or volume.phase is not Phase.READY:
            raise NotFound(f"volume {volume_id} does not exist")
        return volume

    def status(self, volume: Volume) -> VolumeStatus:
        message = self.env.backing.condition(volume.id, volume.access_type)
        return VolumeStatus(
            volume=volume,
            published_node_ids=tuple(a.node_id for a in volume.attachments),
            abnormal=bool(message),
            message=message or "volume data present",
        )

    def get_volume(self, volume_id: str) -> VolumeStatus:
        check_id("volume_id", volume_id)
        return self.status(self._ready(volume_id))

    def list_volumes(self, starting_token: str, max_entries: int) -> tuple[list[VolumeStatus], str]:
        volumes = self.env.state.ready_volumes()
        page, token = paginate("volumes", [(v.id, v) for v in volumes], starting_token, max_entries)
        return [self.status(v) for v in page], token

    def validate(self, volume_id: str, caps: Sequence[Capability]) -> str:
        """ "" if every capability is supported by the volume, else the reason it is not."""
        check_id("volume_id", volume_id)
        if not caps:
            raise InvalidArgument("volume_capabilities are required")
        volume = self._ready(volume_id)
        for cap in caps:
            problem = capability_problem(cap)
            if problem:
                return problem
            if cap.access_type is not volume.access_type:
                return f"volume {volume_id} is a {volume.access_type.value} volume"
        return ""

    def capacity(self, caps: Sequence[Capability], topology: Mapping[str, str] | None) -> Capacity:
        cfg = self.env.config
        if topology and not topology_matches(topology, cfg.topology):
            return Capacity(0, 0, 0)
        if any(capability_problem(c) for c in caps):
            return Capacity(0, 0, 0)
        available = max(cfg.max_total_bytes - self.env.state.allocated(), 0)
        return Capacity(available, min(available, cfg.max_volume_bytes), 0)

    # --- attach -------------------------------------------------------------------------------

    def attach(
        self, volume_id: str, node_id: str, cap: Capability | None, readonly: bool
    ) -> dict[str, str]:
        check_id("volume_id", volume_id)
        if not node_id:
            raise InvalidArgument("node_id is required")
        if cap is None:
            raise InvalidArgument("volume_capability is required")
        env = self.env
        # The per-node lock makes "count attachments, then add one" atomic across volumes.
        with env.locks.hold("volume:" + volume_id, "node:" + node_id):
            volume = self._ready(volume_id)
            attachment = plan_attach(
                volume,
                node_id,
                readonly,
                cap,
                own_node=env.config.node_id,
                attached_on_node=env.state.attached_on(node_id),
                max_per_node=env.config.max_volumes_per_node,
            )
            if attachment is not None:
                env.state.save_volume(
                    replace(volume, attachments=(*volume.attachments, attachment))
                )
        return {"readonly": str(readonly).lower()}

    def detach(self, volume_id: str, node_id: str) -> None:
        check_id("volume_id", volume_id)
        with self.env.locks.hold("volume:" + volume_id):
            volume = self.env.state.volumes.get(volume_id)
            if volume is None:
                return
            kept = tuple(a for a in volume.attachments if node_id and a.node_id != node_id)
            if kept != volume.attachments:
                self.env.state.save_volume(replace(volume, attachments=kept))

    def check_size(self, volume: Volume, required: int) -> None:
        if required > volume.capacity_bytes:
            raise OutOfRange(
                f"volume {volume.id} has {volume.capacity_bytes} bytes; "
                "expand it with ControllerExpandVolume first"
            )
