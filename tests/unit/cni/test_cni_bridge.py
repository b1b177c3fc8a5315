"""The bridge verbs over fakes: result shape, rollback of a failed ADD at every step, and a
DEL that is idempotent and complete with or without the namespace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cni_bridge import bridge
from cni_bridge.config import parse_netconf
from cni_bridge.errors import AddressInUse, CNIError, KernelError, NetnsGone
from cni_bridge.ipam import hostlocal
from cni_bridge.ipam.memstore import MemStore
from cni_bridge.ipam.ranges import IPAMConfig
from cni_bridge.ipam.store import Store
from cni_bridge.record import RecordStore
from cni_bridge.skel import Request
from cni_bridge.types import Result

from .fakes import FakeKernel, FakeNft

NS = "/run/netns/stwtest-fake"


class MemIpam:
    def __init__(self, req: Request, store: MemStore) -> None:
        self.req, self.store = req, store

    def _stores(self, conf: IPAMConfig, network: str) -> Store:
        return self.store

    def add(self, conf: Any) -> Result:
        return hostlocal.add(conf, self.req, self._stores)

    def delete(self, conf: Any) -> None:
        hostlocal.delete(conf, self.req, self._stores)

    def check(self, conf: Any) -> None:
        hostlocal.check(conf, self.req, self._stores)

    def status(self, conf: Any) -> None:
        hostlocal.status(conf, self._stores)

    def gc(self, conf: Any) -> None:
        hostlocal.gc(conf, self._stores)


class World:
    def __init__(self, tmp: Path, **conf_extra: Any) -> None:
        self.kernel = FakeKernel()
        self.kernel.add_netns(NS)
        self.nft = FakeNft()
        self.store = MemStore()
        self.conf: dict[str, Any] = {
            "cniVersion": "1.1.0",
            "name": "stwtestnet",
            "type": "stowage-bridge",
            "bridge": "stwtestbr0",
            "isGateway": True,
            "ipMasq": True,
            "hairpinMode": True,
            "ipam": {
                "type": "stowage-host-local",
                "ranges": [[{"subnet": "10.199.7.0/24"}], [{"subnet": "fd00:199:7::/64"}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
            **conf_extra,
        }
        self.records = RecordStore(str(tmp), "stwtestnet")

    def deps(self, req: Request) -> bridge.Deps:
        return bridge.Deps(
            self.kernel.host,
            self.kernel.open_netns,
            self.kernel.netlink_in,
            self.nft,
            MemIpam(req, self.store),
            self.kernel.sysctl,
            log=lambda m: None,
        )

    def req(self, cid: str = "c1", command: str = "ADD") -> Request:
        return Request(command, cid, NS if cid == "c1" else f"{NS}-{cid}", "eth0")

    def add(self, cid: str = "c1") -> Result:
        req = self.req(cid)
        if cid != "c1" and req.netns not in self.kernel.namespaces:
            self.kernel.add_netns(req.netns)
        return bridge.add(
            self.conf, parse_netconf(self.conf, "1.1.0"), req, self.deps(req), self.records
        )

    def delete(self, cid: str = "c1", netns: str | None = None) -> None:
        req = Request("DEL", cid, self.req(cid).netns if netns is None else netns, "eth0")
        bridge.delete(
            self.conf, parse_netconf(self.conf, "1.1.0"), req, self.deps(req), self.records
        )

    def pod(self) -> Any:
        return self.kernel.namespaces[NS]

    def assert_clean(self) -> None:
        assert [n for n in self.kernel.host.links if n.startswith("veth")] == []
        assert all(ns.links == {} for ns in self.kernel.namespaces.values())
        assert self.store.allocations() == []
        assert self.nft.elements == set()
        assert self.records.all() == []


def test_add_builds_the_expected_result_and_state(tmp_path: Path) -> None:
    w = World(tmp_path)
    res = w.add()
    assert next(i.name for i in res.interfaces) == "stwtestbr0"
    assert res.interfaces[2].sandbox == NS
    assert [(i.address, i.gateway, i.interface) for i in res.ips] == [
        ("10.199.7.2/24", "10.199.7.1", 2),
        ("fd00:199:7::2/64", "fd00:199:7::1", 2),
    ]
    assert [(r.dst, r.gw) for r in res.routes] == [("0.0.0.0/0", "")], "as IPAM gave it"
    assert [(r.dst, r.gw) for r in w.pod().route_table] == [("0.0.0.0/0", "10.199.7.1")]
    host = w.kernel.host
    br = host.links["stwtestbr0"]
    hv = host.links[res.interfaces[1].name]
    assert hv.master == br.index
    assert hv.up
    assert hv.index in host.hairpin
    assert {a.cidr for a in host.addresses(br.index)} == {"10.199.7.1/24", "fd00:199:7::1/64"}
    assert w.pod().links["eth0"].up
    assert ("masq4", "10.199.7.2") in w.nft.elements
    assert w.kernel.sysctls["/proc/sys/net/ipv4/ip_forward"] == "1"


@pytest.mark.parametrize("step", ["create_veth", "set_link", "add_address", "add_route", "nft"])
def test_failed_add_rolls_back_everything(tmp_path: Path, step: str) -> None:
    w = World(tmp_path)
    if step == "nft":
        w.nft.fail = True
    else:
        w.kernel.fail.add(step)
    with pytest.raises(KernelError):
        w.add()
    w.nft.fail = False
    w.assert_clean()
    w.kernel.fail.clear()
    w.add()  # and the attachment can be added afterwards


def test_del_is_idempotent_and_complete(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.add()
    w.add("c2")
    w.delete()
    w.delete()
    assert [a.container_id for a in w.store.allocations()] == ["c2", "c2"]
    w.delete("c2", netns="")
    w.assert_clean()


def test_del_after_the_namespace_is_gone(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.add()
    # The kernel removes both ends of a veth pair with the namespace.
    hv = next(n for n in w.kernel.host.links if n.startswith("veth"))
    w.kernel.host.delete_link(hv)
    del w.kernel.namespaces[NS]
    w.delete()
    assert w.store.allocations() == []
    assert w.nft.elements == set()
    assert w.records.all() == []


def test_del_without_a_record_still_frees_the_veth_and_ips(tmp_path: Path) -> None:
    """A crash between the veth and the record: the name alone finds the veth."""
    w = World(tmp_path)
    w.add()
    w.records.remove("c1", "eth0")
    w.nft.elements.clear()  # (a crash before the record also means before nft)
    w.delete()
    w.assert_clean()


def test_duplicate_add_is_refused_without_side_effects(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.add()
    before = (set(w.kernel.host.links), w.store.allocations(), set(w.nft.elements))
    with pytest.raises(AddressInUse):
        w.add()
    assert before == (set(w.kernel.host.links), w.store.allocations(), set(w.nft.elements))


def test_add_into_a_missing_namespace(tmp_path: Path) -> None:
    w = World(tmp_path)
    del w.kernel.namespaces[NS]
    with pytest.raises(NetnsGone):
        w.add()
    assert w.store.allocations() == []


def test_gateway_conflict_and_force_address(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.kernel.host.create_bridge("stwtestbr0", 0, False)
    br = w.kernel.host.links["stwtestbr0"]
    w.kernel.host.add_address(br.index, "10.199.7.254/24")
    with pytest.raises(AddressInUse, match="already has address"):
        w.add()
    w.assert_clean()
    w.conf["forceAddress"] = True
    w.add()
    assert {a.cidr for a in w.kernel.host.addresses(br.index)} >= {"10.199.7.1/24"}
    assert "10.199.7.254/24" not in {a.cidr for a in w.kernel.host.addresses(br.index)}


def test_check_compares_with_prev_result(tmp_path: Path) -> None:
    from cni_bridge.types import render

    w = World(tmp_path)
    res = w.add()
    w.conf["prevResult"] = render(res, "1.1.0")
    req = w.req(command="CHECK")
    nc = parse_netconf(w.conf, "1.1.0")
    pod = w.pod()
    for r in res.routes:  # the fake has no kernel routes of its own
        assert any(e.dst == r.dst for e in pod.route_table)
    bridge.check(w.conf, nc, req, w.deps(req), w.records)
    pod.addrs.clear()
    with pytest.raises(CNIError, match="lacks address"):
        bridge.check(w.conf, nc, req, w.deps(req), w.records)


def test_gc_removes_attachments_not_listed(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.add("keep")
    w.add("stale")
    conf = {**w.conf, "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    req = Request("GC")
    bridge.gc(conf, parse_netconf(conf, "1.1.0"), {("keep", "eth0")}, w.deps(req), w.records)
    assert {a.container_id for a in w.store.allocations()} == {"keep"}
    assert [c for c, _i, _r in w.records.all()] == ["keep"]
    assert len([n for n in w.kernel.host.links if n.startswith("veth")]) == 1
    assert not any("10.199.7.3" in e for _s, e in w.nft.elements)


def test_host_veth_names_are_stable_and_short() -> None:
    a = bridge.host_veth_name("net", "c1", "eth0")
    assert a == bridge.host_veth_name("net", "c1", "eth0")
    assert len(a) == 15
    assert a != bridge.host_veth_name("net", "c1", "eth1")
