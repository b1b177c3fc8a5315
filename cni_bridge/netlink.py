"""The netlink seam: a small ``Netlink`` protocol, its real implementation over an
``AF_NETLINK`` socket (stdlib only, see ``_rtnl``), and the only code that enters network
namespaces.

Design note on namespaces. A netlink socket belongs to the namespace its creator was in when
it was created, for its whole life. So the plugin enters the pod's namespace only long
enough to create one socket (``setns`` there and straight back), and then talks to both
namespaces through two sockets. That is safe only in a single-threaded process, which a CNI
plugin process is (and an agent's per-request child is): ``_single_threaded`` refuses
otherwise. A namespace path is opened with ``open(2)``, which fails on a missing path; it
never creates one (the trap of some libraries' ``netns=`` helpers, fatal for a DEL).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from cni_bridge import _nfnl as N
from cni_bridge import _rtnl as R
from cni_bridge.errors import KernelError, NetnsGone

__all__ = [
    "Addr",
    "Link",
    "Netlink",
    "NetlinkError",
    "Nfnl",
    "RouteEntry",
    "Rtnl",
    "netns_inode",
    "open_in_netns",
    "open_netns",
    "preload",
]

CLONE_NEWNET = 0x40000000
_SOL_NETLINK, _NETLINK_GET_STRICT_CHK = 270, 12
_GETS = (R.RTM_GETLINK, R.RTM_GETADDR, R.RTM_GETROUTE)


class NetlinkError(KernelError):
    def __init__(self, err: int, what: str) -> None:
        super().__init__(f"{what}: {os.strerror(err)}", f"errno {err}")
        self.errno = err


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str
    mtu: int
    mac: str
    master: int
    up: bool
    promisc: bool


@dataclass(frozen=True)
class Addr:
    index: int
    address: str
    prefixlen: int

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True)
class RouteEntry:
    dst: str  # CIDR; "0.0.0.0/0" or "::/0" for a default route
    gw: str
    oif: int
    table: int


class Netlink(Protocol):
    """What the bridge plugin asks of the kernel, in one namespace."""

    def link(self, name: str) -> Link | None: ...

    def create_bridge(self, name: str, mtu: int, vlan_filtering: bool) -> bool:
        """False when a link of that name already exists (the caller adopts it)."""
        ...

    def create_veth(
        self, name: str, peer: str, peer_netns_fd: int, mtu: int, peer_mac: str
    ) -> None: ...

    def set_link(
        self,
        index: int,
        *,
        up: bool | None = None,
        master: int | None = None,
        mtu: int | None = None,
        promisc: bool | None = None,
    ) -> None: ...

    def set_hairpin(self, index: int, on: bool) -> None: ...

    def set_vlan(self, index: int, vid: int, *, add: bool, pvid: bool, untagged: bool,
                 vid_end: int = 0, master: bool = True) -> None: ...

    def delete_link(self, name: str) -> bool:
        """False when there was no such link."""
        ...

    def addresses(self, index: int) -> list[Addr]: ...

    def add_address(self, index: int, cidr: str, nodad: bool = False) -> None: ...

    def del_address(self, index: int, cidr: str) -> None: ...

    def routes(self, family: int) -> list[RouteEntry]: ...

    def add_route(self, dst: str, gw: str, oif: int) -> None: ...

    def close(self) -> None: ...


def _ip_bytes(ip: str) -> tuple[int, bytes]:
    if ":" in ip:
        return R.AF_INET6, socket.inet_pton(socket.AF_INET6, ip)
    return R.AF_INET, socket.inet_pton(socket.AF_INET, ip)


def _ip_str(family: int, data: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if family == R.AF_INET6 else socket.AF_INET, data)


class Rtnl:
    """``Netlink`` over one NETLINK_ROUTE socket, in the namespace the socket was made in."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._seq = 0

    @classmethod
    def here(cls) -> Rtnl:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        # Strict checking lets a dump name the one interface it wants (kernel >= 4.20);
        # without it the kernel sends every address of the namespace (a link-local one per
        # pod's veth on a node with hundreds of pods) and we filter them here.
        with contextlib.suppress(OSError):
            sock.setsockopt(_SOL_NETLINK, _NETLINK_GET_STRICT_CHK, 1)
        sock.bind((0, 0))
        return cls(sock)

    def close(self) -> None:
        self._sock.close()

    # --- transport -------------------------------------------------------------------
    def _call(self, msg_type: int, flags: int, body: bytes, what: str) -> list[R.Message]:
        """Send one request and collect its replies: an ACK, a reply, or a dump."""
        self._seq += 1
        seq = self._seq
        dump = flags & R.NLM_F_DUMP == R.NLM_F_DUMP
        self._sock.send(R.request(msg_type, flags | (0 if dump else R.NLM_F_ACK), seq, body))
        out: list[R.Message] = []
        while True:
            data = self._sock.recv(1 << 20)
            for msg in R.parse_messages(data):
                if msg.seq != seq:
                    continue
                if msg.type == R.NLMSG_ERROR:
                    if msg.errno:
                        raise NetlinkError(msg.errno, what)
                    return out
                if msg.type == R.NLMSG_DONE:
                    return out
                out.append(msg)
                # A successful GET of one object is answered without an ACK.
                if not dump and not msg.flags & R.NLM_F_MULTI and msg_type in _GETS:
                    return out

    # --- links -----------------------------------------------------------------------
    @staticmethod
    def _link(msg: R.Message) -> Link:
        _fam, _type, index, flags, _change = R.IFINFO.unpack_from(msg.body)
        a = R.attrs(msg.body[R.IFINFO.size :])
        kind = ""
        if R.IFLA_LINKINFO in a:
            kind = R.cstr(R.attrs(a[R.IFLA_LINKINFO]).get(R.IFLA_INFO_KIND, b""))
        return Link(
            index=index,
            name=R.cstr(a.get(R.IFLA_IFNAME, b"")),
            kind=kind,
            mtu=int.from_bytes(a.get(R.IFLA_MTU, b"\0\0\0\0"), "little"),
            mac=R.mac_str(a.get(R.IFLA_ADDRESS, b"")),
            master=int.from_bytes(a.get(R.IFLA_MASTER, b"\0\0\0\0"), "little"),
            up=bool(flags & R.IFF_UP),
            promisc=bool(flags & R.IFF_PROMISC),
        )

    def link(self, name: str) -> Link | None:
        body = R.IFINFO.pack(R.AF_UNSPEC, 0, 0, 0, 0) + R.attr(R.IFLA_IFNAME, name)
        try:
            msgs = self._call(R.RTM_GETLINK, 0, body, f"get link {name}")
        except NetlinkError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        return self._link(msgs[0]) if msgs else None

    def create_bridge(self, name: str, mtu: int, vlan_filtering: bool) -> bool:
        info = [R.attr(R.IFLA_INFO_KIND, "bridge")]
        if vlan_filtering:
            info.append(R.nested(R.IFLA_INFO_DATA, R.attr(R.IFLA_BR_VLAN_FILTERING, 1, "=B")))
        body = (
            R.IFINFO.pack(R.AF_UNSPEC, 0, 0, 0, 0)
            + R.attr(R.IFLA_IFNAME, name)
            + (R.attr(R.IFLA_MTU, mtu) if mtu else b"")
            + R.nested(R.IFLA_LINKINFO, *info)
        )
        try:
            self._call(R.RTM_NEWLINK, R.NLM_F_CREATE | R.NLM_F_EXCL, body, f"create bridge {name}")
        except NetlinkError as exc:
            if exc.errno == errno.EEXIST:
                return False
            if exc.errno == errno.EOPNOTSUPP and vlan_filtering:
                raise KernelError(
                    f"cannot create bridge {name} with VLAN filtering",
                    "this kernel was built without CONFIG_BRIDGE_VLAN_FILTERING",
                ) from exc
            raise
        return True

    def create_veth(
        self, name: str, peer: str, peer_netns_fd: int, mtu: int, peer_mac: str
    ) -> None:
        peer_body = (
            R.IFINFO.pack(R.AF_UNSPEC, 0, 0, 0, 0)
            + R.attr(R.IFLA_IFNAME, peer)
            + R.attr(R.IFLA_NET_NS_FD, peer_netns_fd)
            + (R.attr(R.IFLA_MTU, mtu) if mtu else b"")
            + (R.attr(R.IFLA_ADDRESS, R.mac_bytes(peer_mac)) if peer_mac else b"")
        )
        body = (
            R.IFINFO.pack(R.AF_UNSPEC, 0, 0, 0, 0)
            + R.attr(R.IFLA_IFNAME, name)
            + (R.attr(R.IFLA_MTU, mtu) if mtu else b"")
            + R.nested(
                R.IFLA_LINKINFO,
                R.attr(R.IFLA_INFO_KIND, "veth"),
                R.nested(R.IFLA_INFO_DATA, R.attr(R.VETH_INFO_PEER, peer_body)),
            )
        )
        self._call(R.RTM_NEWLINK, R.NLM_F_CREATE | R.NLM_F_EXCL, body,
                   f"create veth {name} (peer {peer})")

    def set_link(
        self,
        index: int,
        *,
        up: bool | None = None,
        master: int | None = None,
        mtu: int | None = None,
        promisc: bool | None = None,
    ) -> None:
        flags = change = 0
        if up is not None:
            change |= R.IFF_UP
            flags |= R.IFF_UP if up else 0
        if promisc is not None:
            change |= R.IFF_PROMISC
            flags |= R.IFF_PROMISC if promisc else 0
        body = R.IFINFO.pack(R.AF_UNSPEC, 0, index, flags, change)
        if master is not None:
            body += R.attr(R.IFLA_MASTER, master)
        if mtu:
            body += R.attr(R.IFLA_MTU, mtu)
        self._call(R.RTM_SETLINK, 0, body, f"set link {index}")

    def set_hairpin(self, index: int, on: bool) -> None:
        body = R.IFINFO.pack(R.AF_BRIDGE, 0, index, 0, 0) + R.nested(
            R.IFLA_PROTINFO, R.attr(R.IFLA_BRPORT_MODE, int(on), "=B")
        )
        self._call(R.RTM_SETLINK, 0, body, f"set hairpin on link {index}")

    def set_vlan(self, index: int, vid: int, *, add: bool, pvid: bool, untagged: bool,
                 vid_end: int = 0, master: bool = True) -> None:
        flags = (R.BRIDGE_VLAN_INFO_PVID if pvid else 0) | (
            R.BRIDGE_VLAN_INFO_UNTAGGED if untagged else 0
        )
        spec = [] if master else [R.attr(R.IFLA_BRIDGE_FLAGS, R.BRIDGE_FLAGS_SELF, "=H")]
        def info(f: int, v: int) -> bytes:
            data = f.to_bytes(2, "little") + v.to_bytes(2, "little")
            return R.attr(R.IFLA_BRIDGE_VLAN_INFO, data)

        if vid_end and vid_end != vid:
            spec.append(info(flags | R.BRIDGE_VLAN_INFO_RANGE_BEGIN, vid))
            spec.append(info(flags | R.BRIDGE_VLAN_INFO_RANGE_END, vid_end))
        else:
            spec.append(info(flags, vid))
        body = R.IFINFO.pack(R.AF_BRIDGE, 0, index, 0, 0) + R.nested(R.IFLA_AF_SPEC, *spec)
        self._call(R.RTM_SETLINK if add else R.RTM_DELLINK, 0, body,
                   f"{'add' if add else 'delete'} vlan {vid} on link {index}")

    def delete_link(self, name: str) -> bool:
        body = R.IFINFO.pack(R.AF_UNSPEC, 0, 0, 0, 0) + R.attr(R.IFLA_IFNAME, name)
        try:
            self._call(R.RTM_DELLINK, 0, body, f"delete link {name}")
        except NetlinkError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT):
                return False
            raise
        return True

    # --- addresses and routes --------------------------------------------------------
    def addresses(self, index: int) -> list[Addr]:
        body = R.IFADDR.pack(R.AF_UNSPEC, 0, 0, 0, index)
        out = []
        try:
            msgs = self._call(R.RTM_GETADDR, R.NLM_F_DUMP, body, f"list addresses of {index}")
        except NetlinkError as exc:
            if exc.errno == errno.ENODEV:
                return []
            raise
        for msg in msgs:
            family, plen, _flags, _scope, idx = R.IFADDR.unpack_from(msg.body)
            if idx != index:
                continue
            a = R.attrs(msg.body[R.IFADDR.size :])
            raw = a.get(R.IFA_LOCAL) or a.get(R.IFA_ADDRESS)
            if raw:
                out.append(Addr(idx, _ip_str(family, raw), plen))
        return out

    def _addr_body(self, index: int, cidr: str, nodad: bool) -> bytes:
        ip, _, plen_s = cidr.partition("/")
        family, raw = _ip_bytes(ip)
        plen = int(plen_s) if plen_s else (128 if family == R.AF_INET6 else 32)
        flags = R.IFA_F_PERMANENT | (R.IFA_F_NODAD if nodad else 0)
        body = R.IFADDR.pack(family, plen, flags & 0xFF, 0, index)
        body += R.attr(R.IFA_LOCAL, raw) + R.attr(R.IFA_ADDRESS, raw)
        body += R.attr(R.IFA_FLAGS, flags)
        if family == R.AF_INET and plen < 31:
            bits = 32 - plen
            bcast = (int.from_bytes(raw, "big") | ((1 << bits) - 1)).to_bytes(4, "big")
            body += R.attr(R.IFA_BROADCAST, bcast)
        return body

    def add_address(self, index: int, cidr: str, nodad: bool = False) -> None:
        body = self._addr_body(index, cidr, nodad)
        try:
            self._call(R.RTM_NEWADDR, R.NLM_F_CREATE | R.NLM_F_EXCL, body,
                       f"add address {cidr} to link {index}")
        except NetlinkError as exc:
            if exc.errno != errno.EEXIST:
                raise

    def del_address(self, index: int, cidr: str) -> None:
        try:
            self._call(R.RTM_DELADDR, 0, self._addr_body(index, cidr, False),
                       f"delete address {cidr} from link {index}")
        except NetlinkError as exc:
            if exc.errno not in (errno.EADDRNOTAVAIL, errno.ENODEV):
                raise

    def routes(self, family: int) -> list[RouteEntry]:
        body = R.RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        out = []
        for msg in self._call(R.RTM_GETROUTE, R.NLM_F_DUMP, body, "list routes"):
            fam, dst_len, _s, _tos, table, _proto, _scope, rtype, _fl = R.RTMSG.unpack_from(
                msg.body
            )
            if rtype != R.RTN_UNICAST:
                continue
            a = R.attrs(msg.body[R.RTMSG.size :])
            table = int.from_bytes(a[R.RTA_TABLE], "little") if R.RTA_TABLE in a else table
            zero = "::" if fam == R.AF_INET6 else "0.0.0.0"  # noqa: S104 - a route, not a bind
            dst = _ip_str(fam, a[R.RTA_DST]) if R.RTA_DST in a else zero
            gw = _ip_str(fam, a[R.RTA_GATEWAY]) if R.RTA_GATEWAY in a else ""
            oif = int.from_bytes(a[R.RTA_OIF], "little") if R.RTA_OIF in a else 0
            out.append(RouteEntry(f"{dst}/{dst_len}", gw, oif, table))
        return out

    def add_route(self, dst: str, gw: str, oif: int) -> None:
        ip, _, plen_s = dst.partition("/")
        family, raw = _ip_bytes(ip)
        plen = int(plen_s)
        scope = R.RT_SCOPE_UNIVERSE if gw else R.RT_SCOPE_LINK
        body = R.RTMSG.pack(family, plen, 0, 0, R.RT_TABLE_MAIN, R.RTPROT_BOOT, scope,
                            R.RTN_UNICAST, 0)
        if plen:
            body += R.attr(R.RTA_DST, raw)
        if gw:
            body += R.attr(R.RTA_GATEWAY, _ip_bytes(gw)[1])
        body += R.attr(R.RTA_OIF, oif)
        try:
            self._call(R.RTM_NEWROUTE, R.NLM_F_CREATE | R.NLM_F_EXCL, body,
                       f"add route {dst} via {gw or 'link'}")
        except NetlinkError as exc:
            if exc.errno != errno.EEXIST:
                raise


