"""Snapshots and group snapshots: real point-in-time copies (a tar of a mount volume, a
sparse copy of a block volume), restorable into new volumes.

Theory of operation: like volumes, a snapshot record is written in CREATING before its data,
the data is built in tmp/ and renamed into place, then the record becomes READY; deletion
writes DELETING first. A group snapshot writes its record (with the ids its members will
have) before taking the members, holding every source volume's lock so no driver operation
runs on any of them while the group is taken. Undo steps ride on an ExitStack.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace

from csi_hostpath.decisions import reuse_snapshot
from csi_hostpath.env import Env
from csi_hostpath.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from csi_hostpath.model import GroupSnapshot, Phase, Snapshot, Volume
from csi_hostpath.pagination import paginate
from csi_hostpath.paths import check_id, check_name, is_valid_id

__all__ = ["Snapshotter"]

log = logging.getLogger("stowage.csi")


class Snapshotter:
    def __init__(self, env: Env) -> None:
        self.env = env

    # --- single snapshots ---------------------------------------------------------------------

    def create(self, name: str, source_volume_id: str, params: Mapping[str, str]) -> Snapshot:
        check_name("name", name)
        check_id("source_volume_id", source_volume_id)
        env = self.env
        with env.locks.hold("snapname:" + name):
            existing = env.state.snapshot_by_name(name)
            if existing is not None:
                if existing.phase is not Phase.READY:
                    raise Aborted(f"snapshot {name!r} is being {existing.phase.value}")
                return reuse_snapshot(existing, source_volume_id)
            with env.locks.hold("volume:" + source_volume_id):
                volume = self._source(source_volume_id)
                return self._take(volume, name, "", params)

    def _source(self, volume_id: str) -> Volume:
        volume = self.env.state.volumes.get(volume_id)
        if volume is None or volume.phase is not Phase.READY:
            raise NotFound(f"volume {volume_id} does not exist")
        return volume

    def _take(
        self,
        volume: Volume,
        name: str,
        group_id: str,
        params: Mapping[str, str],
        snapshot_id: str = "",
    ) -> Snapshot:
        env = self.env
        snap = Snapshot(
            id=snapshot_id or env.new_id(),
            name=name,
            source_volume_id=volume.id,
            # A restore needs a volume at least as large as the source was.
            size_bytes=volume.capacity_bytes,
            access_type=volume.access_type,
            phase=Phase.CREATING,
            created_ns=env.now(),
            group_id=group_id,
            parameters=dict(params),
        )
        with contextlib.ExitStack() as undo:
            env.state.save_snapshot(snap)
            undo.callback(self._forget, snap)
            env.backing.create_snapshot(snap.id, volume.id, volume.access_type)
            ready = replace(snap, phase=Phase.READY)
            env.state.save_snapshot(ready)
            undo.pop_all()
            return ready

    def _forget(self, snap: Snapshot) -> None:
        try:
            self.env.backing.remove_snapshot(snap.id, snap.access_type)
            self.env.state.drop_snapshot(snap.id)
        except OSError:
            log.exception("rollback: cannot remove snapshot", extra={"snapshot": snap.id})

    def delete(self, snapshot_id: str) -> None:
        check_id("snapshot_id", snapshot_id)
        with self.env.locks.hold("snapshot:" + snapshot_id):
            snap = self.env.state.snapshots.get(snapshot_id)
            if snap is None:
                return
            if snap.group_id and snap.group_id in self.env.state.groups:
                raise FailedPrecondition(
                    f"snapshot {snapshot_id} belongs to group snapshot {snap.group_id}; "
                    "delete the group"
                )
            self.destroy(snap)

    def destroy(self, snap: Snapshot) -> None:
        """Remove a snapshot's data and record (the caller holds its lock or is recovery)."""
        if snap.phase is not Phase.DELETING:
            self.env.state.save_snapshot(replace(snap, phase=Phase.DELETING))
        self.env.backing.remove_snapshot(snap.id, snap.access_type)
        self.env.state.drop_snapshot(snap.id)

    def get(self, snapshot_id: str) -> Snapshot:
        check_id("snapshot_id", snapshot_id)
        snap = self.env.state.snapshots.get(snapshot_id)
        if snap is None or snap.phase is not Phase.READY:
            raise NotFound(f"snapshot {snapshot_id} does not exist")
        return snap

    def list_snapshots(
        self, snapshot_id: str, source_volume_id: str, starting_token: str, max_entries: int
    ) -> tuple[list[Snapshot], str]:
        snaps = self.env.state.ready_snapshots()
        if snapshot_id:
            # A filter that cannot name a snapshot matches none (the spec: an empty list).
            snaps = [s for s in snaps if is_valid_id(snapshot_id) and s.id == snapshot_id]
        if source_volume_id:
            snaps = [s for s in snaps if s.source_volume_id == source_volume_id]
        return paginate("snapshots", [(s.id, s) for s in snaps], starting_token, max_entries)

    # --- group snapshots ----------------------------------------------------------------------

    def create_group(
        self, name: str, source_volume_ids: Sequence[str], params: Mapping[str, str]
    ) -> tuple[GroupSnapshot, list[Snapshot]]:
        check_name("name", name)
        if not source_volume_ids:
            raise InvalidArgument("source_volume_ids are required")
        for vid in source_volume_ids:
            check_id("source volume id", vid)
        if len(set(source_volume_ids)) != len(source_volume_ids):
            raise InvalidArgument("source_volume_ids contain duplicates")
        env = self.env
        with env.locks.hold("groupname:" + name):
            existing = env.state.group_by_name(name)
            if existing is not None:
                if existing.phase is not Phase.READY:
                    raise Aborted(f"group snapshot {name!r} is being {existing.phase.value}")
                if set(existing.source_volume_ids) != set(source_volume_ids):
                    raise AlreadyExists(f"group snapshot {name!r} exists for other source volumes")
                return existing, self._members(existing)
            with env.locks.hold(*("volume:" + v for v in source_volume_ids)):
                volumes = [self._source(v) for v in source_volume_ids]
                group = GroupSnapshot(
                    id=env.new_id(),
                    name=name,
                    source_volume_ids=tuple(source_volume_ids),
                    snapshot_ids=tuple(env.new_id() for _ in volumes),
                    phase=Phase.CREATING,
                    created_ns=env.now(),
                )
                with contextlib.ExitStack() as undo:
                    env.state.save_group(group)
                    undo.callback(self._forget_group, group)
                    snaps = [
                        self._take(vol, f"group/{group.id}/{vol.id}", group.id, params, sid)
                        for vol, sid in zip(volumes, group.snapshot_ids, strict=True)
                    ]
                    ready = replace(group, phase=Phase.READY)
                    env.state.save_group(ready)
                    undo.pop_all()
                    return ready, snaps

    def _members(self, group: GroupSnapshot) -> list[Snapshot]:
        return [
            self.env.state.snapshots[s] for s in group.snapshot_ids if s in self.env.state.snapshots
        ]

    def _forget_group(self, group: GroupSnapshot) -> None:
        try:
            self.destroy_group(group)
        except OSError:
            log.exception("rollback: cannot remove group snapshot", extra={"group": group.id})

    def destroy_group(self, group: GroupSnapshot) -> None:
        if group.phase is not Phase.DELETING:
            self.env.state.save_group(replace(group, phase=Phase.DELETING))
        for snap in self._members(group):
            self.destroy(snap)
        self.env.state.drop_group(group.id)

    def _group(self, group_id: str, snapshot_ids: Sequence[str]) -> GroupSnapshot | None:
        group = self.env.state.groups.get(group_id)
        if group is not None and snapshot_ids and set(snapshot_ids) != set(group.snapshot_ids):
            raise FailedPrecondition(
                f"snapshot_ids do not match the members of group snapshot {group_id}"
            )
        return group

    def delete_group(self, group_id: str, snapshot_ids: Sequence[str]) -> None:
        check_id("group_snapshot_id", group_id)
        with self.env.locks.hold("group:" + group_id):
            group = self._group(group_id, snapshot_ids)
            if group is not None:
                self.destroy_group(group)

    def get_group(
        self, group_id: str, snapshot_ids: Sequence[str]
    ) -> tuple[GroupSnapshot, list[Snapshot]]:
        check_id("group_snapshot_id", group_id)
        group = self._group(group_id, snapshot_ids)
        if group is None or group.phase is not Phase.READY:
            raise NotFound(f"group snapshot {group_id} does not exist")
        return group, self._members(group)
