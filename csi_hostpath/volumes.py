"""Volume and snapshot data under the driver's root.

Layout (all created 0700 by the driver; nothing here is named by request text):

    <root>/volumes/<id>        a directory (mount volume) or a sparse file (block volume)
    <root>/snapshots/<id>.tar  a tar of a mount volume, taken with GNU tar
    <root>/snapshots/<id>.img  a sparse copy of a block volume
    <root>/tmp/                work in progress; renamed into place when complete
    <root>/quarantine/         data found without a record at start-up (kept, not deleted)

New data is built in ``tmp/`` and renamed into place, so a volume path either holds complete
data or nothing. Every entry is checked with lstat before use: a symlink planted in the root
is refused, never followed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import uuid
from dataclasses import dataclass

from csi_hostpath.errors import FailedPrecondition, Internal
from csi_hostpath.model import AccessType
from csi_hostpath.paths import check_id

__all__ = ["Backing", "Usage", "sparse_copy"]

SEEK_DATA = 3
SEEK_HOLE = 4


@dataclass(frozen=True)
class Usage:
    total_bytes: int
    used_bytes: int
    available_bytes: int
    total_inodes: int = 0
    used_inodes: int = 0
    available_inodes: int = 0


class Backing:
    def __init__(self, root: str) -> None:
        self.root = root
        for sub in ("volumes", "snapshots", "tmp", "quarantine"):
            os.makedirs(os.path.join(root, sub), mode=0o700, exist_ok=True)
        # Leftovers of work a crash interrupted are never complete: drop them.
        for entry in os.listdir(self._tmp_dir):
            _remove_any(os.path.join(self._tmp_dir, entry))

    # --- paths --------------------------------------------------------------------------------

    @property
    def _tmp_dir(self) -> str:
        return os.path.join(self.root, "tmp")

    def volume_path(self, volume_id: str) -> str:
        return os.path.join(self.root, "volumes", check_id("volume id", volume_id))

    def snapshot_path(self, snapshot_id: str, access_type: AccessType) -> str:
        ext = ".img" if access_type is AccessType.BLOCK else ".tar"
        return os.path.join(self.root, "snapshots", check_id("snapshot id", snapshot_id) + ext)

    def _scratch(self) -> str:
        return os.path.join(self._tmp_dir, uuid.uuid4().hex)

    def _checked(self, path: str, access_type: AccessType) -> str:
        """``path`` if it exists with the kind ``access_type`` needs; a symlink or another
        kind is refused."""
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError as exc:
            raise FailedPrecondition(f"volume data {path} is missing") from exc
        want = stat.S_ISREG if access_type is AccessType.BLOCK else stat.S_ISDIR
        if not want(mode):
            raise FailedPrecondition(f"{path} is not a {access_type.value} volume's data")
        return path

    def volume_source(self, volume_id: str, access_type: AccessType) -> str:
        return self._checked(self.volume_path(volume_id), access_type)

    # --- volumes ------------------------------------------------------------------------------

    def create_volume(self, volume_id: str, access_type: AccessType, size: int) -> None:
        final = self.volume_path(volume_id)
        work = self._scratch()
        if access_type is AccessType.BLOCK:
            _new_sparse_file(work, size)
        else:
            # World-writable like an emptyDir: pods running as any user can write; the kubelet
            # applies fsGroup on top.
            os.mkdir(work, 0o777)
            os.chmod(work, 0o777)  # noqa: S103 - a volume is for the pod's users, as emptyDir
        self._commit(work, final)

    def restore_snapshot(
        self, volume_id: str, snapshot_id: str, access_type: AccessType, size: int
    ) -> None:
        src = self._checked(self.snapshot_path(snapshot_id, access_type), AccessType.BLOCK)
        final = self.volume_path(volume_id)
        work = self._scratch()
        try:
            if access_type is AccessType.BLOCK:
                _copy_file(src, work, size)
            else:
                os.mkdir(work, 0o777)
                _run(
                    [
                        "tar",
                        "--extract",
                        "--file",
                        src,
                        "--directory",
                        work,
                        "--same-owner",
                        "--preserve-permissions",
                        "--numeric-owner",
                        "--xattrs",
                    ]
                )
        except BaseException:
            _remove_any(work)
            raise
        self._commit(work, final)

    def clone_volume(
        self, volume_id: str, source_id: str, access_type: AccessType, size: int
    ) -> None:
        src = self.volume_source(source_id, access_type)
        final = self.volume_path(volume_id)
        work = self._scratch()
        try:
            if access_type is AccessType.BLOCK:
                _copy_file(src, work, size)
            else:
                _run(["cp", "--archive", "--reflink=auto", "--no-target-directory", src, work])
        except BaseException:
            _remove_any(work)
            raise
        self._commit(work, final)

    def remove_volume(self, volume_id: str) -> None:
        path = self.volume_path(volume_id)
        self._remove_owned(path)

    def grow_volume(self, volume_id: str, access_type: AccessType, size: int) -> None:
        """Block files grow to ``size`` (the loop device sees it after a refresh); a mount
        volume's size is accounting the driver enforces at create and reports in stats."""
        if access_type is AccessType.BLOCK:
            path = self.volume_source(volume_id, access_type)
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                if os.fstat(fd).st_size < size:
                    os.ftruncate(fd, size)
                    os.fsync(fd)
            finally:
                os.close(fd)

    def usage(self, volume_id: str, access_type: AccessType, capacity: int) -> Usage:
        path = self.volume_source(volume_id, access_type)
        if access_type is AccessType.BLOCK:
            size = os.lstat(path).st_size
            return Usage(total_bytes=size, used_bytes=0, available_bytes=size)
        used, inodes = _tree_usage(path)
        fs = os.statvfs(path)
        host_free = fs.f_bavail * fs.f_frsize
        return Usage(
            total_bytes=capacity,
            used_bytes=used,
            available_bytes=max(0, min(capacity - used, host_free)),
            total_inodes=inodes + fs.f_favail,
            used_inodes=inodes,
            available_inodes=fs.f_favail,
        )

    def condition(self, volume_id: str, access_type: AccessType) -> str:
        """Why the volume is abnormal, or "" when it is healthy."""
        try:
            self.volume_source(volume_id, access_type)
        except FailedPrecondition as exc:
            return str(exc)
        return ""

    # --- snapshots ----------------------------------------------------------------------------

    def create_snapshot(self, snapshot_id: str, volume_id: str, access_type: AccessType) -> None:
        src = self.volume_source(volume_id, access_type)
        final = self.snapshot_path(snapshot_id, access_type)
        work = self._scratch()
        try:
            if access_type is AccessType.BLOCK:
                _copy_file(src, work, os.lstat(src).st_size)
            else:
                _run(
                    [
                        "tar",
                        "--create",
                        "--file",
                        work,
                        "--directory",
                        src,
                        "--sparse",
                        "--numeric-owner",
                        "--xattrs",
                        ".",
                    ]
                )
                _fsync_path(work)
        except BaseException:
            _remove_any(work)
            raise
        self._commit(work, final)

    def remove_snapshot(self, snapshot_id: str, access_type: AccessType) -> None:
        self._remove_owned(self.snapshot_path(snapshot_id, access_type))

    # --- recovery helpers ---------------------------------------------------------------------

    def volume_entries(self) -> list[str]:
        return sorted(os.listdir(os.path.join(self.root, "volumes")))

    def snapshot_entries(self) -> list[str]:
        return sorted(os.listdir(os.path.join(self.root, "snapshots")))

    def quarantine(self, sub: str, entry: str) -> str:
        src = os.path.join(self.root, sub, entry)
        dst = os.path.join(self.root, "quarantine", f"{sub}-{entry}-{uuid.uuid4().hex[:8]}")
        os.replace(src, dst)
        return dst

    # --- internals ----------------------------------------------------------------------------

    def _commit(self, work: str, final: str) -> None:
        try:
            os.rename(work, final)
        except OSError:
            _remove_any(work)
            raise
        _fsync_path(os.path.dirname(final))

    def _remove_owned(self, path: str) -> None:
        # Renamed aside first, so a crash mid-removal never leaves half a volume at its path.
        try:
            os.lstat(path)
        except FileNotFoundError:
            return
        doomed = self._scratch()
        os.rename(path, doomed)
        _remove_any(doomed)


