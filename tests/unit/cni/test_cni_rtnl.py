from __future__ import annotations

import struct

from cni_bridge import _rtnl as R


def test_attr_padding_and_strings() -> None:
    a = R.attr(R.IFLA_IFNAME, "eth0")
    assert len(a) % 4 == 0
    assert struct.unpack_from("=HH", a) == (4 + 5, R.IFLA_IFNAME)
    assert R.attrs(a) == {R.IFLA_IFNAME: b"eth0\0"}
    assert R.cstr(R.attrs(a)[R.IFLA_IFNAME]) == "eth0"


def test_nested_attributes_round_trip() -> None:
    n = R.nested(R.IFLA_LINKINFO, R.attr(R.IFLA_INFO_KIND, "veth"), R.attr(R.IFLA_MTU, 1400))
    outer = R.attrs(n)
    assert R.IFLA_LINKINFO in outer, "the nested flag is stripped from the type"
    inner = R.attrs(outer[R.IFLA_LINKINFO])
    assert R.cstr(inner[R.IFLA_INFO_KIND]) == "veth"
    assert int.from_bytes(inner[R.IFLA_MTU], "little") == 1400


def test_request_and_error_parsing() -> None:
    req = R.request(R.RTM_GETLINK, 0, 7, b"abcd")
    (msg,) = R.parse_messages(req)
    assert (msg.type, msg.seq, msg.body) == (R.RTM_GETLINK, 7, b"abcd")
    assert msg.flags & R.NLM_F_REQUEST
    err = R.request(R.NLMSG_ERROR, 0, 7, struct.pack("=i", -19) + req[:16])
    (emsg,) = (
        R.parse_messages(err + R.request(R.NLMSG_DONE, 0, 8, b""))[:1]
        if False
        else (next(R.parse_messages(err)),)
    )
    assert emsg.errno == 19


def test_mac_helpers() -> None:
    assert R.mac_str(R.mac_bytes("02:aa:00:00:00:01")) == "02:aa:00:00:00:01"
