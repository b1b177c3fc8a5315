"""Every verb driven exactly as a runtime does, in throwaway namespaces, and the failure
cases the issue lists."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from .harness import Lab, bridge_conf, ipj, sh, tcp_peer, tcp_server

pytestmark = pytest.mark.root


def assert_nothing_left(lab: Lab, network: str = "stwtestnet") -> None:
    assert lab.host_links() == []
    assert lab.nft_elements() == set()
    ipam_dir = os.path.join(lab.tmp, "ipam", network)
    if os.path.isdir(ipam_dir):
        assert [
            f for f in os.listdir(ipam_dir) if not f.startswith(("last_reserved", "lock"))
        ] == []
    state = os.path.join(lab.tmp, "state", network)
    assert not os.path.isdir(state) or os.listdir(state) == []


def test_add_check_del_dual_stack(cni_lab: Lab) -> None:
    pod = cni_lab.pod()
    conf = bridge_conf(
        cni_lab, v6="fd00:199:10::/64", isGateway=True, ipMasq=True, hairpinMode=True
    )
    conf["ipam"]["routes"] = [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    res = cni_lab.ok("stowage-bridge", "ADD", conf, "c1", pod)
    assert res["cniVersion"] == "1.1.0"
    assert [i["name"] for i in res["interfaces"]][::2] == ["stwtestbr0", "eth0"]
    assert res["interfaces"][2]["sandbox"] == f"/run/netns/{pod}"
    assert [(i["address"], i["gateway"], i["interface"]) for i in res["ips"]] == [
        ("10.199.10.2/24", "10.199.10.1", 2),
        ("fd00:199:10::2/64", "fd00:199:10::1", 2),
    ]

    (eth0,) = ipj(pod, "addr", "show", "dev", "eth0")
    assert eth0["address"] == res["interfaces"][2]["mac"]
    assert "UP" in eth0["flags"]
    addrs = {f"{a['local']}/{a['prefixlen']}" for a in eth0["addr_info"] if a["scope"] == "global"}
    assert addrs == {"10.199.10.2/24", "fd00:199:10::2/64"}
    routes = {(r["dst"], r.get("gateway")) for r in ipj(pod, "route")}
    assert ("default", "10.199.10.1") in routes
    routes6 = {(r["dst"], r.get("gateway")) for r in ipj(pod, "-6", "route")}
    assert ("default", "fd00:199:10::1") in routes6
    veth = res["interfaces"][1]["name"]
    (hv,) = ipj(cni_lab.host, "-d", "link", "show", "dev", veth)
    assert hv["master"] == "stwtestbr0"
    assert hv["linkinfo"]["info_slave_data"]["hairpin"] is True
    br_addrs = {
        f"{a['local']}/{a['prefixlen']}"
        for a in ipj(cni_lab.host, "addr", "show", "dev", "stwtestbr0")[0]["addr_info"]
    }
    assert {"10.199.10.1/24", "fd00:199:10::1/64"} <= br_addrs
    assert sh("cat", "/proc/sys/net/ipv4/ip_forward", ns=cni_lab.host).stdout.strip() == b"1"
    els = cni_lab.nft_elements()
    assert 'masq4:"10.199.10.2"' in els
    assert 'masq6:"fd00:199:10::2"' in els
    # The pod reaches its gateway (both addresses live in namespaces of this test).
    with tcp_server(cni_lab.host, "10.199.10.1", 7000):
        assert tcp_peer(pod, "10.199.10.1", 7000) == "10.199.10.2"

    cni_lab.ok("stowage-bridge", "CHECK", {**conf, "prevResult": res}, "c1", pod)
    sh("ip", "addr", "flush", "dev", "eth0", ns=pod)
    out, rc = cni_lab.call("stowage-bridge", "CHECK", {**conf, "prevResult": res}, "c1", pod)
    assert rc == 1
    assert out["code"] == 3

    for _ in range(2):  # DEL is idempotent
        assert cni_lab.ok("stowage-bridge", "DEL", conf, "c1", pod) is None
    assert_nothing_left(cni_lab)
    assert ipj(pod, "link", "show", "dev", "lo")
    assert len(ipj(pod, "link")) == 1


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_every_config_version(cni_lab: Lab, version: str) -> None:
    pod = cni_lab.pod()
    conf = bridge_conf(cni_lab, version=version, isGateway=True)
    res = cni_lab.ok("stowage-bridge", "ADD", conf, "c1", pod)
    assert res["cniVersion"] == version
    assert ("version" in res["ips"][0]) == version.startswith("0.")
    if version != "0.3.0" and version != "0.3.1":
        cni_lab.ok("stowage-bridge", "CHECK", {**conf, "prevResult": res}, "c1", pod)
    cni_lab.ok("stowage-bridge", "DEL", conf, "c1", pod)
    assert_nothing_left(cni_lab)


def test_del_after_the_netns_is_gone(cni_lab: Lab) -> None:
    pod = cni_lab.pod()
    conf = bridge_conf(
        cni_lab,
        isGateway=True,
        ipMasq=True,
        runtimeConfig={"portMappings": [{"hostPort": 18080, "containerPort": 80}]},
    )
    cni_lab.ok("stowage-bridge", "ADD", conf, "c1", pod)
    assert cni_lab.nft_elements()
    cni_lab.drop_pod(pod)
    cni_lab.ok("stowage-bridge", "DEL", conf, "c1", pod)
    cni_lab.ok("stowage-bridge", "DEL", conf, "c1", pod)
    assert_nothing_left(cni_lab)
    assert not os.path.exists(f"/run/netns/{pod}"), "DEL must never create a namespace"


def test_failure_cases_leave_nothing(cni_lab: Lab) -> None:
    pod = cni_lab.pod()
    conf = bridge_conf(cni_lab, subnet="10.199.11.0/30", isGateway=True, ipMasq=True)
    out, rc = cni_lab.call("stowage-bridge", "ADD", conf, "c1", "stwtest-c-missing")
    assert rc == 1
    assert out["code"] == 103
    assert not os.path.exists("/run/netns/stwtest-c-missing")
    out, rc = cni_lab.call("stowage-bridge", "ADD", b"{not json", "c1", pod)
    assert (rc, out["code"]) == (1, 6)
    out, rc = cni_lab.call("stowage-bridge", "ADD", {**conf, "cniVersion": "7.0.0"}, "c1", pod)
    assert (rc, out["code"]) == (1, 1)
    out, rc = cni_lab.call("stowage-bridge", "ADD", conf, "", pod)
    assert (rc, out["code"]) == (1, 4)
    assert_nothing_left(cni_lab)

    cni_lab.ok("stowage-bridge", "ADD", conf, "c1", pod)
    out, rc = cni_lab.call("stowage-bridge", "ADD", conf, "c1", pod)
    assert (rc, out["code"]) == (1, 101), "duplicate container id"
    pod2 = cni_lab.pod()
    out, rc = cni_lab.call("stowage-bridge", "ADD", conf, "c2", pod2)
    assert (rc, out["code"]) == (1, 100), "the /30 has one address"
    assert len(cni_lab.host_links()) == 1
    assert ipj(pod2, "link")[0]["ifname"] == "lo"
    out, rc = cni_lab.call("stowage-bridge", "STATUS", conf)
    assert (rc, out["code"]) == (1, 50)
    cni_lab.ok("stowage-bridge", "DEL", conf, "c1", pod)
    cni_lab.ok("stowage-bridge", "STATUS", conf)
    assert_nothing_left(cni_lab)


def test_version_status_gc(cni_lab: Lab) -> None:
    out = cni_lab.ok("stowage-bridge", "VERSION", b"")  # type: ignore[arg-type]
    assert out["supportedVersions"][-1] == "1.1.0"
    conf = bridge_conf(cni_lab, isGateway=True, ipMasq=True)
    pods = [cni_lab.pod() for _ in range(3)]
    for i, pod in enumerate(pods):
        cni_lab.ok("stowage-bridge", "ADD", conf, f"c{i}", pod)
    cni_lab.ok("stowage-bridge", "STATUS", conf)
    gc = {**conf, "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]}
    cni_lab.ok("stowage-bridge", "GC", gc)
    assert len(cni_lab.host_links()) == 1
    assert {e for e in cni_lab.nft_elements() if e.startswith("masq4")} == {'masq4:"10.199.10.3"'}
    files = os.listdir(os.path.join(cni_lab.tmp, "ipam", "stwtestnet"))
    assert "10.199.10.3" in files
    assert "10.199.10.2" not in files
    assert "10.199.10.4" not in files
    out, rc = cni_lab.call("stowage-bridge", "GC", {**conf, "cniVersion": "1.0.0"})
    assert (rc, out["code"]) == (1, 1)
    cni_lab.ok("stowage-bridge", "DEL", conf, "c1", pods[1])
    assert_nothing_left(cni_lab)


def test_kill_9_during_add_then_del(cni_lab: Lab) -> None:
    conf = bridge_conf(
        cni_lab,
        isGateway=True,
        ipMasq=True,
        hairpinMode=True,
        runtimeConfig={"portMappings": [{"hostPort": 18081, "containerPort": 80}]},
    )
    stdin = json.dumps(conf).encode()
    for i, delay in enumerate([0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07, 0.1]):
        pod = cni_lab.pod()
        p = cni_lab.popen(
            f"{cni_lab.bin_dir}/stowage-bridge", cni_lab.env("ADD", f"k{i}", pod), stdin
        )
        time.sleep(delay)
        # ip netns exec replaces itself with env, which replaces itself with the plugin:
        # the pid is the plugin's.
        os.kill(p.pid, signal.SIGKILL)
        p.communicate()
        cni_lab.ok("stowage-bridge", "DEL", conf, f"k{i}", pod)
        assert_nothing_left(cni_lab)
        assert [link["ifname"] for link in ipj(pod, "link")] == ["lo"]


def test_the_bridge_with_the_reference_host_local(cni_lab: Lab) -> None:
    pod = cni_lab.pod()
    conf = bridge_conf(
        cni_lab, ipam_type="host-local", version="1.0.0", isGateway=True, ipMasq=True
    )
    res = cni_lab.ok("stowage-bridge", "ADD", conf, "c1", pod)
    assert res["ips"][0]["address"] == "10.199.10.2/24"
    assert os.path.exists(os.path.join(cni_lab.tmp, "ipam", "stwtestnet", "10.199.10.2"))
    cni_lab.ok("stowage-bridge", "DEL", conf, "c1", pod)
    assert_nothing_left(cni_lab)
