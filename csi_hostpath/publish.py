"""The node side: stage, publish, unpublish, unstage, stats and expansion of volumes on this
node, and ephemeral inline volumes.

Theory of operation: a mount volume is staged by bind-mounting its directory on the staging
path and published by bind-mounting the same directory (never the caller's staging path, which
the caller could swap) on the target, read-only and with the requested flags if asked. A block
volume is attached to a loop device when first staged or published, the device is
bind-mounted on a target file, and it is detached when the last stage and publication go.
The node record is written before a mount is made and after it is removed, so a crash leaves
at worst a record without its mount, which start-up recovery drops; repeated calls compare the
request with the record (``decisions.plan_stage``/``plan_publish``) and check that the mount is
really there. An ephemeral volume is created by its first publish and deleted by its last
unpublish.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from csi_hostpath.decisions import (
    DEFAULT_VOLUME_BYTES,
    is_ephemeral,
    parse_size,
    plan_publish,
    plan_stage,
)
from csi_hostpath.env import Env
from csi_hostpath.errors import FailedPrecondition, InvalidArgument, NotFound
from csi_hostpath.model import AccessType, Capability, NodeVolume, Phase, Staging, Volume
from csi_hostpath.mounts import flag_bits
from csi_hostpath.paths import check_host_path, check_id
from csi_hostpath.provision import Provisioner
from csi_hostpath.volumes import Usage

__all__ = ["NodePublisher", "VolumeStats"]

log = logging.getLogger("stowage.csi")


@dataclass(frozen=True)
class VolumeStats:
    usage: Usage
    access_type: AccessType
    abnormal: bool
    message: str


class NodePublisher:
    def __init__(self, env: Env, provisioner: Provisioner) -> None:
        self.env = env
        self.provisioner = provisioner

    def _path(self, kind: str, path: str) -> str:
        cfg = self.env.config
        return check_host_path(kind, path, driver_root=cfg.root, allowed=cfg.allowed_path_prefixes)

    def _volume(self, volume_id: str) -> Volume:
        volume = self.env.state.volumes.get(volume_id)
        if volume is None or volume.phase is not Phase.READY:
            raise NotFound(f"volume {volume_id} does not exist")
        return volume

    # --- stage --------------------------------------------------------------------------------

    def stage(self, volume_id: str, staging_path: str, cap: Capability | None) -> None:
        check_id("volume_id", volume_id)
        if not staging_path:
            raise InvalidArgument("staging_target_path is required")
        if cap is None:
            raise InvalidArgument("volume_capability is required")
        path = self._path("staging_target_path", staging_path)
        env = self.env
        with env.locks.hold("volume:" + volume_id):
            volume = self._volume(volume_id)
            node = env.state.node(volume_id)
            if not plan_stage(volume, node, path, cap):
                if volume.access_type is AccessType.BLOCK or env.mounter.is_mounted(path):
                    return
                # Recorded but the mount is gone (unmounted behind our back): make it again.
                node = replace(node, staged=tuple(s for s in node.staged if s.path != path))
            staged = replace(node, staged=(*node.staged, Staging(path, volume.access_type)))
            with contextlib.ExitStack() as undo:
                if volume.access_type is AccessType.BLOCK:
                    staged = self._with_loop(volume, staged)
                env.state.save_node(staged)
                undo.callback(self._restore_node, node, staged)
                if volume.access_type is AccessType.MOUNT:
                    source = env.backing.volume_source(volume_id, AccessType.MOUNT)
                    env.mounter.bind(source, path, readonly=False, flags=0)
                undo.pop_all()

    def unstage(self, volume_id: str, staging_path: str) -> None:
        check_id("volume_id", volume_id)
        if not staging_path:
            raise InvalidArgument("staging_target_path is required")
        env = self.env
        with env.locks.hold("volume:" + volume_id):
            node = env.state.node(volume_id)
            staging = node.staging(staging_path)
            if staging is None:
                return
            users = [p.target for p in node.published if p.staging_path == staging_path]
            if users:
                raise FailedPrecondition(
                    f"volume {volume_id} is still published at {', '.join(users)}"
                )
            if staging.access_type is AccessType.MOUNT:
                env.mounter.unmount(staging_path)
            rest = replace(node, staged=tuple(s for s in node.staged if s.path != staging_path))
            env.state.save_node(self._release_loop(rest))

    # --- publish ------------------------------------------------------------------------------

    def publish(
        self,
        volume_id: str,
        target_path: str,
        staging_path: str,
        cap: Capability | None,
        readonly: bool,
        volume_context: Mapping[str, str],
    ) -> None:
        check_id("volume_id", volume_id)
        if not target_path:
            raise InvalidArgument("target_path is required")
        if cap is None:
            raise InvalidArgument("volume_capability is required")
        target = self._path("target_path", target_path)
        if staging_path:
            staging_path = self._path("staging_target_path", staging_path)
        flags = flag_bits(cap.mount_flags)
        env = self.env
        with env.locks.hold("volume:" + volume_id), contextlib.ExitStack() as undo:
            volume = self._publishable(volume_id, cap, volume_context, undo)
            node = env.state.node(volume_id)
            pub = plan_publish(volume, node, target, cap, readonly, staging_path)
            if pub is None:
                if env.mounter.is_mounted(target):
                    undo.pop_all()
                    return
                # Recorded but not mounted (unmounted behind our back): publish it again.
                pub = next(p for p in node.published if p.target == target)
                node = replace(node, published=tuple(p for p in node.published if p != pub))
            published = replace(node, published=(*node.published, pub))
            if volume.access_type is AccessType.BLOCK:
                published = self._with_loop(volume, published)
            env.state.save_node(published)
            undo.callback(self._restore_node, node, published)
            is_dir = volume.access_type is AccessType.MOUNT
            env.mounter.make_target(target, directory=is_dir)
            undo.callback(self._quiet, env.mounter.remove_target, target)
            if is_dir:
                source = env.backing.volume_source(volume_id, AccessType.MOUNT)
                if cap.mount_group:
                    _apply_group(source, cap.mount_group)
            else:
                source = published.loop_device
            env.mounter.bind(source, target, readonly=pub.readonly, flags=flags)
            undo.pop_all()

    def _publishable(
        self,
        volume_id: str,
        cap: Capability,
        context: Mapping[str, str],
        undo: contextlib.ExitStack,
    ) -> Volume:
        if not is_ephemeral(context):
            volume = self._volume(volume_id)
            if volume.ephemeral:
                raise FailedPrecondition(f"volume {volume_id} is an ephemeral inline volume")
            return volume
        if cap.access_type is not AccessType.MOUNT:
            raise InvalidArgument("ephemeral inline volumes are mount volumes")
        existing = self.env.state.volumes.get(volume_id)
        if existing is not None:
            if not existing.ephemeral:
                raise FailedPrecondition(f"volume {volume_id} is not an ephemeral volume")
            return existing
        size = parse_size(context["size"]) if context.get("size") else DEFAULT_VOLUME_BYTES
        volume = self.provisioner.create_ephemeral(volume_id, size)
        undo.callback(self._quiet, self.provisioner.destroy, volume)
        return volume

    def unpublish(self, volume_id: str, target_path: str) -> None:
        check_id("volume_id", volume_id)
        if not target_path:
            raise InvalidArgument("target_path is required")
        env = self.env
        with env.locks.hold("volume:" + volume_id):
            node = env.state.node(volume_id)
            pub = node.publication(target_path)
            if pub is None:
                # Not published there by this driver (or already unpublished): nothing of
                # ours to undo, and a path we did not create is not ours to remove.
                return
            env.mounter.unmount(target_path)
            env.mounter.remove_target(target_path)
            rest = replace(node, published=tuple(p for p in node.published if p != pub))
            rest = self._release_loop(rest)
            env.state.save_node(rest)
            volume = env.state.volumes.get(volume_id)
            if volume is not None and volume.ephemeral and not rest.in_use:
                self.provisioner.destroy(volume)

    # --- stats and expansion ------------------------------------------------------------------

    def _used_path(self, volume_id: str, path: str) -> tuple[Volume, NodeVolume]:
        check_id("volume_id", volume_id)
        if not path:
            raise InvalidArgument("volume_path is required")
        volume = self._volume(volume_id)
        node = self.env.state.node(volume_id)
        if node.publication(path) is None and node.staging(path) is None:
            raise NotFound(f"volume {volume_id} is not published or staged at {path[:200]!r}")
        return volume, node

    def stats(self, volume_id: str, volume_path: str) -> VolumeStats:
        volume, _ = self._used_path(volume_id, volume_path)
        env = self.env
        message = env.backing.condition(volume_id, volume.access_type)
        if not message and not env.mounter.is_mounted(volume_path):
            message = f"{volume_path} is not mounted"
        usage = env.backing.usage(volume_id, volume.access_type, volume.capacity_bytes)
        return VolumeStats(usage, volume.access_type, bool(message), message or "healthy")

    def expand(self, volume_id: str, volume_path: str, required: int) -> int:
        with self.env.locks.hold("volume:" + volume_id):
            volume, node = self._used_path(volume_id, volume_path)
            self.provisioner.check_size(volume, required)
            if volume.access_type is AccessType.BLOCK and node.loop_device:
                self.env.loops.refresh(node.loop_device)
            return volume.capacity_bytes

    # --- loop devices and rollback ------------------------------------------------------------

    def _with_loop(self, volume: Volume, node: NodeVolume) -> NodeVolume:
        if node.loop_device:
            return node
        backing = self.env.backing.volume_source(volume.id, AccessType.BLOCK)
        return replace(node, loop_device=self.env.loops.attach(backing))

    def _release_loop(self, node: NodeVolume) -> NodeVolume:
        if node.loop_device and not node.in_use:
            self.env.loops.detach(node.loop_device)
            return replace(node, loop_device="")
        return node

    def _restore_node(self, before: NodeVolume, after: NodeVolume) -> None:
        try:
            if after.loop_device and not before.loop_device:
                self.env.loops.detach(after.loop_device)
            self.env.state.save_node(before)
        except Exception:
            log.exception(
                "rollback: cannot restore node record", extra={"volume": before.volume_id}
            )

    @staticmethod
    def _quiet(fn: Callable[..., object], *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("rollback step failed")


def _apply_group(path: str, group: str) -> None:
    """VOLUME_MOUNT_GROUP: the volume's root becomes group-owned and setgid, so files the pod
    creates inherit the group."""
    try:
        gid = int(group)
    except ValueError as exc:
        raise InvalidArgument(f"volume_mount_group {group[:20]!r} is not a numeric gid") from exc
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchown(fd, -1, gid)
        os.fchmod(fd, (os.fstat(fd).st_mode & 0o7777) | 0o2070)
    finally:
        os.close(fd)
