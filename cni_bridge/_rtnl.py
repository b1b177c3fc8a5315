"""rtnetlink messages as bytes: encoding requests and decoding replies, with no I/O.

Only the handful of messages the bridge plugin sends (links, addresses, routes, bridge
port flags and VLANs), encoded with ``struct`` so that the plugin needs no netlink library
at start-up (importing pyroute2 alone costs ~200 ms, twenty times the reference plugin's
whole ADD). Values are the kernel's uapi constants (linux/rtnetlink.h, if_link.h,
if_addr.h, if_bridge.h, veth.h).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

__all__ = [
    "Attr",
    "Message",
    "attr",
    "attrs",
    "nested",
    "parse_messages",
    "request",
]

# message types
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
# flags
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
NLA_F_NESTED = 0x8000
# address families
AF_UNSPEC, AF_INET, AF_BRIDGE, AF_INET6 = 0, 2, 7, 10
# link attributes
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_PROTINFO, IFLA_LINKINFO, IFLA_AF_SPEC, IFLA_NET_NS_FD = 12, 18, 26, 28
IFLA_EXT_MASK = 29
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_BR_VLAN_FILTERING = 7
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4  # hairpin
IFLA_BRIDGE_FLAGS, IFLA_BRIDGE_VLAN_INFO = 0, 2
BRIDGE_FLAGS_SELF = 2
BRIDGE_VLAN_INFO_PVID, BRIDGE_VLAN_INFO_UNTAGGED = 0x2, 0x4
BRIDGE_VLAN_INFO_RANGE_BEGIN, BRIDGE_VLAN_INFO_RANGE_END = 0x8, 0x10
RTEXT_FILTER_BRVLAN = 0x2
IFF_UP, IFF_PROMISC = 0x1, 0x100
# address attributes
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 4, 8
IFA_F_NODAD, IFA_F_PERMANENT = 0x02, 0x80
# route attributes
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_METRICS, RTA_TABLE = 1, 4, 5, 6, 8, 15
RTAX_MTU, RTAX_ADVMSS = 2, 8
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RTN_UNICAST = 1

_HDR = struct.Struct("=IHHII")
_ATTR = struct.Struct("=HH")
IFINFO = struct.Struct("=BxHiII")
IFADDR = struct.Struct("=BBBBI")
RTMSG = struct.Struct("=BBBBBBBBI")

Attr = tuple[int, bytes]


def _pad(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, value: bytes | str | int, fmt: str = "=I") -> bytes:
    """One attribute: strings are NUL-terminated, ints packed with ``fmt``."""
    if isinstance(value, str):
        data = value.encode() + b"\0"
    elif isinstance(value, int):
        data = struct.pack(fmt, value)
    else:
        data = value
    n = _ATTR.size + len(data)
    return _ATTR.pack(n, kind) + data + b"\0" * (_pad(n) - n)


def nested(kind: int, *children: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(children))


def request(msg_type: int, flags: int, seq: int, body: bytes) -> bytes:
    return _HDR.pack(_HDR.size + len(body), msg_type, flags | NLM_F_REQUEST, seq, 0) + body


def attrs(data: bytes) -> dict[int, bytes]:
    """Top-level attributes of a payload (the nested flag stripped; last one wins)."""
    out: dict[int, bytes] = {}
    off = 0
    while off + _ATTR.size <= len(data):
        n, kind = _ATTR.unpack_from(data, off)
        if n < _ATTR.size:
            break
        out[kind & 0x3FFF] = data[off + _ATTR.size : off + n]
        off += _pad(n)
    return out


class Message:
    __slots__ = ("body", "flags", "seq", "type")

    def __init__(self, msg_type: int, flags: int, seq: int, body: bytes) -> None:
        self.type = msg_type
        self.flags = flags
        self.seq = seq
        self.body = body

    @property
    def errno(self) -> int:
        """For an NLMSG_ERROR: the positive errno (0 is an ACK)."""
        return -int(struct.unpack_from("=i", self.body)[0])


def parse_messages(data: bytes) -> Iterator[Message]:
    off = 0
    while off + _HDR.size <= len(data):
        n, msg_type, flags, seq, _pid = _HDR.unpack_from(data, off)
        if n < _HDR.size:
            break
        yield Message(msg_type, flags, seq, data[off + _HDR.size : off + n])
        off += _pad(n)


def cstr(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode()


def mac_str(value: bytes) -> str:
    return ":".join(f"{b:02x}" for b in value)


def mac_bytes(value: str) -> bytes:
    parts = value.split(":")
    if len(parts) != 6:
        raise ValueError(f"invalid MAC address {value!r}")
    return bytes(int(p, 16) for p in parts)
