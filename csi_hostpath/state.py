"""The driver's state: records in memory, each change written through the record store first.

Writes happen before memory changes (a failed write leaves memory as it was), except for
``reserve_volume``, which must check capacity and claim it in one step under the mutex: it
claims in memory, then writes, and releases the claim if the write fails. The mutex guards
only the dictionaries, never I/O of the backing data, so operations on different volumes run
in parallel; callers serialise operations on one volume with ``KeyedLocks``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from csi_hostpath.decisions import reserve
from csi_hostpath.model import GroupSnapshot, NodeVolume, Phase, Snapshot, Volume
from csi_hostpath.store import RecordStore

__all__ = ["DriverState"]

log = logging.getLogger("stowage.csi")
R = TypeVar("R")


class DriverState:
    def __init__(self, store: RecordStore) -> None:
        self._store = store
        self._mu = threading.Lock()
        self.volumes: dict[str, Volume] = {}
        self.snapshots: dict[str, Snapshot] = {}
        self.groups: dict[str, GroupSnapshot] = {}
        self.nodes: dict[str, NodeVolume] = {}

    def load(self) -> list[str]:
        """Read every record; returns the keys of records that could not be parsed (they are
        dropped from the store, and the caller frees what they held)."""
        bad: list[str] = []
        self.volumes = self._load("volumes", Volume.from_dict, bad)
        self.snapshots = self._load("snapshots", Snapshot.from_dict, bad)
        self.groups = self._load("groups", GroupSnapshot.from_dict, bad)
        self.nodes = self._load("node", NodeVolume.from_dict, bad)
        return bad

    def _load(
        self, kind: str, parse: Callable[[dict[str, Any]], R], bad: list[str]
    ) -> dict[str, R]:
        out: dict[str, R] = {}
        for key, raw in self._store.load(kind).items():
            try:
                out[key] = parse(raw)
            except (KeyError, ValueError, TypeError) as exc:
                log.error(
                    "dropping unparsable record",
                    extra={"kind": kind, "key": key, "error": str(exc)},
                )
                self._store.delete(kind, key)
                bad.append(f"{kind}/{key}")
        return out

    # --- volumes ------------------------------------------------------------------------------

    def allocated(self) -> int:
        with self._mu:
            return sum(v.capacity_bytes for v in self.volumes.values())

    def volume_by_name(self, name: str) -> Volume | None:
        with self._mu:
            return next((v for v in self.volumes.values() if v.name == name), None)

    def reserve_volume(self, volume: Volume, max_total: int) -> None:
        with self._mu:
            reserve(
                sum(v.capacity_bytes for v in self.volumes.values()),
                volume.capacity_bytes,
                max_total,
            )
            self.volumes[volume.id] = volume
        try:
            self._store.put("volumes", volume.id, volume.to_dict())
        except BaseException:
            with self._mu:
                self.volumes.pop(volume.id, None)
            raise

    def grow_volume(self, volume: Volume, new_capacity: int, max_total: int) -> Volume:
        """Claim the extra capacity of an expansion, as ``reserve_volume`` does."""
        from dataclasses import replace

        grown = replace(volume, capacity_bytes=new_capacity)
        with self._mu:
            others = sum(v.capacity_bytes for k, v in self.volumes.items() if k != volume.id)
            reserve(others, new_capacity, max_total)
            self.volumes[volume.id] = grown
        try:
            self._store.put("volumes", volume.id, grown.to_dict())
        except BaseException:
            with self._mu:
                self.volumes[volume.id] = volume
            raise
        return grown

    def save_volume(self, volume: Volume) -> None:
        self._store.put("volumes", volume.id, volume.to_dict())
        with self._mu:
            self.volumes[volume.id] = volume

    def drop_volume(self, volume_id: str) -> None:
        self._store.delete("volumes", volume_id)
        with self._mu:
            self.volumes.pop(volume_id, None)

    def ready_volumes(self) -> list[Volume]:
        with self._mu:
            vols = [v for v in self.volumes.values() if v.phase is Phase.READY]
        return sorted(vols, key=lambda v: v.id)

    # --- snapshots ----------------------------------------------------------------------------

    def snapshot_by_name(self, name: str) -> Snapshot | None:
        with self._mu:
            return next((s for s in self.snapshots.values() if s.name == name), None)

    def save_snapshot(self, snapshot: Snapshot) -> None:
        self._store.put("snapshots", snapshot.id, snapshot.to_dict())
        with self._mu:
            self.snapshots[snapshot.id] = snapshot

    def drop_snapshot(self, snapshot_id: str) -> None:
        self._store.delete("snapshots", snapshot_id)
        with self._mu:
            self.snapshots.pop(snapshot_id, None)

    def ready_snapshots(self) -> list[Snapshot]:
        with self._mu:
            snaps = [s for s in self.snapshots.values() if s.phase is Phase.READY]
        return sorted(snaps, key=lambda s: s.id)

    def snapshots_of(self, volume_id: str) -> list[Snapshot]:
        with self._mu:
            return [s for s in self.snapshots.values() if s.source_volume_id == volume_id]

    # --- group snapshots ----------------------------------------------------------------------

    def group_by_name(self, name: str) -> GroupSnapshot | None:
        with self._mu:
            return next((g for g in self.groups.values() if g.name == name), None)

    def save_group(self, group: GroupSnapshot) -> None:
        self._store.put("groups", group.id, group.to_dict())
        with self._mu:
            self.groups[group.id] = group

    def drop_group(self, group_id: str) -> None:
        self._store.delete("groups", group_id)
        with self._mu:
            self.groups.pop(group_id, None)

    # --- node ---------------------------------------------------------------------------------

    def node(self, volume_id: str) -> NodeVolume:
        with self._mu:
            return self.nodes.get(volume_id) or NodeVolume(volume_id)

    def save_node(self, node: NodeVolume) -> None:
        if not node.in_use and not node.loop_device:
            self.drop_node(node.volume_id)
            return
        self._store.put("node", node.volume_id, node.to_dict())
        with self._mu:
            self.nodes[node.volume_id] = node

    def drop_node(self, volume_id: str) -> None:
        self._store.delete("node", volume_id)
        with self._mu:
            self.nodes.pop(volume_id, None)

    def attached_on(self, node_id: str) -> int:
        with self._mu:
            return sum(
                1 for v in self.volumes.values() if any(a.node_id == node_id for a in v.attachments)
            )
