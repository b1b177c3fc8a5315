"""Test support for the CSI driver: fakes of its seams (mounts, loop devices) and the kernel
cleanup that root tests and the csi-sanity run use so that no mount or loop device outlives a
test, also when it fails."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading

from csi_hostpath.errors import FailedPrecondition
from csi_hostpath.mounts import parse_mountinfo

__all__ = ["FakeLoops", "FakeMounter", "kernel_leftovers", "release_kernel_resources"]


class FakeMounter:
    """Mounts recorded in a dict; targets are created for real (tests run in tmp dirs)."""

    def __init__(self) -> None:
        self.mounts: dict[str, list[tuple[str, bool, int]]] = {}
        self.fail_bind: set[str] = set()
        self._mu = threading.Lock()

    def make_target(self, path: str, *, directory: bool) -> None:
        if not os.path.isdir(os.path.dirname(path)):
            raise FailedPrecondition(f"the parent of {path!r} does not exist")
        if directory:
            os.makedirs(path, exist_ok=True)
        elif not os.path.exists(path):
            open(path, "w").close()

    def remove_target(self, path: str) -> None:
        if os.path.isdir(path):
            os.rmdir(path)
        elif os.path.exists(path):
            os.unlink(path)

    def bind(self, source: str, target: str, *, readonly: bool, flags: int) -> None:
        if target in self.fail_bind:
            raise OSError(5, "injected mount failure")
        with self._mu:
            self.mounts.setdefault(target, []).append((source, readonly, flags))

    def unmount(self, target: str) -> None:
        with self._mu:
            self.mounts.pop(target, None)

    def is_mounted(self, path: str) -> bool:
        with self._mu:
            return bool(self.mounts.get(path))

    def mount_points(self) -> set[str]:
        with self._mu:
            return {k for k, v in self.mounts.items() if v}


class FakeLoops:
    def __init__(self) -> None:
        self.devices: dict[str, str] = {}
        self.refreshed: list[str] = []
        self._next = 0

    def attach(self, backing_file: str) -> str:
        dev = f"/dev/fakeloop{self._next}"
        self._next += 1
        self.devices[dev] = backing_file
        return dev

    def detach(self, device: str) -> None:
        self.devices.pop(device, None)

    def find(self, backing_file: str) -> list[str]:
        return sorted(d for d, f in self.devices.items() if f == backing_file)

    def refresh(self, device: str) -> None:
        self.refreshed.append(device)


def _mounts_under(directory: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = parse_mountinfo(f.read())
    prefix = directory.rstrip("/") + "/"
    return [p for p in points if p.startswith(prefix)]


def _loops_under(directory: str) -> list[str]:
    res = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
        capture_output=True,
        text=True,
        check=False,
    )
    prefix = directory.rstrip("/") + "/"
    out = []
    for line in res.stdout.splitlines():
        name, _, back = line.strip().partition(" ")
        back = back.strip().removesuffix(" (deleted)")
        if back.startswith(prefix):
            out.append(name)
    return out


def kernel_leftovers(directory: str) -> tuple[list[str], list[str]]:
    """Mount points and loop devices that still refer to ``directory``."""
    return _mounts_under(directory), _loops_under(directory)


def release_kernel_resources(directory: str) -> None:
    """Unmount everything under ``directory`` (deepest first), detach every loop device backed
    by a file under it, then remove it. Never raises."""
    for _ in range(4):
        for point in sorted(_mounts_under(directory), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        for dev in _loops_under(directory):
            subprocess.run(["losetup", "-d", dev], capture_output=True, check=False)
        if not any(kernel_leftovers(directory)):
            break
    with contextlib.suppress(OSError):
        shutil.rmtree(directory, ignore_errors=True)


class CsiDaemon:
    """A stowage-csi process on a private socket and root under ``work``; ``kill9`` and
    ``start`` model a crash and a restart."""

    def __init__(self, work: str, *extra: str) -> None:
        self.work = work
        self.sock = os.path.join(work, "csi.sock")
        self.root = os.path.join(work, "root")
        self.log_path = os.path.join(work, "stowage-csi.log")
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"unix://{self.sock}"

    def start(self) -> None:
        import sys
        import time

        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.sock)
        cmd = [
            sys.executable, "-m", "csi_hostpath.server",
            "--endpoint", self.endpoint,
            "--nodeid", "node-1",
            "--root", self.root,
            "--allowed-path-prefix", os.path.join(self.work, "kubelet"),
            "--max-total-size", "100Gi",
            "--max-volume-size", "50Gi",
            *self.extra,
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"stowage-csi did not start: {self.log()}")
            time.sleep(0.02)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]
