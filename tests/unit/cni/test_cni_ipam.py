from __future__ import annotations

import ipaddress

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from cni_bridge.errors import AddressExhausted, AddressInUse, InvalidConfig
from cni_bridge.ipam import allocator
from cni_bridge.ipam.memstore import MemStore
from cni_bridge.ipam.ranges import RangeSet, parse_ipam, parse_range


def v4(conf: dict[str, object], **kw: object) -> object:
    return parse_ipam(conf, **kw)  # type: ignore[arg-type]


def test_range_defaults_follow_host_local() -> None:
    r = parse_range({"subnet": "10.199.3.77/24"})
    assert str(r.subnet) == "10.199.3.0/24"
    assert (str(r.start), str(r.end), str(r.gateway)) == (
        "10.199.3.1",
        "10.199.3.254",
        "10.199.3.1",
    )
    assert r.size() == 253


@pytest.mark.parametrize(
    "raw",
    [
        {"subnet": "10.199.0.0/31"},
        {"subnet": "nope"},
        {"subnet": "10.199.0.0/24", "rangeStart": "10.199.1.1"},
        {"subnet": "10.199.0.0/24", "rangeStart": "10.199.0.9", "rangeEnd": "10.199.0.5"},
        {"subnet": "10.199.0.0/24", "gateway": "fd00::1"},
        {},
    ],
)
def test_invalid_ranges_are_config_errors(raw: dict[str, str]) -> None:
    with pytest.raises(InvalidConfig):
        parse_range(raw)


def test_overlapping_ranges_and_mixed_sets_are_rejected() -> None:
    with pytest.raises(InvalidConfig, match="overlaps"):
        parse_ipam({"ranges": [[{"subnet": "10.199.0.0/24"}], [{"subnet": "10.199.0.0/25"}]]})
    with pytest.raises(InvalidConfig, match="mixes"):
        parse_ipam({"ranges": [[{"subnet": "10.199.0.0/24"}, {"subnet": "fd00::/64"}]]})
    with pytest.raises(InvalidConfig, match="not in any"):
        parse_ipam({"subnet": "10.199.0.0/24"}, runtime_ips=["10.198.0.5"])


@given(
    prefix=st.integers(min_value=26, max_value=30),
    start_off=st.integers(min_value=1, max_value=4),
    last=st.integers(min_value=0, max_value=80),
)
def test_candidates_visit_every_address_once(prefix: int, start_off: int, last: int) -> None:
    assume(start_off <= 2 ** (32 - prefix) - 2)
    a = parse_range({"subnet": f"10.199.0.0/{prefix}", "rangeStart": f"10.199.0.{start_off}"})
    b = parse_range({"subnet": "10.199.9.0/29"})
    rs = RangeSet((a, b))
    last_ip = ipaddress.ip_address(f"10.199.0.{last}")
    seen = [str(ip) for ip, _ in rs.candidates(last_ip if last_ip in rs else None)]
    assert len(seen) == len(set(seen)) == rs.size()
    assert "10.199.0.1" not in seen
    assert "10.199.9.1" not in seen
    if last_ip in rs and last_ip != a.end:
        assert seen[0] == str(last_ip + 1)


def test_allocation_is_round_robin_and_dual_stack() -> None:
    conf = parse_ipam({"ranges": [[{"subnet": "10.199.0.0/29"}], [{"subnet": "fd00:199::/125"}]]})
    s = MemStore()
    got = allocator.allocate(conf, s, "c1", "eth0")
    assert [(i.address, i.gateway) for i in got] == [
        ("10.199.0.2/29", "10.199.0.1"),
        ("fd00:199::2/125", "fd00:199::1"),
    ]
    allocator.release(s, "c1", "eth0")
    got = allocator.allocate(conf, s, "c2", "eth0")
    assert got[0].address == "10.199.0.3/29", "a freed address waits for the wrap-around"


def test_exhaustion_rolls_back_earlier_sets() -> None:
    conf = parse_ipam({"ranges": [[{"subnet": "10.199.0.0/24"}], [{"subnet": "10.199.1.0/30"}]]})
    s = MemStore()
    allocator.allocate(conf, s, "c1", "eth0")  # takes the only address of the /30
    with pytest.raises(AddressExhausted, match=r"10\.199\.1\.1-10\.199\.1\.2"):
        allocator.allocate(conf, s, "c2", "eth0")
    assert s.get_by_id("c2", "eth0") == [], "the first set's address was given back"


def test_requested_ip_and_duplicates() -> None:
    conf = parse_ipam({"subnet": "10.199.0.0/24"}, runtime_ips=["10.199.0.50/24"])
    s = MemStore()
    assert allocator.allocate(conf, s, "c1", "eth0")[0].address == "10.199.0.50/24"
    with pytest.raises(AddressInUse, match="already allocated"):
        allocator.allocate(conf, s, "c2", "eth0")
    plain = parse_ipam({"subnet": "10.199.0.0/24"})
    with pytest.raises(AddressInUse, match="already holds"):
        allocator.allocate(plain, s, "c1", "eth0")
    assert allocator.allocate(plain, s, "c1", "eth1")[0].address == "10.199.0.51/24"


def test_gc_frees_what_is_not_valid() -> None:
    conf = parse_ipam({"subnet": "10.199.0.0/24"})
    s = MemStore()
    for c in ("a", "b", "c"):
        allocator.allocate(conf, s, c, "eth0")
    freed = allocator.collect_garbage(s, {("b", "eth0")})
    assert sorted(a.container_id for a in freed) == ["a", "c"]
    assert [a.container_id for a in s.allocations()] == ["b"]
