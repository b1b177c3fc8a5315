"""Mount descriptions for snapshots (pure) and the one function that performs them (shell)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from images.errors import ImageError

__all__ = ["Mount", "mount_all", "overlay_mount", "unmount"]


@dataclass(frozen=True)
class Mount:
    """One mount(2) call, in the shape the OCI runtime spec's ``mounts`` entries take."""

    type: str
    source: str
    options: tuple[str, ...]


def overlay_mount(lowers: list[str], upper: str | None = None, work: str | None = None) -> Mount:
    """The overlay mount of ``lowers`` (topmost first) with an optional writable upper layer.

    With no upper and one lower a read-only bind is enough: overlayfs refuses a single lower
    without an upper, and a bind is cheaper anyway.
    """
    if not lowers and upper is None:
        raise ImageError("a snapshot mount needs at least one layer")
    if upper is None:
        if len(lowers) == 1:
            return Mount("bind", lowers[0], ("ro", "rbind"))
        return Mount("overlay", "overlay", ("ro", "lowerdir=" + ":".join(lowers)))
    if work is None:
        raise ImageError("an overlay with an upper layer needs a work directory")
    if not lowers:
        # A container of an image with no layers: its root is just the writable directory.
        return Mount("bind", upper, ("rw", "rbind"))
    opts = ("index=off", "lowerdir=" + ":".join(lowers), f"upperdir={upper}", f"workdir={work}")
    return Mount("overlay", "overlay", opts)


def mount_all(mounts: list[Mount], target: str) -> None:
    for m in mounts:
        opts = ",".join(o for o in m.options if o != "rbind")
        args = ["mount", "-t", m.type, "-o", opts, m.source, target]
        if m.type == "bind":
            args = ["mount", "--rbind", "-o", opts, m.source, target]
        res = subprocess.run(args, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise ImageError(f"mount {m.type} on {target}: {res.stderr.strip()}")


def unmount(target: str) -> None:
    res = subprocess.run(["umount", "-R", target], capture_output=True, text=True, check=False)
    if res.returncode != 0 and "not mounted" not in res.stderr:
        raise ImageError(f"umount {target}: {res.stderr.strip()}")
