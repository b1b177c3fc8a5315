"""Theory of operation: the bridge plugin's verbs.

ADD   bridge (create or adopt) -> IPAM -> veth pair, host end on the bridge -> container
      addresses and routes -> gateway address on the bridge -> attachment record -> one
      nftables batch. Every step registers its undo on an ``ExitStack`` as it is taken; a
      failure unwinds them (release the IPs, delete the veth, drop the record and the
      nftables elements) and the error leaves with nothing half-done. The bridge itself is
      shared by all pods and is never removed.
DEL   record (if any) -> nftables elements -> veth (by its name, derived from the
      attachment, so it is found even without a record) -> IPAM release -> record. Every
      step tolerates "already gone", so DEL is idempotent, works without the namespace,
      and finishes the job after a crash at any point of an ADD. The record goes last:
      if any step fails, a repeated DEL still knows what to remove.
CHECK the container interface, its addresses and routes against ``prevResult``, the host
      end on the bridge, and the IPAM allocation.
GC    every attachment with a record but not in ``cni.dev/valid-attachments`` is DELeted,
      then IPAM collects its own garbage.
STATUS IPAM's status (no free address -> 50), and nft must be runnable when rules are used.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cni_bridge import nft
from cni_bridge.config import NetConf
from cni_bridge.errors import (
    AddressInUse,
    CNIError,
    InvalidConfig,
    KernelError,
    NetnsGone,
    PluginNotAvailable,
    UnknownContainer,
)
from cni_bridge.netlink import Link, Netlink
from cni_bridge.record import Record, RecordStore
from cni_bridge.skel import Request
from cni_bridge.types import Interface, IPConfig, Result, Route

__all__ = ["Deps", "Ipam", "add", "check", "delete", "gc", "host_veth_name", "status"]


class Ipam(Protocol):
    def add(self, conf: Mapping[str, Any]) -> Result: ...
    def delete(self, conf: Mapping[str, Any]) -> None: ...
    def check(self, conf: Mapping[str, Any]) -> None: ...
    def status(self, conf: Mapping[str, Any]) -> None: ...
    def gc(self, conf: Mapping[str, Any]) -> None: ...


@dataclass
class Deps:
    """The I/O the verbs need, injected: real ones from ``main``, fakes in unit tests."""

    host: Netlink
    open_netns: Callable[[str], int]  # NetnsGone when missing; never creates
    netlink_in: Callable[[int], Netlink]
    nft: nft.NftRunner
    ipam: Ipam | None
    sysctl: Callable[[str, str], None]
    log: Callable[[str], None] = lambda msg: print(f"stowage-bridge: {msg}", file=sys.stderr)


def host_veth_name(network: str, cid: str, ifname: str) -> str:
    """Derived from the attachment, so DEL finds it without any state (15 bytes max)."""
    digest = hashlib.sha256(f"{network}\0{cid}\0{ifname}".encode()).hexdigest()
    return "veth" + digest[:11]


def _quietly(deps: Deps, what: str, fn: Callable[[], object]) -> bool:
    """Run one undo step; never raise from cleanup (the error being unwound matters more)."""
    try:
        fn()
        return True
    except Exception as exc:
        deps.log(f"cleanup failed ({what}): {exc}")
        return False


@contextlib.contextmanager
def _container(deps: Deps, path: str) -> Iterator[tuple[int, Netlink]]:
    fd = deps.open_netns(path)
    try:
        nl = deps.netlink_in(fd)
        try:
            yield fd, nl
        finally:
            nl.close()
    finally:
        if fd >= 0:  # fakes hand out -1
            os.close(fd)


# --- ADD -------------------------------------------------------------------------------
def _ensure_bridge(deps: Deps, nc: NetConf) -> Link:
    deps.host.create_bridge(nc.bridge, nc.mtu, nc.vlan_filtering)
    br = deps.host.link(nc.bridge)
    if br is None:
        raise KernelError(f"bridge {nc.bridge} vanished right after creation")
    if br.kind != "bridge":
        raise InvalidConfig(f"{nc.bridge} already exists but is not a bridge ({br.kind!r})")
    if not br.up or (nc.promisc_mode and not br.promisc):
        deps.host.set_link(br.index, up=True, promisc=True if nc.promisc_mode else None)
    return br


def _ensure_gateway(deps: Deps, nc: NetConf, br: Link, ips: tuple[IPConfig, ...]) -> None:
    have = deps.host.addresses(br.index)
    for ipc in ips:
        if not ipc.gateway:
            continue
        want = ipaddress.ip_interface(f"{ipc.gateway}/{ipc.address.split('/')[1]}")
        for a in have:
            cur = ipaddress.ip_interface(a.cidr)
            if cur == want:
                break
            if cur.version == want.version and (
                cur.ip in want.network or want.ip in cur.network
            ):
                if not nc.force_address:
                    raise AddressInUse(
                        f"{nc.bridge} already has address {cur}, not {want}",
                        "set forceAddress to replace it",
                    )
                deps.host.del_address(br.index, a.cidr)
        else:
            deps.host.add_address(br.index, str(want), nodad=True)
        if want.version == 4:
            deps.sysctl("/proc/sys/net/ipv4/ip_forward", "1")
        else:
            deps.sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")


def _routes(
    nc: NetConf, ips: tuple[IPConfig, ...], routes: tuple[Route, ...]
) -> tuple[tuple[Route, ...], tuple[Route, ...]]:
    """(routes for the result, routes for the kernel). The result repeats IPAM's routes as
    given, plus a default route per family for ``isDefaultGateway`` (as the reference
    reports them); in the kernel a route without a gateway goes via the same family's
    gateway, as the reference installs it."""
    gws = {ipaddress.ip_address(i.gateway).version: i.gateway for i in ips if i.gateway}
    result = list(routes)
    if nc.is_default_gateway:
        for fam, gw in sorted(gws.items()):
            dst = "0.0.0.0/0" if fam == 4 else "::/0"
            if not any(r.dst == dst for r in result):
                result.append(Route(dst, gw))
    kernel = [Route(r.dst, r.gw or gws.get(ipaddress.ip_network(r.dst).version, ""))
              for r in result]
    return tuple(result), tuple(kernel)


def _elements(rec: Record) -> nft.Elements:
    return nft.elements(rec.ips, rec.masq, rec.port_mappings,
                        rec.host_veth if rec.spoof_mac else "", rec.spoof_mac)


def add(conf: Mapping[str, Any], nc: NetConf, req: Request, deps: Deps,
        records: RecordStore) -> Result:
    host_veth = host_veth_name(nc.name, req.container_id, req.ifname)
    with contextlib.ExitStack() as undo, _container(deps, req.netns) as (ns_fd, cnl):
        if deps.host.link(host_veth) is not None or records.read(req.container_id, req.ifname):
            raise AddressInUse(
                f"attachment {req.container_id}/{req.ifname} already exists on {nc.name}",
                "DEL it before adding it again",
            )
        if cnl.link(req.ifname) is not None:
            raise AddressInUse(f"container already has an interface named {req.ifname}")
        br = _ensure_bridge(deps, nc)

        ipam_res = Result()
        if deps.ipam is not None:
            ipam = deps.ipam
            ipam_res = ipam.add(conf)
            undo.callback(_quietly, deps, "IPAM release", lambda: ipam.delete(conf))
        ips = tuple(IPConfig(i.address, i.gateway, 2) for i in ipam_res.ips)
        routes, kernel_routes = _routes(nc, ips, ipam_res.routes)

        deps.host.create_veth(host_veth, req.ifname, ns_fd, nc.mtu, nc.mac)
        undo.callback(_quietly, deps, "veth", lambda: deps.host.delete_link(host_veth))
        hv = deps.host.link(host_veth)
        cv = cnl.link(req.ifname)
        if hv is None or cv is None:
            raise KernelError(f"veth pair {host_veth}/{req.ifname} vanished after creation")
        deps.host.set_link(hv.index, master=br.index, up=True)
        if nc.hairpin_mode:
            deps.host.set_hairpin(hv.index, True)
        if nc.vlan:
            deps.host.set_vlan(hv.index, nc.vlan, add=True, pvid=True, untagged=True)
        for t in nc.vlan_trunk:
            deps.host.set_vlan(hv.index, t.lo, vid_end=t.hi, add=True, pvid=False,
                               untagged=False)
        if nc.vlan_filtering and not nc.preserve_default_vlan:
            deps.host.set_vlan(hv.index, 1, add=False, pvid=False, untagged=False)

        if not nc.disable_container_interface:
            cnl.set_link(cv.index, up=True)
            for ipc in ips:
                v6 = ipaddress.ip_interface(ipc.address).version == 6
                cnl.add_address(cv.index, ipc.address, nodad=v6 and not nc.enable_dad)
            for r in kernel_routes:
                cnl.add_route(r.dst, r.gw, cv.index)
        if nc.is_gateway:
            _ensure_gateway(deps, nc, br, ips)
        if nc.port_mappings:
            # 127.0.0.1:hostPort is DNATed to a pod: the kernel routes such packets out of
            # the bridge only with route_localnet (our masquerade rule then rewrites them).
            deps.sysctl(f"/proc/sys/net/ipv4/conf/{nc.bridge}/route_localnet", "1")

        rec = Record(
            container_id=req.container_id,
            ifname=req.ifname,
            bridge=nc.bridge,
            host_veth=host_veth,
            ips=tuple(i.address for i in ips),
            masq=nc.ip_masq,
            port_mappings=nc.port_mappings,
            spoof_mac=cv.mac if nc.mac_spoof_check else "",
        )
        els = _elements(rec)
        records.write(rec)
        # The record goes only if the nftables elements it describes are gone too.
        nft_clean = [True]
        undo.callback(
            lambda: nft_clean[0]
            and _quietly(deps, "record", lambda: records.remove(req.container_id, req.ifname))
        )
        if els:
            deps.nft.add(els)

            def undo_nft() -> None:
                nft_clean[0] = _quietly(deps, "nftables", lambda: deps.nft.delete(els)())

            undo.callback(undo_nft)
        br_now = deps.host.link(nc.bridge) or br
        undo.pop_all()
    ifaces = (
        Interface(br_now.name, br_now.mac),
        Interface(hv.name, hv.mac),
        Interface(req.ifname, cv.mac, req.netns),
    )
    own_dns = nc.dns.nameservers or nc.dns.domain or nc.dns.search or nc.dns.options
    return Result(ifaces, ips, routes, nc.dns if own_dns else ipam_res.dns)


# --- DEL -------------------------------------------------------------------------------
def _teardown(conf: Mapping[str, Any], nc: NetConf, cid: str, ifname: str, netns: str,
              deps: Deps, records: RecordStore) -> None:
    try:
        rec = records.read(cid, ifname)
    except CNIError as exc:
        deps.log(f"{exc.msg}: {exc.details}; removing what can be found without it")
        rec = None
    nft_done: Callable[[], None] | None = None
    if rec is not None:
        els = _elements(rec)
        if els:
            nft_done = deps.nft.delete(els)
    host_veth = rec.host_veth if rec else host_veth_name(nc.name, cid, ifname)
    try:
        gone = deps.host.delete_link(host_veth)
    finally:
        if nft_done is not None:
            nft_done()  # always reaped; its error fails this DEL and the record stays
    if not gone and netns:
        # No host end: if the pod's end survived on its own (it cannot, for a veth pair,
        # unless another tool moved it), remove it too; a missing netns is fine.
        with contextlib.suppress(NetnsGone), _container(deps, netns) as (_fd, cnl):
            cur = cnl.link(ifname)
            if cur is not None and cur.kind == "veth":
                cnl.delete_link(ifname)
    if deps.ipam is not None:
        deps.ipam.delete(conf)
    records.remove(cid, ifname)


def delete(conf: Mapping[str, Any], nc: NetConf, req: Request, deps: Deps,
           records: RecordStore) -> None:
    _teardown(conf, nc, req.container_id, req.ifname, req.netns, deps, records)


# --- CHECK -----------------------------------------------------------------------------
def check(conf: Mapping[str, Any], nc: NetConf, req: Request, deps: Deps,
          records: RecordStore) -> None:
    prev = nc.prev_result
    if prev is None:
        raise InvalidConfig("CHECK needs prevResult")
    br = deps.host.link(nc.bridge)
    if br is None or br.kind != "bridge":
        raise UnknownContainer(f"bridge {nc.bridge} does not exist")
    rec = records.read(req.container_id, req.ifname)
    host_veth = rec.host_veth if rec else host_veth_name(nc.name, req.container_id, req.ifname)
    hv = deps.host.link(host_veth)
    if hv is None or hv.master != br.index:
        raise UnknownContainer(f"host interface {host_veth} is missing or not on {nc.bridge}")
    mine = [i for i, itf in enumerate(prev.interfaces) if itf.name == req.ifname and itf.sandbox]
    with _container(deps, req.netns) as (_fd, cnl):
        cv = cnl.link(req.ifname)
        if cv is None:
            raise UnknownContainer(f"interface {req.ifname} not found in {req.netns}")
        for idx in mine:
            want_mac = prev.interfaces[idx].mac
            if want_mac and want_mac.lower() != cv.mac:
                raise UnknownContainer(f"{req.ifname} has MAC {cv.mac}, expected {want_mac}")
        have = {a.cidr for a in cnl.addresses(cv.index)}
        for ipc in prev.ips:
            if (ipc.interface is None or ipc.interface in mine) and str(
                ipaddress.ip_interface(ipc.address)
            ) not in have:
                raise UnknownContainer(f"{req.ifname} lacks address {ipc.address}")
        for r in prev.routes:
            fam = ipaddress.ip_network(r.dst).version
            table = cnl.routes(2 if fam == 4 else 10)
            if not any(e.dst == r.dst and (not r.gw or e.gw == r.gw) for e in table):
                raise UnknownContainer(f"route {r.dst} via {r.gw or '-'} missing in container")
    if deps.ipam is not None:
        deps.ipam.check(conf)


# --- GC and STATUS ---------------------------------------------------------------------
def gc(conf: Mapping[str, Any], nc: NetConf, valid: set[tuple[str, str]], deps: Deps,
       records: RecordStore) -> None:
    errors = []
    # Stale attachments' addresses are freed by IPAM's own GC below, with the same list.
    no_ipam = Deps(deps.host, deps.open_netns, deps.netlink_in, deps.nft, None, deps.sysctl,
                   deps.log)
    for cid, ifname, _rec in records.all():
        if (cid, ifname) in valid:
            continue
        try:
            _teardown(conf, nc, cid, ifname, "", no_ipam, records)
        except CNIError as exc:
            errors.append(f"{cid}/{ifname}: {exc.msg}")
    if deps.ipam is not None:
        deps.ipam.gc(conf)
    if errors:
        raise CNIError("GC could not remove every stale attachment", "; ".join(errors))


def status(conf: Mapping[str, Any], nc: NetConf, deps: Deps) -> None:
    if deps.ipam is not None:
        deps.ipam.status(conf)
    if (nc.ip_masq or nc.port_mappings or nc.mac_spoof_check) and not deps.nft.available():
        raise PluginNotAvailable("nftables is not available: ipMasq and portMappings need it")
