"""``check_ipam_store``: the contract every IPAM ``Store`` keeps, as one reusable suite run
against the in-memory fake and the file store alike."""

from __future__ import annotations

from collections.abc import Callable

from cni_bridge.ipam.store import Allocation, Store


def check_ipam_store(factory: Callable[[], Store]) -> None:
    s = factory()
    with s.lock():
        assert s.allocations() == []
        assert s.last_reserved(0) is None
        assert s.reserve("c1", "eth0", "10.199.0.2", 0)
        assert not s.reserve("c2", "eth0", "10.199.0.2", 0), "an address is held once"
        assert s.last_reserved(0) == "10.199.0.2"
        assert s.reserve("c1", "eth0", "fd00::2", 1)
        assert s.reserve("c1", "eth1", "10.199.0.3", 0)
        assert s.last_reserved(0) == "10.199.0.3"
        assert s.last_reserved(1) == "fd00::2"
        assert s.get_by_id("c1", "eth0") == ["10.199.0.2", "fd00::2"]
        assert s.get_by_id("nope", "eth0") == []
        assert Allocation("10.199.0.3", "c1", "eth1") in s.allocations()
        assert sorted(s.release_by_id("c1", "eth0")) == ["10.199.0.2", "fd00::2"]
        assert s.release_by_id("c1", "eth0") == [], "releasing twice is fine"
        s.release("10.199.0.3")
        s.release("10.199.0.3")
        assert s.allocations() == []
        assert s.last_reserved(0) == "10.199.0.3", "the round-robin hint survives release"
    # A second store on the same backing sees the same state (processes share the files).
    s2 = factory()
    with s2.lock():
        assert s2.reserve("c9", "eth0", "10.199.0.9", 0)
    with s.lock():
        assert s.get_by_id("c9", "eth0") == ["10.199.0.9"]
