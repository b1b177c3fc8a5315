"""Each bridge configuration key, observed in the kernel after an ADD."""

from __future__ import annotations

import json
import os

import pytest

from .harness import Lab, bridge_conf, ipj, sh, tcp_peer, tcp_server

pytestmark = pytest.mark.root


def add(lab: Lab, conf: dict[str, object], cid: str = "c1") -> tuple[str, dict[str, object]]:
    pod = lab.pod()
    return pod, lab.ok("stowage-bridge", "ADD", conf, cid, pod)


def test_mtu_promisc_and_mac(cni_lab: Lab) -> None:
    conf = bridge_conf(
        cni_lab, mtu=1400, promiscMode=True, runtimeConfig={"mac": "02:aa:bb:cc:dd:01"}
    )
    pod, res = add(cni_lab, conf)
    (br,) = ipj(cni_lab.host, "link", "show", "dev", "stwtestbr0")
    assert br["mtu"] == 1400
    assert "PROMISC" in br["flags"]
    (eth0,) = ipj(pod, "link", "show", "dev", "eth0")
    assert eth0["mtu"] == 1400
    assert eth0["address"] == "02:aa:bb:cc:dd:01"
    assert res["interfaces"][2]["mac"] == "02:aa:bb:cc:dd:01"  # type: ignore[index]
    cni_lab.ok("stowage-bridge", "DEL", conf, "c1", pod)


def test_is_default_gateway_and_force_address(cni_lab: Lab) -> None:
    sh("ip", "link", "add", "stwtestbr0", "type", "bridge", ns=cni_lab.host)
    sh("ip", "addr", "add", "10.199.10.200/24", "dev", "stwtestbr0", ns=cni_lab.host)
    conf = bridge_conf(cni_lab, isDefaultGateway=True)
    pod = cni_lab.pod()
    out, rc = cni_lab.call("stowage-bridge", "ADD", conf, "c1", pod)
    assert (rc, out["code"]) == (1, 101)
    assert cni_lab.host_links() == []
    pod, res = add(cni_lab, {**conf, "forceAddress": True})
    routes = {(r["dst"], r.get("gateway")) for r in ipj(pod, "route")}
    assert ("default", "10.199.10.1") in routes
    assert {"dst": "0.0.0.0/0", "gw": "10.199.10.1"} in res["routes"]  # type: ignore[operator]
    addrs = [
        a["local"]
        for a in ipj(cni_lab.host, "addr", "show", "dev", "stwtestbr0")[0]["addr_info"]
        if a["family"] == "inet"
    ]
    assert addrs == ["10.199.10.1"]


def need_vlan_filtering(lab: Lab) -> None:
    probe = sh(
        "ip",
        "link",
        "add",
        "stwtestprobe",
        "type",
        "bridge",
        "vlan_filtering",
        "1",
        ns=lab.host,
        check=False,
    )
    sh("ip", "link", "del", "stwtestprobe", ns=lab.host, check=False)
    if probe.returncode != 0:
        pytest.skip("this kernel has no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)")


def test_vlan_and_default_vlan(cni_lab: Lab) -> None:
    need_vlan_filtering(cni_lab)
    conf = bridge_conf(cni_lab, vlan=100, preserveDefaultVlan=False)
    _pod, res = add(cni_lab, conf)
    veth = res["interfaces"][1]["name"]  # type: ignore[index]
    vlans = json.loads(sh("bridge", "-j", "vlan", "show", "dev", veth, ns=cni_lab.host).stdout)
    (entry,) = vlans
    assert [(v["vlan"], sorted(v.get("flags", []))) for v in entry["vlans"]] == [
        (100, ["PVID", "Egress Untagged"])
    ]
    (br,) = ipj(cni_lab.host, "-d", "link", "show", "dev", "stwtestbr0")
    assert br["linkinfo"]["info_data"]["vlan_filtering"] == 1


def test_vlan_trunk(cni_lab: Lab) -> None:
    need_vlan_filtering(cni_lab)
    conf = bridge_conf(cni_lab, vlanTrunk=[{"id": 5}, {"minID": 10, "maxID": 12}])
    _pod, res = add(cni_lab, conf)
    veth = res["interfaces"][1]["name"]  # type: ignore[index]
    vlans = json.loads(
        sh("bridge", "-j", "-c", "vlan", "show", "dev", veth, ns=cni_lab.host).stdout
    )
    got: set[int] = set()
    for v in vlans[0]["vlans"]:
        got.update(range(v["vlan"], v.get("vlanEnd", v["vlan"]) + 1))
    assert got == {1, 5, 10, 11, 12}


