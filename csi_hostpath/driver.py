"""Assembles the driver: state and seams into an Env, the three cores, and recovery."""

from __future__ import annotations

import os
from dataclasses import dataclass

from csi_hostpath.config import DriverConfig
from csi_hostpath.env import Env
from csi_hostpath.loopdev import LoopDevices, Losetup
from csi_hostpath.mounts import LinuxMounter, Mounter
from csi_hostpath.provision import Provisioner
from csi_hostpath.publish import NodePublisher
from csi_hostpath.recover import recover
from csi_hostpath.snapshots import Snapshotter
from csi_hostpath.state import DriverState
from csi_hostpath.store import AtomicDirStore, RecordStore
from csi_hostpath.volumes import Backing

__all__ = ["Driver", "open_driver"]


@dataclass
class Driver:
    env: Env
    provisioner: Provisioner
    snapshotter: Snapshotter
    publisher: NodePublisher
    recovery: list[str]


def open_driver(
    config: DriverConfig,
    *,
    store: RecordStore | None = None,
    mounter: Mounter | None = None,
    loops: LoopDevices | None = None,
) -> Driver:
    """Open (or create) the driver's root, load its records and recover from any crash."""
    os.makedirs(config.root, mode=0o700, exist_ok=True)
    os.chmod(config.root, 0o700)
    env = Env(
        config=config,
        state=DriverState(store or AtomicDirStore(os.path.join(config.root, "state"))),
        backing=Backing(config.root),
        mounter=mounter or LinuxMounter(),
        loops=loops or Losetup(),
    )
    provisioner = Provisioner(env)
    snapshotter = Snapshotter(env)
    publisher = NodePublisher(env, provisioner)
    actions = recover(env, provisioner, snapshotter)
    return Driver(env, provisioner, snapshotter, publisher, actions)
