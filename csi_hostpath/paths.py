"""Validation of everything a caller names: ids, names and host paths (pure, no filesystem).

Ids are only ever looked up in the driver's state; a path under the driver's root is derived
from an id the driver generated itself, never from request text. These checks are the first
fence: a hostile id (``..``, ``/etc``, NUL, 4 kB of junk) is refused before any lookup, and a
host path must be normalized, absolute, under a prefix the operator allowed (the kubelet's
directory by default) and must neither contain nor shadow the driver's root. The second fence
is in ``mounts.py``: paths are opened component by component without following symlinks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from csi_hostpath.errors import InvalidArgument

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "check_host_path",
    "check_id",
    "check_name",
    "is_valid_id",
    "is_within",
]

# Ids we generate are uuid hex; kubelet's ephemeral ids are "csi-" + sha256 hex. Anything a
# client could use to walk a path ("/", "..", a leading ".") is outside this alphabet.
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096


def is_valid_id(value: str) -> bool:
    return _ID_RE.fullmatch(value) is not None


def check_id(kind: str, value: str) -> str:
    if not value:
        raise InvalidArgument(f"{kind} is required")
    if not is_valid_id(value):
        raise InvalidArgument(
            f"{kind} {value[:80]!r} is not a valid id "
            "(1-128 characters of [A-Za-z0-9._-], starting with a letter or digit)"
        )
    return value


def check_name(kind: str, value: str) -> str:
    """Names are stored as data, never used as paths; still bounded and free of control
    characters so that they cannot corrupt logs."""
    if not value:
        raise InvalidArgument(f"{kind} is required")
    if len(value.encode()) > MAX_NAME_BYTES:
        raise InvalidArgument(f"{kind} is longer than {MAX_NAME_BYTES} bytes")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidArgument(f"{kind} contains control characters")
    return value


def is_within(path: str, directory: str) -> bool:
    """True if ``path`` is ``directory`` or below it (both normalized absolute paths)."""
    directory = directory.rstrip("/") or "/"
    return path == directory or path.startswith(directory if directory == "/" else directory + "/")


def check_host_path(kind: str, path: str, *, driver_root: str, allowed: Iterable[str]) -> str:
    if not path:
        raise InvalidArgument(f"{kind} is required")
    if "\0" in path or len(path.encode()) > MAX_PATH_BYTES:
        raise InvalidArgument(f"{kind} is not a valid path")
    if not path.startswith("/") or os.path.normpath(path) != path or path.startswith("//"):
        raise InvalidArgument(f"{kind} {path!r} must be a normalized absolute path")
    if path == "/":
        raise InvalidArgument(f"{kind} must not be /")
    if is_within(path, driver_root) or is_within(driver_root, path):
        raise InvalidArgument(f"{kind} {path!r} overlaps the driver's root directory")
    if not any(is_within(path, prefix) and path != prefix for prefix in allowed):
        raise InvalidArgument(f"{kind} {path!r} is outside the allowed directories")
    return path