def _remove_any(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        # rmtree never follows symlinks inside the tree (it uses the fd-based walk).
        shutil.rmtree(path, ignore_errors=False)
    else:
        os.unlink(path)


def _new_sparse_file(path: str, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def sparse_copy(src_fd: int, dst_fd: int, length: int) -> None:
    """Copy the data extents of ``src_fd`` to the same offsets of ``dst_fd``, leaving holes as
    holes, so a 10 GiB block volume with 1 MiB written costs 1 MiB."""
    offset = 0
    while offset < length:
        try:
            data = os.lseek(src_fd, offset, SEEK_DATA)
        except OSError:  # ENXIO: no data after offset
            break
        hole = min(os.lseek(src_fd, data, SEEK_HOLE), length)
        pos = data
        while pos < hole:
            n = os.copy_file_range(src_fd, dst_fd, hole - pos, pos, pos)
            if n <= 0:
                raise Internal("copy_file_range made no progress")
            pos += n
        offset = hole


def _copy_file(src: str, dst: str, size: int) -> None:
    sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            length = os.fstat(sfd).st_size
            sparse_copy(sfd, dfd, length)
            os.ftruncate(dfd, max(size, length))
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def _tree_usage(path: str) -> tuple[int, int]:
    used, inodes = 0, 0
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        for name in dirnames + filenames:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                used += st.st_blocks * 512
                inodes += 1
    return used, inodes


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _run(cmd: list[str]) -> None:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Internal(f"{cmd[0]}: {exc}") from exc
    if res.returncode != 0:
        raise Internal(f"{cmd[0]} failed: {res.stderr.strip()[-500:]}")