# --- nftables ---------------------------------------------------------------------------
class Nfnl:
    """A ``NETLINK_NETFILTER`` socket in the current namespace, for nftables set lookups
    and element batches (bytes from ``_nfnl``): the ``nft`` process is needed only to
    declare our tables."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   N.NETLINK_NETFILTER)
        try:
            self._sock.bind((0, 0))
        except OSError:
            self._sock.close()
            raise

    def __enter__(self) -> Nfnl:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def set_exists(self, family: int, table: str, name: str) -> bool:
        """Whether ``table`` has a set ``name``: one round trip."""
        self._sock.send(N.getset(family, table, name, 1))
        while True:
            for msg in R.parse_messages(self._sock.recv(65536)):
                if msg.type == R.NLMSG_ERROR and msg.seq == 1:
                    if msg.errno in (errno.ENOENT, 0):
                        return msg.errno == 0
                    raise NetlinkError(msg.errno, f"look up nft set {table}/{name}")

    def batch(self, data: bytes, acks: Mapping[int, str]) -> None:
        """Send one batch; every message in ``acks`` (by sequence number) asked for an ACK.
        The kernel applies a batch inside ``send`` and queues every answer before it
        returns, so the answers are read without waiting; a missing one is an error."""
        self._sock.send(data)
        answered: set[int] = set()
        failure: NetlinkError | None = None
        while True:
            try:
                chunk = self._sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            for msg in R.parse_messages(chunk):
                if msg.type != R.NLMSG_ERROR:
                    continue
                answered.add(msg.seq)
                if msg.errno and failure is None:
                    failure = NetlinkError(msg.errno, acks.get(msg.seq, "nftables batch"))
        if failure is not None:
            raise failure
        if not answered >= set(acks):
            raise NetlinkError(errno.EIO, "nftables batch: the kernel did not answer")


# --- namespaces --------------------------------------------------------------------------
_libc: list[object] = []


def preload() -> None:
    """Load what entering a namespace needs (the agent does this once, before forking)."""
    if not hasattr(os, "setns") and not _libc:
        import ctypes  # only on 3.11 (3.12 has os.setns); ~2.5 ms, so only when needed

        _libc.append(ctypes.CDLL(None, use_errno=True))


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python 3.12+
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    import ctypes

    preload()
    if _libc[0].setns(fd, CLONE_NEWNET) != 0:  # type: ignore[attr-defined]
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _single_threaded() -> bool:
    return len(os.listdir("/proc/self/task")) == 1


def open_netns(path: str) -> int:
    """An fd on the namespace at ``path``; ``NetnsGone`` if there is none. Never creates."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NetnsGone(f"network namespace {path} does not exist") from exc
    except OSError as exc:
        raise NetnsGone(f"cannot open network namespace {path}", str(exc)) from exc


def netns_inode(path: str = "/proc/self/ns/net") -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def open_in_netns(netns_fd: int) -> Rtnl:
    """A ``Netlink`` whose socket lives in the namespace of ``netns_fd``."""
    if not _single_threaded():
        raise KernelError("refusing to enter a network namespace from a threaded process")
    home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _setns(netns_fd)
        except OSError as exc:
            raise NetnsGone("cannot enter the network namespace", str(exc)) from exc
        try:
            return Rtnl.here()
        finally:
            _setns(home)
    finally:
        os.close(home)
