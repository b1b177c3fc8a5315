"""What every operation works with: settings, state, the I/O seams, locks, clock and ids.
Tests build one with fakes (``MemoryStore``, a fake mounter and loop devices)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from csi_hostpath.config import DriverConfig
from csi_hostpath.locks import KeyedLocks
from csi_hostpath.loopdev import LoopDevices
from csi_hostpath.mounts import Mounter
from csi_hostpath.state import DriverState
from csi_hostpath.volumes import Backing

__all__ = ["Env"]


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Env:
    config: DriverConfig
    state: DriverState
    backing: Backing
    mounter: Mounter
    loops: LoopDevices
    locks: KeyedLocks = field(default_factory=KeyedLocks)
    now: Callable[[], int] = time.time_ns
    new_id: Callable[[], str] = _new_id
