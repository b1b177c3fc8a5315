"""The mount seam: bind mounts onto caller-supplied paths, without following symlinks.

Every host path is opened from ``/`` one component at a time with ``O_NOFOLLOW``, so a
symlink planted anywhere in a target or staging path (``pods/x/volumes -> /etc``) fails the
call instead of redirecting the mount. The mount(2) itself is made onto ``/proc/self/fd/N`` of
that descriptor, so the path cannot be swapped between the check and the mount. ``Mounter`` is
the protocol; ``LinuxMounter`` calls mount(2)/umount2(2) through ctypes (a process per mount
would cost more than the whole RPC); the fake lives in the tests.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import stat
from collections.abc import Iterable, Iterator
from typing import Protocol

from csi_hostpath.errors import FailedPrecondition, Internal, InvalidArgument

__all__ = [
    "LinuxMounter",
    "Mounter",
    "flag_bits",
    "open_nofollow",
    "parse_mountinfo",
]

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_DIRSYNC = 128
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
UMOUNT_NOFOLLOW = 8

_FLAGS = {
    "ro": MS_RDONLY,
    "rw": 0,
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "sync": MS_SYNCHRONOUS,
    "dirsync": MS_DIRSYNC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
    # Every mount this driver makes is a bind; accepted for clients that say so.
    "bind": 0,
    "defaults": 0,
}


def flag_bits(flags: Iterable[str]) -> int:
    """mount(2) flags for VolumeCapability.mount_flags (pure). Unknown flags are refused
    rather than ignored, so a caller never believes an option took effect when it did not."""
    bits = 0
    for flag in flags:
        if flag not in _FLAGS:
            raise InvalidArgument(f"unsupported mount flag {flag[:40]!r}")
        bits |= _FLAGS[flag]
    return bits


def parse_mountinfo(text: str) -> list[str]:
    """Mount points listed in /proc/self/mountinfo text, in order (pure)."""
    points = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            points.append(_unescape(fields[4]))
    return points


_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    # The kernel writes space, tab, newline and backslash as \ooo.
    if "\\" not in field:
        return field
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def _escape(path: str) -> str:
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


class Mounter(Protocol):
    def make_target(self, path: str, *, directory: bool) -> None:
        """Create the file or directory ``path`` (its parent must exist); fine if it exists
        with the right kind."""
        ...

    def remove_target(self, path: str) -> None:
        """Remove ``path`` if it is a directory (empty) or an empty regular file; missing is
        fine; anything else is left alone and reported."""
        ...

    def bind(self, source: str, target: str, *, readonly: bool, flags: int) -> None: ...

    def unmount(self, target: str) -> None:
        """Unmount every mount stacked on ``target``; not mounted is fine."""
        ...

    def is_mounted(self, path: str) -> bool: ...

    def mount_points(self) -> set[str]: ...


@contextlib.contextmanager
def open_nofollow(path: str, *, directory: bool | None = None) -> Iterator[int]:
    """An O_PATH descriptor for ``path``, reached without following any symlink."""
    if not path.startswith("/"):
        raise InvalidArgument(f"{path!r} is not absolute")
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        parts = [p for p in path.split("/") if p]
        for i, part in enumerate(parts):
            flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
            if i < len(parts) - 1:
                flags |= os.O_DIRECTORY
            try:
                nfd = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise FailedPrecondition(
                        f"{path!r} crosses a symlink or a non-directory"
                    ) from exc
                raise
            os.close(fd)
            fd = nfd
        mode = os.fstat(fd).st_mode
        if stat.S_ISLNK(mode):
            raise FailedPrecondition(f"{path!r} is a symlink")
        if directory is True and not stat.S_ISDIR(mode):
            raise FailedPrecondition(f"{path!r} is not a directory")
        if directory is False and not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
            raise FailedPrecondition(f"{path!r} is not a file")
        yield fd
    finally:
        os.close(fd)


class LinuxMounter:
    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._mount = libc.mount
        self._mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_void_p,
        ]
        self._umount2 = libc.umount2
        self._umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

    def _call_mount(self, source: str | None, target: str, flags: int) -> None:
        src = source.encode() if source is not None else None
        if self._mount(src, target.encode(), None, flags, None) != 0:
            err = ctypes.get_errno()
            raise Internal(f"mount {source} on {target}: {os.strerror(err)}")

    def make_target(self, path: str, *, directory: bool) -> None:
        parent, name = os.path.split(path)
        try:
            with open_nofollow(parent, directory=True) as pfd:
                try:
                    if directory:
                        os.mkdir(name, 0o750, dir_fd=pfd)
                    else:
                        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                        os.close(os.open(name, flags, 0o640, dir_fd=pfd))
                    return
                except FileExistsError:
                    pass
        except FileNotFoundError as exc:
            raise FailedPrecondition(f"the parent of {path!r} does not exist") from exc
        with open_nofollow(path, directory=directory):
            pass

    def remove_target(self, path: str) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        try:
            if stat.S_ISDIR(st.st_mode):
                os.rmdir(path)
            elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
                os.unlink(path)
            else:
                raise FailedPrecondition(f"{path!r} is not an empty file or directory; left alone")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise FailedPrecondition(f"cannot remove {path!r}: {exc.strerror}") from exc

    def bind(self, source: str, target: str, *, readonly: bool, flags: int) -> None:
        try:
            with open_nofollow(source) as sfd, open_nofollow(target) as tfd:
                self._call_mount(f"/proc/self/fd/{sfd}", f"/proc/self/fd/{tfd}", MS_BIND)
        except FileNotFoundError as exc:
            raise FailedPrecondition(f"cannot mount {source} on {target}: {exc.strerror}") from exc
        extra = flags | (MS_RDONLY if readonly else 0)
        if extra:
            # A bind mount takes its flags from a remount of the new mount; on failure the
            # half-made mount is undone so that the caller sees nothing mounted.
            try:
                with open_nofollow(target) as tfd:
                    self._call_mount(None, f"/proc/self/fd/{tfd}", MS_BIND | MS_REMOUNT | extra)
            except BaseException:
                self.unmount(target)
                raise

    def unmount(self, target: str) -> None:
        for _ in range(16):
            if not self.is_mounted(target):
                return
            if self._umount2(target.encode(), UMOUNT_NOFOLLOW) != 0:
                err = ctypes.get_errno()
                if err == errno.EINVAL:
                    return
                raise Internal(f"umount {target}: {os.strerror(err)}")
        raise Internal(f"umount {target}: still mounted after 16 unmounts")

    def is_mounted(self, path: str) -> bool:
        with open("/proc/self/mountinfo") as f:
            text = f.read()
        # Most calls ask about a path that appears nowhere: skip parsing the table then.
        if f" {_escape(path)} " not in text:
            return False
        return path in parse_mountinfo(text)

    def mount_points(self) -> set[str]:
        with open("/proc/self/mountinfo") as f:
            return set(parse_mountinfo(f.read()))
