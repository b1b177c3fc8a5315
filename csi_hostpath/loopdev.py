"""The loop-device seam: a block volume is a sparse file, attached to a loop device while it
is staged or published. ``LoopDevices`` is the protocol; ``Losetup`` drives util-linux's
losetup (the kernel's loop ioctls need care with races that losetup already takes)."""

from __future__ import annotations

import subprocess
from typing import Protocol

from csi_hostpath.errors import Internal

__all__ = ["LoopDevices", "Losetup"]


class LoopDevices(Protocol):
    def attach(self, backing_file: str) -> str:
        """Attach ``backing_file`` to a free loop device and return its path (/dev/loopN)."""
        ...

    def detach(self, device: str) -> None: ...

    def find(self, backing_file: str) -> list[str]:
        """The loop devices ``backing_file`` is attached to now."""
        ...

    def refresh(self, device: str) -> None:
        """Make the device see its backing file's new size (after an expansion)."""
        ...


class Losetup:
    def __init__(self, binary: str = "losetup") -> None:
        self.binary = binary

    def _run(self, *args: str) -> str:
        try:
            res = subprocess.run(
                [self.binary, *args], capture_output=True, text=True, check=False, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Internal(f"losetup {' '.join(args)}: {exc}") from exc
        if res.returncode != 0:
            raise Internal(f"losetup {' '.join(args)}: {res.stderr.strip() or res.returncode}")
        return res.stdout

    def attach(self, backing_file: str) -> str:
        return self._run("--find", "--show", "--nooverlap", backing_file).strip()

    def detach(self, device: str) -> None:
        try:
            self._run("--detach", device)
        except Internal:
            if self._attached(device):
                raise

    def _attached(self, device: str) -> bool:
        try:
            return bool(self._run("--noheadings", "--output", "NAME", device).strip())
        except Internal:
            return False

    def find(self, backing_file: str) -> list[str]:
        out = self._run("--noheadings", "--output", "NAME", "--associated", backing_file)
        return [line.strip() for line in out.splitlines() if line.strip()]

    def refresh(self, device: str) -> None:
        self._run("--set-capacity", device)
