"""Start-up recovery: what a kill -9 in the middle of creating or removing something left.

Records are the truth (see ``store.py``): an object is recorded only once it is whole, and its
record is deleted first when it is removed. Anything on the node that belongs to an id with no
record is therefore a leftover, and is freed here: runc containers, bundles and their rootfs
mounts, writable snapshots, exit files, pod namespaces, infra processes and state directories,
and CNI attachments (a CNI DEL with the cached config, which is also the GC pass libcni
runtimes do).
Pods whose volatile state is gone (a reboot) become NOTREADY. Nothing here raises: a failure
is logged and left for the next start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil

from cri_shim.cni import Cni, CniError, PodNetworkArgs
from cri_shim.netns import unpin_namespaces
from cri_shim.oci.runc import Runc, RuncError
from cri_shim.pods import kill_infra_in
from cri_shim.runtime import Registry
from cri_shim.store import SandboxStatus
from images.mount import unmount
from images.snapshots import Snapshotter

__all__ = ["orphans", "recover"]

log = logging.getLogger("stowage.cri.recover")


def orphans(present: set[str], recorded: set[str]) -> set[str]:
    """Ids found on the node that no record owns (pure)."""
    return present - recorded


def _listdir(path: str) -> set[str]:
    try:
        return set(os.listdir(path))
    except FileNotFoundError:
        return set()


def recover(reg: Registry, runtimes: list[Runc], cni: Cni, snapshots: Snapshotter) -> None:
    containers = set(reg.containers)
    sandboxes = set(reg.sandboxes)
    p = reg.paths
    for runc in runtimes:
        try:
            runc_ids = set(runc.list_ids())
        except RuncError as exc:
            log.error(
                "cannot list containers", extra={"runtime": runc.binary, "error": str(exc)}
            )
            runc_ids = set()
        for cid in orphans(runc_ids, containers):
            log.info("removing leftover container", extra={"id": cid})
            with contextlib.suppress(RuncError):
                runc.delete(cid, force=True)
    for cid in orphans(_listdir(p.bundles), containers):
        bundle = os.path.join(p.bundles, cid)
        with contextlib.suppress(Exception):
            unmount(os.path.join(bundle, "rootfs"))
        shutil.rmtree(bundle, ignore_errors=True)
    for key in orphans(set(snapshots.active()), containers):
        snapshots.remove(key)
    for cid in orphans(_listdir(p.exits), containers):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(p.exits, cid))
    for sid in orphans(cni.attached_ids(), sandboxes):
        log.info("releasing leftover pod network", extra={"id": sid})
        netns = os.path.join(p.namespaces, sid, "net")
        try:
            cni.teardown(PodNetworkArgs(sid, netns if os.path.exists(netns) else "", "", "", ""))
        except CniError as exc:
            log.error("leftover network release failed", extra={"id": sid, "error": str(exc)})
    valid = [(sb.meta.id, "eth0") for sb in reg.sandboxes.values() if sb.status.network_attached]
    try:
        cni.gc(valid)
    except CniError as exc:
        log.error("CNI GC failed", extra={"error": str(exc)})
    for sid in orphans(_listdir(p.namespaces), sandboxes):
        unpin_namespaces(p.namespaces, sid)
    for sid in orphans(_listdir(p.pods), sandboxes):
        state = os.path.join(p.pods, sid)
        kill_infra_in(state)
        with contextlib.suppress(Exception):
            unmount(os.path.join(state, "shm"))
        shutil.rmtree(state, ignore_errors=True)
    for sb in reg.sandboxes.values():
        if sb.status.state == "ready" and not os.path.isdir(sb.meta.state_dir):
            # A reboot took its namespaces and processes: it cannot be ready any more.
            reg.set_sandbox_status(
                sb,
                SandboxStatus(
                    state="notready",
                    ips=sb.status.ips,
                    network_attached=sb.status.network_attached,
                    version=sb.status.version,
                ),
            )
