"""nftables for the bridge plugin: masquerade, host ports and MAC spoof checks, as text
batches for ``nft -f -`` (pure builders) and the one seam that runs them.

Layout. One ``inet stowage_cni`` table holds fixed chains and per-purpose sets/maps; an
attachment's rules are *elements* (its addresses, its port mappings), never rules of its own.
So an ADD is one atomic batch: declare the table (idempotent ``add``), rewrite the fixed
chains (``flush`` + re-add, atomic inside the batch), add the elements. A DEL deletes only
elements: each ``delete element`` is preceded by an ``add element`` of the same element in
the same batch, which makes the delete succeed whether or not the element still exists (nft
1.0.6 has no ``destroy``), so DEL is idempotent and never touches rules another pod needs.
The ``bridge stowage_cni`` table does the same for ``macspoofchk``.

Tables of other owners (iptables-nft's ``ip nat``/``ip filter``, kube-proxy's) are never
touched: base chains of several tables on the same hook all run, ordered by priority.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cni_bridge import _nfnl as N
from cni_bridge.config import PortMapping
from cni_bridge.errors import KernelError

if TYPE_CHECKING:
    from cni_bridge.netlink import Nfnl

__all__ = [
    "TABLE",
    "Element",
    "Elements",
    "NftRunner",
    "Runner",
    "add_batch",
    "delete_batch",
    "elements",
    "netlink_batch",
]

TABLE = "stowage_cni"
_T = f"inet {TABLE}"
_B = f"bridge {TABLE}"

# Bump with any change to _DECLARE or _CHAINS: an ADD that finds the marker set of the
# current schema skips declaring (an nft batch of only elements costs ~2 ms, not ~15 ms).
SCHEMA_MARKER = "schema_1"

_DECLARE = f"""add table {_T}
add set {_T} masq4 {{ type ipv4_addr; }}
add set {_T} masq6 {{ type ipv6_addr; }}
add set {_T} local4 {{ type ipv4_addr . ipv4_addr; flags interval; }}
add set {_T} local6 {{ type ipv6_addr . ipv6_addr; flags interval; }}
add map {_T} hp4 {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
add map {_T} hp6 {{ type inet_proto . inet_service : ipv6_addr . inet_service; }}
add map {_T} hp4ip {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
add map {_T} hp6ip {{ type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }}
add set {_T} hairpin4 {{ type ipv4_addr . ipv4_addr; }}
add set {_T} hairpin6 {{ type ipv6_addr . ipv6_addr; }}
add set {_T} hpdst4 {{ type ipv4_addr; }}
add table {_B}
add set {_B} spoofchk {{ type ifname; }}
add set {_B} macs {{ type ifname . ether_addr; }}
"""

# Rewritten on every ADD so that a table left by an older version gets today's rules.
_NAT = "type nat hook"
_CHAINS = f"""add chain {_T} postrouting {{ {_NAT} postrouting priority srcnat; policy accept; }}
add chain {_T} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain {_T} output {{ type nat hook output priority -100; policy accept; }}
add chain {_T} hostports
flush chain {_T} postrouting
flush chain {_T} prerouting
flush chain {_T} output
flush chain {_T} hostports
add rule {_T} postrouting ct status dnat ip saddr . ip daddr @hairpin4 masquerade
add rule {_T} postrouting ct status dnat ip saddr 127.0.0.0/8 ip daddr @hpdst4 masquerade
add rule {_T} postrouting ct status dnat ip6 saddr . ip6 daddr @hairpin6 masquerade
add rule {_T} postrouting ip saddr . ip daddr @local4 return
add rule {_T} postrouting ip saddr @masq4 ip daddr != 224.0.0.0/4 masquerade
add rule {_T} postrouting ip6 saddr . ip6 daddr @local6 return
add rule {_T} postrouting ip6 saddr @masq6 ip6 daddr != ff00::/8 masquerade
add rule {_T} prerouting fib daddr type local jump hostports
add rule {_T} output fib daddr type local jump hostports
add rule {_T} hostports dnat ip to ip daddr . meta l4proto . th dport map @hp4ip
add rule {_T} hostports dnat ip to meta l4proto . th dport map @hp4
add rule {_T} hostports dnat ip6 to ip6 daddr . meta l4proto . th dport map @hp6ip
add rule {_T} hostports dnat ip6 to meta l4proto . th dport map @hp6
add chain {_B} prerouting {{ type filter hook prerouting priority -300; policy accept; }}
flush chain {_B} prerouting
add rule {_B} prerouting iifname . ether saddr @macs return
add rule {_B} prerouting iifname @spoofchk drop
add set {_T} {SCHEMA_MARKER} {{ type ipv4_addr; }}
"""


@dataclass(frozen=True)
class Element:
    """One element of one of our sets or maps, in both of nftables' languages: ``text`` for
    ``nft -f`` and the kernel's bytes (``key``, ``key_end`` for a range, ``data`` for a map)
    for a netlink batch (``_nfnl``)."""

    family: str  # "inet" or "bridge"
    set: str
    text: str
    key: bytes
    key_end: bytes = b""
    data: bytes = b""

    @property
    def table(self) -> str:
        return f"{self.family} {TABLE}"


@dataclass(frozen=True)
class Elements:
    """The nftables footprint of one attachment."""

    items: tuple[Element, ...]

    def __bool__(self) -> bool:
        return bool(self.items)


def elements(
    ips: Sequence[str],
    masq: bool,
    port_mappings: Sequence[PortMapping],
    spoof_iface: str = "",
    spoof_mac: str = "",
) -> Elements:
    """What an attachment with addresses ``ips`` (CIDRs) puts into our sets and maps."""
    out: list[Element] = []
    for cidr in ips:
        iface = ipaddress.ip_interface(cidr)
        fam = str(iface.version)
        ip = str(iface.ip)
        raw = iface.ip.packed
        if masq:
            out.append(Element("inet", f"masq{fam}", ip, raw))
            net = iface.network
            out.append(Element("inet", f"local{fam}", f"{ip} . {net}",
                               N.concat(raw, net.network_address.packed),
                               N.concat(raw, net.broadcast_address.packed)))
        if port_mappings:
            # hairpin: a pod reaching its own host port must see the reply come back from
            # the host address, so that traffic is masqueraded; so is traffic from 127/8.
            out.append(Element("inet", f"hairpin{fam}", f"{ip} . {ip}", N.concat(raw, raw)))
            if iface.version == 4:
                out.append(Element("inet", "hpdst4", ip, raw))
        for pm in port_mappings:
            target = N.concat(raw, N.inet_service(pm.container_port))
            service = N.concat(N.inet_proto(pm.protocol), N.inet_service(pm.host_port))
            if pm.host_ip:
                if ipaddress.ip_address(pm.host_ip).version != iface.version:
                    continue
                out.append(Element(
                    "inet", f"hp{fam}ip",
                    f"{pm.host_ip} . {pm.protocol} . {pm.host_port} : {ip} . {pm.container_port}",
                    N.concat(N.ip_addr(pm.host_ip), service), data=target))
            else:
                out.append(Element(
                    "inet", f"hp{fam}",
                    f"{pm.protocol} . {pm.host_port} : {ip} . {pm.container_port}",
                    service, data=target))
    if spoof_iface:
        out.append(Element("bridge", "spoofchk", f'"{spoof_iface}"', N.ifname(spoof_iface)))
        out.append(Element("bridge", "macs", f'"{spoof_iface}" . {spoof_mac}',
                           N.concat(N.ifname(spoof_iface), N.ether(spoof_mac))))
    return Elements(tuple(out))


def add_batch(els: Elements, declared: bool = False) -> str:
    """The ADD batch; ``declared`` (the schema marker exists) leaves out the tables."""
    lines = [] if declared else [_DECLARE, _CHAINS]
    lines += [f"add element {e.table} {e.set} {{ {e.text} }}" for e in els.items]
    return "\n".join(lines) + "\n"


def delete_batch(els: Elements, declared: bool = False) -> str:
    """The DEL batch; without ``declared`` it declares the sets first, so that it also
    succeeds on a host whose ruleset was flushed since the ADD."""
    lines = [] if declared else [_DECLARE]
    for e in els.items:
        lines.append(f"add element {e.table} {e.set} {{ {e.text} }}")
        lines.append(f"delete element {e.table} {e.set} {{ {_key(e.text)} }}")
    return "\n".join(lines) + "\n"


def _key(element: str) -> str:
    # A map element is "key : value"; delete names only the key.
    return element.split(" : ", 1)[0]


class NftRunner(Protocol):
    def add(self, els: Elements) -> None:
        """Put ``els`` into our sets and maps in one transaction, declaring our tables first
        when they are missing or of an older schema; ``KernelError`` with the reason."""
        ...

    def delete(self, els: Elements) -> Callable[[], None]:
        """Start removing ``els``, whether or not they are still there; the returned
        function waits for the removal (raising like ``add``), so that a DEL can overlap a
        slow removal with the veth's own."""
        ...

    def available(self) -> bool: ...


class Runner:
    """The real ``NftRunner``. Elements go to the kernel as one netlink batch (``_nfnl``)
    when our tables exist in today's schema, which is every call but the first on a host;
    everything else (declaring the tables, and any batch the kernel refuses, so that the
    error comes with nft's explanation) is an ``nft -f -`` batch, run with
    ``os.posix_spawn`` (``subprocess`` alone costs ~9 ms to import)."""

    def __init__(self, nft: str = "", use_netlink: bool = True) -> None:
        self.nft = nft or _find_nft()
        self.use_netlink = use_netlink
        self.fallbacks = 0  # netlink batches that failed (and went through nft instead)

    def available(self) -> bool:
        return os.access(self.nft, os.X_OK)

    def add(self, els: Elements) -> None:
        nl = self._netlink(els, delete=False)
        if nl is not None:
            nl.close()
            return
        self.run(add_batch(els))

    def delete(self, els: Elements) -> Callable[[], None]:
        nl = self._netlink(els, delete=True)
        if nl is not None:
            # Closing a netfilter socket after a commit that removed elements waits for the
            # kernel to free them (an RCU grace period, ~10 ms here): the caller closes it
            # after removing the veth, which waits for one of its own meanwhile.
            return nl.close
        return self.begin(delete_batch(els))

    def _netlink(self, els: Elements, delete: bool) -> Nfnl | None:
        """Apply ``els`` over netlink and return the still open socket; None when nft
        must do it (tables missing or of an older schema, or the kernel refused: the
        transaction then changed nothing)."""
        if not self.use_netlink:
            return None
        from cni_bridge.netlink import NetlinkError, Nfnl

        try:
            nl = Nfnl()
        except OSError:
            self.fallbacks += 1
            return None
        try:
            if not nl.set_exists(N.NFPROTO_INET, TABLE, SCHEMA_MARKER):
                nl.close()
                return None
            data, acks = netlink_batch(els, delete)
            nl.batch(data, acks)
        except (OSError, NetlinkError):
            nl.close()
            self.fallbacks += 1
            return None
        return nl

    def run(self, batch: str) -> None:
        self.begin(batch)()

    def begin(self, batch: str) -> Callable[[], None]:
        """Start ``nft -f -`` on ``batch``; the returned function reaps it."""
        in_r, in_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            pid = os.posix_spawn(
                self.nft,
                [self.nft, "-f", "-"],
                {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, in_r, 0),
                    (os.POSIX_SPAWN_DUP2, err_w, 2),
                    (os.POSIX_SPAWN_CLOSE, in_w),
                    (os.POSIX_SPAWN_CLOSE, err_r),
                ],
            )
        except OSError as exc:
            for fd in (in_r, in_w, err_r, err_w):
                os.close(fd)
            raise KernelError(f"cannot run {self.nft}", str(exc)) from exc
        os.close(in_r)
        os.close(err_w)
        try:
            data = batch.encode()
            while data:
                data = data[os.write(in_w, data):]
        except BrokenPipeError:
            pass  # nft died early: its stderr says why
        finally:
            os.close(in_w)

        def wait() -> None:
            chunks = []
            while chunk := os.read(err_r, 65536):
                chunks.append(chunk)
            os.close(err_r)
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                msg = b"".join(chunks).decode(errors="replace").strip()
                raise KernelError("nftables rejected the batch", msg)

        return wait


def netlink_batch(els: Elements, delete: bool) -> tuple[bytes, dict[int, str]]:
    """The netlink form of ``add_batch`` (or ``delete_batch``: each delete preceded by an
    add of the same element, so it succeeds whether or not the element is there), with
    what each acknowledged message does, by sequence number."""
    msgs: list[bytes] = []
    acks: dict[int, str] = {}
    seq = 1
    for e in els.items:
        fam = N.FAMILIES[e.family]
        kinds = (N.NEWSETELEM, N.DELSETELEM) if delete else (N.NEWSETELEM,)
        for kind in kinds:
            seq += 1
            verb = "add" if kind == N.NEWSETELEM else "delete"
            msgs.append(N.setelem(kind, fam, TABLE, e.set, seq, e.key, e.key_end, e.data))
            acks[seq] = f"{verb} element {e.table} {e.set} {{ {e.text} }}"
    return N.batch(msgs, 1), acks


def _find_nft() -> str:
    for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        path = os.path.join(d, "nft")
        if os.access(path, os.X_OK):
            return path
    return "/usr/sbin/nft"