def test_vlan_without_kernel_support_fails_cleanly(cni_lab: Lab) -> None:
    conf = bridge_conf(cni_lab, vlan=100)
    pod = cni_lab.pod()
    out, rc = cni_lab.call("stowage-bridge", "ADD", conf, "c1", pod)
    if rc == 0:
        pytest.skip("this kernel has bridge VLAN filtering")
    assert out["code"] == 102
    assert "VLAN" in out["msg"]
    assert cni_lab.host_links() == []
    ipam_dir = os.path.join(cni_lab.tmp, "ipam", "stwtestnet")
    assert not os.path.isdir(ipam_dir) or "10.199.10.2" not in os.listdir(ipam_dir)


def test_mac_spoof_check(cni_lab: Lab) -> None:
    conf = bridge_conf(cni_lab, macspoofchk=True)
    pod, res = add(cni_lab, conf)
    veth, mac = res["interfaces"][1]["name"], res["interfaces"][2]["mac"]  # type: ignore[index]
    ruleset = sh("nft", "list", "table", "bridge", "stowage_cni", ns=cni_lab.host).stdout.decode()
    assert f'"{veth}" . {mac}' in ruleset
    assert f'"{veth}"' in ruleset
    cni_lab.ok("stowage-bridge", "DEL", conf, "c1", pod)
    ruleset = sh("nft", "list", "table", "bridge", "stowage_cni", ns=cni_lab.host).stdout.decode()
    assert veth not in ruleset


def test_disable_container_interface_and_l2_only(cni_lab: Lab) -> None:
    conf = bridge_conf(cni_lab, disableContainerInterface=True)
    del conf["ipam"]
    pod, res = add(cni_lab, conf)
    (eth0,) = ipj(pod, "link", "show", "dev", "eth0")
    assert "UP" not in eth0["flags"]
    assert "ips" not in res
    cni_lab.ok("stowage-bridge", "DEL", conf, "c1", pod)
    assert cni_lab.host_links() == []


def test_enabledad_keeps_dad(cni_lab: Lab) -> None:
    for enabledad, tentative_allowed in ((False, False), (True, True)):
        conf = bridge_conf(
            cni_lab,
            subnet="10.199.12.0/24",
            v6="fd00:199:12::/64",
            enabledad=enabledad,
            name=f"stwtestdad{int(enabledad)}",
            bridge=f"stwtestbr{int(enabledad)}",
        )
        pod, _res = add(cni_lab, conf)
        a6 = [
            a
            for a in ipj(pod, "addr", "show", "dev", "eth0")[0]["addr_info"]
            if a["family"] == "inet6" and a["scope"] == "global"
        ]
        assert a6
        if not tentative_allowed:
            assert not a6[0].get("tentative")
            assert a6[0].get("nodad") is True
        else:
            assert not a6[0].get("nodad")


def test_ip_masq_rules_only_for_our_pods(cni_lab: Lab) -> None:
    conf = bridge_conf(cni_lab, isGateway=True, ipMasq=True)
    _pod, _res = add(cni_lab, conf)
    chain = sh(
        "nft", "list", "chain", "inet", "stowage_cni", "postrouting", ns=cni_lab.host
    ).stdout.decode()
    assert "@masq4" in chain
    assert "masquerade" in chain
    assert (
        "10.199.10.2 . 10.199.10.0/24"
        in sh(
            "nft", "list", "set", "inet", "stowage_cni", "local4", ns=cni_lab.host
        ).stdout.decode()
    )


def test_port_mappings_dnat_hairpin_and_local(cni_lab: Lab) -> None:
    conf = bridge_conf(
        cni_lab,
        isGateway=True,
        ipMasq=True,
        hairpinMode=True,
        runtimeConfig={
            "portMappings": [
                {"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"},
                {
                    "hostPort": 18443,
                    "containerPort": 8080,
                    "protocol": "tcp",
                    "hostIP": "10.199.10.1",
                },
            ]
        },
    )
    pod, _res = add(cni_lab, conf)
    other = cni_lab.pod()
    cni_lab.ok("stowage-bridge", "ADD", bridge_conf(cni_lab, isGateway=True), "c2", other)
    with tcp_server(pod, "0.0.0.0", 8080):  # noqa: S104 - inside the pod namespace
        # from the host namespace to a host address: the output hook's DNAT
        assert tcp_peer(cni_lab.host, "10.199.10.1", 18080) == "10.199.10.1"
        assert tcp_peer(cni_lab.host, "10.199.10.1", 18443) == "10.199.10.1"
        # from another pod: prerouting DNAT, the client's own address is kept
        assert tcp_peer(other, "10.199.10.1", 18080) == "10.199.10.3"
        # hairpin: the pod reaches itself through its host port, masqueraded
        assert tcp_peer(pod, "10.199.10.1", 18080) == "10.199.10.1"
        # localhost of the host namespace, masqueraded to the bridge address
        assert tcp_peer(cni_lab.host, "127.0.0.1", 18080) == "10.199.10.1"
    cni_lab.ok("stowage-bridge", "DEL", conf, "c1", pod)
    assert not any(e.startswith(("hp4", "hairpin4")) for e in cni_lab.nft_elements())
