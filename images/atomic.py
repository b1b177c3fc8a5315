"""Atomic file writes and advisory locks: the one place the image library persists a file.

A write goes to a temporary file in the target's directory, is fsynced, renamed over the target
and the directory is fsynced, so a crash leaves either the old or the new file, never a torn one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator

__all__ = ["atomic_write", "file_lock", "fsync_dir", "write_new"]


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, mode: int = 0o644) -> None:
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def write_new(path: str, data: bytes, mode: int = 0o644, sync: bool = True) -> None:
    """Writes (and fsyncs, with ``sync``) a file that no reader can see yet: one inside a
    private staging directory that is renamed into place whole afterwards. No temporary name
    is needed there, and the caller fsyncs the staging directory once for all its files."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
    """An exclusive flock on ``path``: serialises processes as well as threads."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
