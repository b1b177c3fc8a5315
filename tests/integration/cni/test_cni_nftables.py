"""The netlink fast path for nftables elements (``nft.Runner``) against ``nft`` itself: the
same elements leave the same ruleset, and a batch the kernel refuses is explained by nft
and changes nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from .harness import Lab, sh

pytestmark = pytest.mark.root
ROOT = str(Path(__file__).resolve().parents[3])

# Runs inside a namespace: declares our tables with nft, then applies the steps with a
# Runner whose nft is ``argv[1]``; prints each step's outcome and the runner's fallbacks.
_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[4])
from cni_bridge import nft
from cni_bridge.config import PortMapping
from cni_bridge.errors import KernelError

nft.Runner(use_netlink=False).add(nft.elements(["10.199.20.9/24"], True, []))
runner = nft.Runner(nft=sys.argv[1], use_netlink=sys.argv[2] == "1")
full = nft.elements(["10.199.20.5/24", "fd00:199:20::5/64"], True,
                    [PortMapping(18080, 80, "tcp"), PortMapping(53, 53, "udp", "10.0.0.1"),
                     PortMapping(9000, 90, "sctp", "fd00::1")],
                    "stwtestveth0", "02:00:00:00:00:01")
clash = nft.elements(["10.199.20.6/24"], False, [PortMapping(18080, 81, "tcp")])
steps = {"add": lambda: runner.add(full), "again": lambda: runner.add(full),
         "clash": lambda: runner.add(clash), "del": lambda: runner.delete(full)(),
         "del-again": lambda: runner.delete(full)()}
out = {}
for name in sys.argv[3].split(","):
    try:
        steps[name]()
        out[name] = "ok"
    except KernelError as exc:
        out[name] = exc.details
out["fallbacks"] = runner.fallbacks
print(json.dumps(out))
"""


def _run(lab: Lab, ns: str, nft_path: str, netlink: bool, steps: str) -> dict[str, Any]:
    out = sh(sys.executable, "-c", _SCRIPT, nft_path, "1" if netlink else "0", steps, ROOT, ns=ns)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _ruleset(ns: str) -> str:
    return sh("nft", "list", "ruleset", ns=ns).stdout.decode()


def test_netlink_batches_leave_what_nft_leaves(cni_lab: Lab) -> None:
    via_nft, via_netlink = cni_lab.pod(), cni_lab.pod()
    assert _run(cni_lab, via_nft, "/usr/sbin/nft", False, "add,again") == {
        "add": "ok", "again": "ok", "fallbacks": 0}
    # No usable nft at all: every element must have gone over netlink.
    assert _run(cni_lab, via_netlink, "/nonexistent/nft", True, "add,again") == {
        "add": "ok", "again": "ok", "fallbacks": 0}
    added = _ruleset(via_nft)
    assert "18080 : 10.199.20.5 . 80" in added
    assert '"stwtestveth0" . 02:00:00:00:00:01' in added
    assert _ruleset(via_netlink) == added
    assert _run(cni_lab, via_nft, "/usr/sbin/nft", False, "del,del-again")["del-again"] == "ok"
    assert _run(cni_lab, via_netlink, "/nonexistent/nft", True, "del,del-again") == {
        "del": "ok", "del-again": "ok", "fallbacks": 0}
    removed = _ruleset(via_nft)
    assert "10.199.20.5" not in removed
    assert _ruleset(via_netlink) == removed


def test_a_refused_batch_is_explained_by_nft_and_changes_nothing(cni_lab: Lab) -> None:
    ns = cni_lab.pod()
    out = _run(cni_lab, ns, "/usr/sbin/nft", True, "add,clash")
    assert out["add"] == "ok"
    assert out["fallbacks"] == 1, "the kernel refused the netlink batch, nft retried it"
    assert "File exists" in out["clash"], out
    ruleset = _ruleset(ns)
    assert "10.199.20.6" not in ruleset
    assert "tcp . 18080 : 10.199.20.5 . 80" in ruleset
