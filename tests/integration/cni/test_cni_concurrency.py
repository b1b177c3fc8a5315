"""50 ADDs from separate processes at once, then 50 DELs: unique addresses, nothing lost,
nothing left."""

from __future__ import annotations

import json
import os

import pytest

from .harness import Lab, bridge_conf, sh

pytestmark = pytest.mark.root

N = 50


def run_all(
    lab: Lab, command: str, conf: dict[str, object], pods: list[str]
) -> list[tuple[int, bytes]]:
    stdin = json.dumps(conf).encode()
    procs = [
        lab.popen("stowage-bridge", lab.env(command, f"p{i}", pod), stdin)
        for i, pod in enumerate(pods)
    ]
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=120)
        out.append((p.returncode, stdout))
    return out


def test_50_parallel_adds_then_dels(cni_lab: Lab) -> None:
    pods = [cni_lab.pod() for _ in range(N)]
    conf = bridge_conf(
        cni_lab,
        isGateway=True,
        ipMasq=True,
        hairpinMode=True,
        subnet="10.199.20.0/24",
        runtimeConfig={"portMappings": []},
    )
    results = run_all(cni_lab, "ADD", conf, pods)
    assert [rc for rc, _ in results] == [0] * N, [o for rc, o in results if rc][:3]
    ips = [json.loads(o)["ips"][0]["address"] for _, o in results]
    assert len(set(ips)) == N
    assert len(cni_lab.host_links()) == N
    files = [
        f
        for f in os.listdir(os.path.join(cni_lab.tmp, "ipam", "stwtestnet"))
        if f.startswith("10.")
    ]
    assert sorted(files) == sorted(ip.split("/")[0] for ip in ips)
    assert len([e for e in cni_lab.nft_elements() if e.startswith("masq4:")]) == N
    chain = sh(
        "nft", "list", "chain", "inet", "stowage_cni", "postrouting", ns=cni_lab.host
    ).stdout.decode()
    assert chain.count("masquerade") == 5, "concurrent ADDs never duplicate the fixed rules"

    results = run_all(cni_lab, "DEL", conf, pods)
    assert [rc for rc, _ in results] == [0] * N
    assert cni_lab.host_links() == []
    assert cni_lab.nft_elements() == set()
    assert [
        f
        for f in os.listdir(os.path.join(cni_lab.tmp, "ipam", "stwtestnet"))
        if f.startswith("10.")
    ] == []
    assert os.listdir(os.path.join(cni_lab.tmp, "state", "stwtestnet")) == []
    for pod in pods[:5]:
        links = json.loads(sh("ip", "-j", "link", ns=pod).stdout)
        assert [link["ifname"] for link in links] == ["lo"]
