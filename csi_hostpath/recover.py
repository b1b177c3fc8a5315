"""Start-up recovery: make records and reality agree after a restart or a kill -9.

- CREATING volumes and snapshots were interrupted before they were complete: their data (if
  any) and records are removed; the CO's retry creates them afresh.
- DELETING records are finished: data removed, record dropped.
- Group snapshots left CREATING or DELETING are removed with their members.
- Block volumes' files are grown to their recorded capacity (an expansion may have stopped
  between the record and the file).
- Node records keep only the stages and publications whose mount is still there; a loop device
  is re-found from its backing file; one no longer used is detached. An ephemeral volume with no
  publication left is deleted.
- Data in volumes/ or snapshots/ without a record is moved to quarantine/, never deleted.

Nothing here raises: a step that fails is logged and the rest goes on, so the driver starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from csi_hostpath.env import Env
from csi_hostpath.model import AccessType, NodeVolume, Phase
from csi_hostpath.provision import Provisioner
from csi_hostpath.snapshots import Snapshotter

__all__ = ["recover"]

log = logging.getLogger("stowage.csi")


def recover(env: Env, provisioner: Provisioner, snapshotter: Snapshotter) -> list[str]:
    """Returns one line per repair made (for the log and for tests)."""
    actions: list[str] = []

    def step(what: str, fn: Callable[..., object], *args: object) -> None:
        try:
            if fn(*args) is not False:
                actions.append(what)
        except Exception:
            log.exception("recovery step failed", extra={"step": what})

    for key in env.state.load():
        actions.append(f"dropped unreadable record {key}")
    state = env.state
    for group in list(state.groups.values()):
        if group.phase is not Phase.READY:
            step(
                f"removed {group.phase.value} group snapshot {group.id}",
                snapshotter.destroy_group,
                group,
            )
    for snap in list(state.snapshots.values()):
        if snap.phase is not Phase.READY:
            step(f"removed {snap.phase.value} snapshot {snap.id}", snapshotter.destroy, snap)
    for vol in list(state.volumes.values()):
        if vol.phase is not Phase.READY:
            step(f"removed {vol.phase.value} volume {vol.id}", provisioner.destroy, vol)
        elif vol.access_type is AccessType.BLOCK:
            try:
                env.backing.grow_volume(vol.id, vol.access_type, vol.capacity_bytes)
            except Exception:
                log.exception("recovery: cannot size block volume", extra={"volume": vol.id})
    mounted = _mount_points(env)
    for node in list(state.nodes.values()):
        step(f"reconciled node state of {node.volume_id}", _reconcile_node, env, node, mounted)
    for vol in list(state.volumes.values()):
        if vol.ephemeral and not state.node(vol.id).in_use:
            step(f"removed unused ephemeral volume {vol.id}", provisioner.destroy, vol)
    _quarantine_orphans(env, actions)
    for line in actions:
        log.info("recovery", extra={"action": line})
    return actions


def _mount_points(env: Env) -> set[str]:
    try:
        return env.mounter.mount_points()
    except OSError:
        log.exception("recovery: cannot read the mount table")
        return set()


def _reconcile_node(env: Env, node: NodeVolume, mounted: set[str]) -> bool:
    """Returns False when the record already matched reality."""
    vol = env.state.volumes.get(node.volume_id)
    if vol is None:
        # The volume is gone; unmount whatever of it is left, then forget it.
        for pub in node.published:
            env.mounter.unmount(pub.target)
        for stg in node.staged:
            if stg.access_type is AccessType.MOUNT:
                env.mounter.unmount(stg.path)
        if node.loop_device:
            env.loops.detach(node.loop_device)
        env.state.drop_node(node.volume_id)
        return True
    published = tuple(p for p in node.published if p.target in mounted)
    staged = tuple(s for s in node.staged if s.access_type is AccessType.BLOCK or s.path in mounted)
    loop = ""
    if vol.access_type is AccessType.BLOCK:
        backing = env.backing.volume_path(vol.id)
        devices = env.loops.find(backing)
        keep = node.loop_device if node.loop_device in devices else (devices[0] if devices else "")
        for dev in devices:
            if dev != keep or not (published or staged):
                env.loops.detach(dev)
        loop = keep if (published or staged) else ""
        if (published or staged) and not loop:
            loop = env.loops.attach(backing)
    fixed = replace(node, published=published, staged=staged, loop_device=loop)
    if fixed == node:
        return False
    env.state.save_node(fixed)
    return True


def _quarantine_orphans(env: Env, actions: list[str]) -> None:
    known_volumes = set(env.state.volumes)
    for entry in env.backing.volume_entries():
        if entry not in known_volumes:
            try:
                dst = env.backing.quarantine("volumes", entry)
                actions.append(f"quarantined volume data without a record: {entry} -> {dst}")
            except OSError:
                log.exception("recovery: cannot quarantine", extra={"entry": entry})
    known_snaps = set(env.state.snapshots)
    for entry in env.backing.snapshot_entries():
        if entry.rsplit(".", 1)[0] not in known_snaps:
            try:
                dst = env.backing.quarantine("snapshots", entry)
                actions.append(f"quarantined snapshot data without a record: {entry} -> {dst}")
            except OSError:
                log.exception("recovery: cannot quarantine", extra={"entry": entry})
