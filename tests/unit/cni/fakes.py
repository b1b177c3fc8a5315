"""Hand-written fakes of the bridge plugin's seams: an in-memory kernel (links, addresses,
routes in several namespaces) and an nftables that keeps the elements it was given."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace

from cni_bridge.errors import KernelError, NetnsGone
from cni_bridge.netlink import Addr, Link, NetlinkError, RouteEntry
from cni_bridge.nft import Elements

_counter = itertools.count(10)


class FakeKernel:
    """Namespaces by path; ``fail`` names methods that raise (fault injection per test)."""

    def __init__(self) -> None:
        self.host = FakeNetlink(self, "host")
        self.namespaces: dict[str, FakeNetlink] = {}
        self.fail: set[str] = set()
        self.sysctls: dict[str, str] = {}

    def add_netns(self, path: str) -> None:
        self.namespaces[path] = FakeNetlink(self, path)

    def open_netns(self, path: str) -> int:
        if path not in self.namespaces:
            raise NetnsGone(f"network namespace {path} does not exist")
        return -1 - list(self.namespaces).index(path) - 1  # negative: never os.close()d

    def netlink_in(self, fd: int) -> FakeNetlink:
        return list(self.namespaces.values())[-fd - 2]

    def sysctl(self, path: str, value: str) -> None:
        self.sysctls[path] = value


class FakeNetlink:
    def __init__(self, kernel: FakeKernel, name: str) -> None:
        self.kernel = kernel
        self.name = name
        self.links: dict[str, Link] = {}
        self.peers: dict[str, tuple[FakeNetlink, str]] = {}
        self.addrs: list[Addr] = []
        self.route_table: list[RouteEntry] = []
        self.hairpin: set[int] = set()
        self.vlans: dict[int, set[tuple[int, bool, bool]]] = {}

    def _maybe_fail(self, what: str) -> None:
        if what in self.kernel.fail:
            raise KernelError(f"injected failure in {what}")

    def _new(self, name: str, kind: str, mtu: int, mac: str = "") -> Link:
        n = next(_counter)
        link = Link(n, name, kind, mtu or 1500, mac or f"02:00:00:00:00:{n:02x}", 0, False, False)
        self.links[name] = link
        return link

    def _by_index(self, index: int) -> Link:
        for link in self.links.values():
            if link.index == index:
                return link
        raise NetlinkError(19, f"no link {index}")

    def link(self, name: str) -> Link | None:
        return self.links.get(name)

    def create_bridge(self, name: str, mtu: int, vlan_filtering: bool) -> bool:
        self._maybe_fail("create_bridge")
        if name in self.links:
            return False
        self._new(name, "bridge", mtu)
        return True

    def create_veth(
        self, name: str, peer: str, peer_netns_fd: int, mtu: int, peer_mac: str
    ) -> None:
        self._maybe_fail("create_veth")
        other = self.kernel.netlink_in(peer_netns_fd)
        if name in self.links or peer in other.links:
            raise NetlinkError(17, "exists")
        self._new(name, "veth", mtu)
        other._new(peer, "veth", mtu, peer_mac)
        self.peers[name] = (other, peer)
        other.peers[peer] = (self, name)

    def set_link(
        self,
        index: int,
        *,
        up: bool | None = None,
        master: int | None = None,
        mtu: int | None = None,
        promisc: bool | None = None,
    ) -> None:
        self._maybe_fail("set_link")
        link = self._by_index(index)
        link = replace(
            link,
            up=link.up if up is None else up,
            master=link.master if master is None else master,
            mtu=mtu or link.mtu,
            promisc=link.promisc if promisc is None else promisc,
        )
        self.links[link.name] = link

    def set_hairpin(self, index: int, on: bool) -> None:
        (self.hairpin.add if on else self.hairpin.discard)(index)

    def set_vlan(
        self,
        index: int,
        vid: int,
        *,
        add: bool,
        pvid: bool,
        untagged: bool,
        vid_end: int = 0,
        master: bool = True,
    ) -> None:
        entries = self.vlans.setdefault(index, {(1, True, True)})
        for v in range(vid, (vid_end or vid) + 1):
            if add:
                entries.add((v, pvid, untagged))
            else:
                entries -= {e for e in entries if e[0] == v}

    def delete_link(self, name: str) -> bool:
        link = self.links.pop(name, None)
        if link is None:
            return False
        self.addrs = [a for a in self.addrs if a.index != link.index]
        peer = self.peers.pop(name, None)
        if peer is not None:
            other, pname = peer
            other.peers.pop(pname, None)
            other.delete_link(pname)
        return True

    def addresses(self, index: int) -> list[Addr]:
        return [a for a in self.addrs if a.index == index]

    def add_address(self, index: int, cidr: str, nodad: bool = False) -> None:
        self._maybe_fail("add_address")
        ip, _, plen = cidr.partition("/")
        a = Addr(index, ip, int(plen))
        if a not in self.addrs:
            self.addrs.append(a)

    def del_address(self, index: int, cidr: str) -> None:
        ip, _, plen = cidr.partition("/")
        self.addrs = [a for a in self.addrs if a != Addr(index, ip, int(plen))]

    def routes(self, family: int) -> list[RouteEntry]:
        return [r for r in self.route_table if (":" in r.dst) == (family == 10)]

    def add_route(self, dst: str, gw: str, oif: int) -> None:
        self._maybe_fail("add_route")
        self.route_table.append(RouteEntry(dst, gw, oif, 254))

    def close(self) -> None:
        pass


class FakeNft:
    """Keeps the set of (set, element key) pairs the runner was asked to leave behind."""

    def __init__(self) -> None:
        self.elements: set[tuple[str, str]] = set()
        self.fail = False
        self.calls: list[tuple[str, Elements]] = []

    def available(self) -> bool:
        return True

    def add(self, els: Elements) -> None:
        if self.fail:
            raise KernelError("injected nft failure")
        self.calls.append(("add", els))
        self.elements |= {(e.set, e.text.split(" : ")[0]) for e in els.items}

    def delete(self, els: Elements) -> Callable[[], None]:
        if self.fail:
            raise KernelError("injected nft failure")
        self.calls.append(("delete", els))
        self.elements -= {(e.set, e.text.split(" : ")[0]) for e in els.items}
        return lambda: None
