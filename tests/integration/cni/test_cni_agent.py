"""The agent changes nothing but speed: the same answers through it, and the plugin still
works when the agent is gone or its socket is stale."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from cni_bridge.install import install

from .harness import Lab, bridge_conf

pytestmark = pytest.mark.root


def test_through_the_agent_and_without_it(cni_lab: Lab) -> None:
    sock = os.path.join(cni_lab.tmp, "agent.sock")
    install(cni_lab.bin_dir, None, agent_socket=sock)
    agent = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            cni_lab.host,
            sys.executable,
            "-m",
            "cni_bridge.agent",
            "--socket",
            sock,
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            assert agent.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert oct(os.stat(sock).st_mode & 0o777) == "0o600"
        conf = bridge_conf(cni_lab, isGateway=True, ipMasq=True)
        pods = [cni_lab.pod() for _ in range(3)]
        res = [cni_lab.ok("stowage-bridge", "ADD", conf, f"a{i}", p) for i, p in enumerate(pods)]
        assert [r["ips"][0]["address"] for r in res] == [
            "10.199.10.2/24",
            "10.199.10.3/24",
            "10.199.10.4/24",
        ]
        cni_lab.ok("stowage-bridge", "CHECK", {**conf, "prevResult": res[0]}, "a0", pods[0])
        cni_lab.ok("stowage-bridge", "DEL", conf, "a0", pods[0])
    finally:
        agent.terminate()
        agent.wait(10)
    # The agent is gone (its socket too, or stale): the plugin does the work itself.
    cni_lab.ok("stowage-bridge", "DEL", conf, "a1", pods[1])
    open(sock, "w").close()  # a stale path that refuses connections
    cni_lab.ok("stowage-bridge", "DEL", conf, "a2", pods[2])
    assert cni_lab.host_links() == []
    assert cni_lab.nft_elements() == set()
