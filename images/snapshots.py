"""Overlay snapshots: read-only layers keyed by chain id, writable layers keyed by container.

Theory of operation: each layer is unpacked into its own empty directory under ``tmp/`` and
renamed to ``layers/<chain-id-hex>`` once complete, with a ``parent`` file naming the chain id
below it; a layer directory therefore exists only whole, and layers are shared by every image
whose chain reaches them. A container's writable layer (``active/<key>``) holds the overlay
upper and work directories and names its parent layer. Mount descriptions are computed from
the parent chain; the runtime mounts them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator

from images.atomic import atomic_write, file_lock
from images.errors import ImageError, ImageNotFoundError
from images.mount import Mount, overlay_mount

__all__ = ["Snapshotter"]

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _hex(chain_id: str) -> str:
    alg, sep, hexpart = chain_id.partition(":")
    if alg != "sha256" or not sep or not re.fullmatch(r"[0-9a-f]{64}", hexpart):
        raise ImageError(f"invalid chain id {chain_id!r}")
    return hexpart


def _check_key(key: str) -> str:
    if not _KEY.match(key):
        raise ImageError(f"invalid snapshot key {key!r}")
    return key


def _dir_usage(path: str) -> tuple[int, int]:
    total = inodes = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            inodes += 1
            total += st.st_blocks * 512
    return total, inodes


class Snapshotter:
    def __init__(self, root: str) -> None:
        self.root = root
        self._layers = os.path.join(root, "layers")
        self._active = os.path.join(root, "active")
        self._tmp = os.path.join(root, "tmp")
        self._locks = os.path.join(root, "locks")
        for d in (self._layers, self._active, self._tmp, self._locks):
            os.makedirs(d, mode=0o700, exist_ok=True)

    # read-only layers

    def layer_dir(self, chain_id: str) -> str:
        return os.path.join(self._layers, _hex(chain_id))

    def has_layer(self, chain_id: str) -> bool:
        return os.path.isdir(self.layer_dir(chain_id))

    @contextlib.contextmanager
    def extract(self, chain_id: str, parent: str | None) -> Iterator[str | None]:
        """Yields an empty directory to unpack the layer into, or None if it is already there.

        The directory becomes the layer only if the block completes; the caller's exception
        discards it whole.
        """
        final = self.layer_dir(chain_id)
        with file_lock(os.path.join(self._locks, _hex(chain_id))):
            if os.path.isdir(final):
                yield None
                return
            work = os.path.join(self._tmp, uuid.uuid4().hex)
            os.makedirs(os.path.join(work, "fs"), mode=0o755)
            try:
                yield os.path.join(work, "fs")
                atomic_write(os.path.join(work, "parent"), (parent or "").encode())
                os.replace(work, final)
            finally:
                if os.path.exists(work):
                    shutil.rmtree(work, ignore_errors=True)

    def parent(self, chain_id: str) -> str | None:
        try:
            with open(os.path.join(self.layer_dir(chain_id), "parent")) as f:
                return f.read().strip() or None
        except FileNotFoundError as exc:
            raise ImageNotFoundError(f"layer {chain_id} not found") from exc

    def lowerdirs(self, chain_id: str) -> list[str]:
        """The fs directories of a chain, topmost first, as overlayfs wants them."""
        dirs: list[str] = []
        current: str | None = chain_id
        while current is not None:
            dirs.append(os.path.join(self.layer_dir(current), "fs"))
            current = self.parent(current)
        return dirs

    def layers(self) -> list[str]:
        return ["sha256:" + name for name in os.listdir(self._layers)]

    def remove_layer(self, chain_id: str) -> None:
        path = self.layer_dir(chain_id)
        if not os.path.isdir(path):
            return
        # Rename first so a crash never leaves a half-deleted directory under a valid name.
        doomed = os.path.join(self._tmp, "rm-" + uuid.uuid4().hex)
        os.replace(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def layer_usage(self, chain_id: str) -> tuple[int, int]:
        return _dir_usage(self.layer_dir(chain_id))

    # writable layers

    def prepare(self, key: str, parent: str | None) -> list[Mount]:
        """Creates the writable layer ``key`` over the chain ``parent``; idempotent per key."""
        path = os.path.join(self._active, _check_key(key))
        if parent is not None and not self.has_layer(parent):
            raise ImageNotFoundError(f"layer {parent} not found")
        if not os.path.isdir(path):
            work = os.path.join(self._tmp, uuid.uuid4().hex)
            os.makedirs(os.path.join(work, "fs"), mode=0o755)
            os.makedirs(os.path.join(work, "work"), mode=0o700)
            # Atomic (the directory appears whole) but not synced: a new writable layer is
            # empty, and only a power loss could lose it, which also ends every container
            # that could have used it. Syncing it would cost CreateContainer two fsyncs.
            with open(os.path.join(work, "parent"), "x") as f:
                f.write(parent or "")
            try:
                os.rename(work, path)
            except OSError:
                shutil.rmtree(work, ignore_errors=True)
                if not os.path.isdir(path):
                    raise
        return self.mounts(key)

    def mounts(self, key: str) -> list[Mount]:
        path = os.path.join(self._active, _check_key(key))
        try:
            with open(os.path.join(path, "parent")) as f:
                parent = f.read().strip() or None
        except FileNotFoundError as exc:
            raise ImageNotFoundError(f"snapshot {key} not found") from exc
        lowers = self.lowerdirs(parent) if parent else []
        return [overlay_mount(lowers, os.path.join(path, "fs"), os.path.join(path, "work"))]

    def active_dir(self, key: str) -> str:
        """A writable layer's directory: ``fs`` (the overlay upper) and ``work`` are in it."""
        return os.path.join(self._active, _check_key(key))

    def parent_of_active(self, key: str) -> str | None:
        with open(os.path.join(self.active_dir(key), "parent")) as f:
            return f.read().strip() or None

    def active(self) -> dict[str, str | None]:
        """Every writable layer and the chain id it stands on."""
        out: dict[str, str | None] = {}
        for key in os.listdir(self._active):
            try:
                with open(os.path.join(self._active, key, "parent")) as f:
                    out[key] = f.read().strip() or None
            except FileNotFoundError:
                out[key] = None
        return out

    def remove(self, key: str) -> None:
        path = os.path.join(self._active, _check_key(key))
        if os.path.isdir(path):
            doomed = os.path.join(self._tmp, "rm-" + uuid.uuid4().hex)
            os.replace(path, doomed)
            shutil.rmtree(doomed, ignore_errors=True)

    def usage(self, key: str) -> tuple[int, int]:
        return _dir_usage(os.path.join(self._active, _check_key(key), "fs"))

    def sweep(self) -> None:
        """Removes unpacks and removals a crash interrupted (start-up only)."""
        for name in os.listdir(self._tmp):
            shutil.rmtree(os.path.join(self._tmp, name), ignore_errors=True)
