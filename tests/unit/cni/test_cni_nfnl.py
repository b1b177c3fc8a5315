"""nf_tables element batches as bytes (``_nfnl``) and their construction from an
attachment's elements (``nft.netlink_batch``). The kernel's acceptance of these bytes is
checked against ``nft`` itself in ``tests/integration/cni/test_cni_nftables.py``."""

from __future__ import annotations

import pytest

from cni_bridge import _nfnl as N
from cni_bridge import _rtnl as R
from cni_bridge import nft
from cni_bridge.config import PortMapping


def test_fields_are_padded_to_registers() -> None:
    assert N.inet_proto("tcp") == b"\x06\0\0\0"
    assert N.inet_proto("sctp") == bytes((132, 0, 0, 0))
    assert N.inet_service(8080) == b"\x1f\x90\0\0"
    assert N.ether("02:00:00:00:00:01") == b"\x02\0\0\0\0\x01\0\0"
    assert N.ifname("veth0") == b"veth0" + b"\0" * 11
    assert len(N.ip_addr("fd00::5")) == 16
    assert N.concat(b"\x01", b"\x02\x03") == b"\x01\0\0\0\x02\x03\0\0"
    with pytest.raises(ValueError, match="too long"):
        N.ifname("x" * 16)


def _elem(msg: R.Message) -> tuple[int, dict[int, bytes]]:
    family = msg.body[0]
    top = R.attrs(msg.body[4:])
    assert R.cstr(top[N.NFTA_SET_ELEM_LIST_TABLE]) == nft.TABLE
    (inner,) = R.attrs(top[N.NFTA_SET_ELEM_LIST_ELEMENTS]).values()
    return family, {k: R.attrs(v).get(N.NFTA_DATA_VALUE, v) for k, v in R.attrs(inner).items()}


def test_a_range_element_carries_key_and_key_end() -> None:
    (local4,) = [e for e in nft.elements(["10.199.0.5/24"], True, []).items
                 if e.set == "local4"]
    (msg,) = R.parse_messages(
        N.setelem(N.NEWSETELEM, N.NFPROTO_INET, nft.TABLE, "local4", 9, local4.key,
                  local4.key_end))
    assert msg.type == (10 << 8) | 12
    assert msg.seq == 9
    assert msg.flags & (R.NLM_F_ACK | R.NLM_F_CREATE) == R.NLM_F_ACK | R.NLM_F_CREATE
    assert not msg.flags & R.NLM_F_EXCL, "adding an element that exists must succeed"
    family, parts = _elem(msg)
    assert family == N.NFPROTO_INET
    assert parts[N.NFTA_SET_ELEM_KEY] == bytes([10, 199, 0, 5, 10, 199, 0, 0])
    assert parts[N.NFTA_SET_ELEM_KEY_END] == bytes([10, 199, 0, 5, 10, 199, 0, 255])


def test_map_elements_and_the_bridge_table() -> None:
    els = nft.elements(["10.199.0.5/24"], False, [PortMapping(53, 5353, "udp", "10.0.0.1")],
                       "vethx", "02:00:00:00:00:01")
    by_set = {e.set: e for e in els.items}
    hp = by_set["hp4ip"]
    assert hp.key == bytes([10, 0, 0, 1, 17, 0, 0, 0, 0, 53, 0, 0])
    assert hp.data == bytes([10, 199, 0, 5, 0x14, 0xE9, 0, 0])
    assert by_set["macs"].key == N.ifname("vethx") + b"\x02\0\0\0\0\x01\0\0"
    assert by_set["macs"].family == "bridge"
    (msg,) = R.parse_messages(N.setelem(N.DELSETELEM, N.FAMILIES["inet"], nft.TABLE, "hp4ip",
                                        1, hp.key, data=hp.data))
    _family, parts = _elem(msg)
    assert N.NFTA_SET_ELEM_DATA not in parts, "a delete names the key only"


def test_batches_are_framed_and_deletes_are_idempotent() -> None:
    els = nft.elements(["10.199.0.5/24", "fd00::5/64"], True, [])
    data, acks = nft.netlink_batch(els, delete=True)
    msgs = list(R.parse_messages(data))
    assert msgs[0].type == N.NFNL_MSG_BATCH_BEGIN
    assert msgs[0].body[2:4] == N.NFNL_SUBSYS_NFTABLES.to_bytes(2, "big"), "res_id: nftables"
    assert msgs[-1].type == N.NFNL_MSG_BATCH_END
    inner = msgs[1:-1]
    assert [m.type for m in inner] == [N.NEWSETELEM, N.DELSETELEM] * len(els.items)
    assert sorted(acks) == [m.seq for m in inner], "every element message is acknowledged"
    assert len({m.seq for m in msgs}) == len(msgs)
    assert acks[inner[1].seq].startswith("delete element inet stowage_cni masq4")
    add, _ = nft.netlink_batch(els, delete=False)
    assert [m.type for m in R.parse_messages(add)][1:-1] == [N.NEWSETELEM] * len(els.items)
