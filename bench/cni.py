"""``cni-add``, ``cni-del``, ``cni-add-parallel20``: stowage-bridge (with stowage-host-local)
against Debian's reference ``bridge`` (with ``host-local``), in one run.

Both run the same config (isGateway, ipMasq, hairpinMode) in two identical throwaway "host"
network namespaces, so nothing touches the machine's own network and neither plugin sees
the other's rules. The bench process enters a namespace itself before it starts a plugin, so
no wrapper process is timed. ADDs and DELs of the two plugins are interleaved one by one,
so machine noise hits both alike. Figures are milliseconds (lower is better): the median and
the p90 of ``ROUNDS`` calls each, and the median wall time of 20 ADDs started at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator

from cni_bridge.install import install

__all__ = ["bench_cni"]

ROUNDS = 200
PARALLEL = 20
PARALLEL_ROUNDS = 5
REF = "/usr/lib/cni"
CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):
        os.setns(fd, CLONE_NEWNET)
        return
    import ctypes

    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


@contextlib.contextmanager
def _inside(ns: str) -> Iterator[None]:
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        _setns(fd)
        yield
    finally:
        _setns(home)
        os.close(fd)
        os.close(home)


class Side:
    def __init__(self, name: str, exe: str, conf: dict[str, object], tmp: str) -> None:
        self.name = name
        self.exe = exe
        self.host = f"stwtest-bh-{secrets.token_hex(3)}"
        self.pod = f"stwtest-bp-{secrets.token_hex(3)}"
        self.stdin = json.dumps(conf).encode()
        self.path = f"{tmp}/bin:{REF}"

    def env(self, command: str, i: int) -> dict[str, str]:
        return {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": f"bench{i}",
            "CNI_IFNAME": f"eth{i}",
            "CNI_NETNS": f"/run/netns/{self.pod}",
            "CNI_PATH": self.path,
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }

    def call(self, command: str, i: int) -> float:
        with _inside(self.host):
            t = time.perf_counter()
            r = subprocess.run(
                [self.exe],
                input=self.stdin,
                env=self.env(command, i),
                capture_output=True,
                check=False,
            )
            dt = time.perf_counter() - t
        if r.returncode != 0:
            raise RuntimeError(f"{self.name} {command} {i}: {r.stdout!r} {r.stderr!r}")
        return dt * 1000

    def parallel(self, first: int) -> float:
        with _inside(self.host):
            t = time.perf_counter()
            procs = [
                subprocess.Popen(
                    [self.exe],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=self.env("ADD", first + k),
                )
                for k in range(PARALLEL)
            ]
            outs = [p.communicate(self.stdin) for p in procs]
            dt = time.perf_counter() - t
        bad = [o for p, o in zip(procs, outs, strict=True) if p.returncode != 0]
        if bad:
            raise RuntimeError(f"{self.name} parallel ADD: {bad[0]!r}")
        return dt * 1000


def _conf(tmp: str, side: str, ours: bool) -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": "stwbench",
        "type": "stowage-bridge" if ours else "bridge",
        "bridge": "stwtestbench0",
        "isGateway": True,
        "ipMasq": True,
        "hairpinMode": True,
        **({"stateDir": f"{tmp}/{side}/state"} if ours else {}),
        "ipam": {
            "type": "stowage-host-local" if ours else "host-local",
            "subnet": "10.199.96.0/20",
            "dataDir": f"{tmp}/{side}/ipam",
        },
    }


def _p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10)[-1]


@contextlib.contextmanager
def _agent(host_ns: str, sock: str) -> Iterator[None]:
    """A ``cni_bridge.agent`` in the plugin's host namespace, stopped on exit."""
    import sys

    p = subprocess.Popen(
        ["ip", "netns", "exec", host_ns, sys.executable, "-m", "cni_bridge.agent", "--socket", sock]
    )
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            if time.monotonic() > deadline or p.poll() is not None:
                raise RuntimeError("the CNI agent did not start")
            time.sleep(0.05)
        yield
    finally:
        p.terminate()
        p.wait(10)


def bench_cni(rounds: int = ROUNDS, with_agent: bool = True) -> list[tuple[str, float, float]]:
    """(name, stowage ms, reference ms) for every figure. With ``with_agent`` (the
    deployment ``make setup`` makes) our plugin finds a resident agent; the ``-noagent``
    figures rerun ADD and DEL with every call done in the plugin process itself."""
    out = _run(rounds, agent=True) if with_agent else []
    plain = _run(rounds, agent=False)
    return out + [(f"{n}-noagent" if with_agent else n, a, b) for n, a, b in plain]


def _run(rounds: int, agent: bool) -> list[tuple[str, float, float]]:
    tmp = tempfile.mkdtemp(prefix="stwtest-bench-")
    sock = f"{tmp}/agent.sock" if agent else ""
    install(f"{tmp}/bin", None, agent_socket=sock)
    ours = Side("stowage", f"{tmp}/bin/stowage-bridge", _conf(tmp, "ours", True), tmp)
    ref = Side("reference", f"{REF}/bridge", _conf(tmp, "ref", False), tmp)
    sides = (ours, ref)
    with contextlib.ExitStack() as stack:
        for s in sides:
            subprocess.run(["ip", "netns", "add", s.host], check=True)
            stack.callback(subprocess.run, ["ip", "netns", "del", s.host], check=False)
            subprocess.run(["ip", "netns", "add", s.pod], check=True)
            stack.callback(subprocess.run, ["ip", "netns", "del", s.pod], check=False)
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        if agent:
            stack.enter_context(_agent(ours.host, sock))
        return _measure(ours, ref, rounds)


def _measure(ours: Side, ref: Side, rounds: int) -> list[tuple[str, float, float]]:
    sides = (ours, ref)
    # One warm-up ADD/DEL each: creates the bridge, tables and page cache for both.
    for s in sides:
        s.call("ADD", 9999)
        s.call("DEL", 9999)
    add: dict[str, list[float]] = {s.name: [] for s in sides}
    dele: dict[str, list[float]] = {s.name: [] for s in sides}
    for i in range(rounds):
        for s in sides:
            add[s.name].append(s.call("ADD", i))
    for i in range(rounds):
        for s in sides:
            dele[s.name].append(s.call("DEL", i))
    par: dict[str, list[float]] = {s.name: [] for s in sides}
    for r in range(PARALLEL_ROUNDS):
        first = 10000 + r * PARALLEL
        for s in sides:
            par[s.name].append(s.parallel(first))
            for k in range(PARALLEL):
                s.call("DEL", first + k)
    med = statistics.median
    return [
        ("cni-add", med(add["stowage"]), med(add["reference"])),
        ("cni-add-p90", _p90(add["stowage"]), _p90(add["reference"])),
        ("cni-del", med(dele["stowage"]), med(dele["reference"])),
        ("cni-del-p90", _p90(dele["stowage"]), _p90(dele["reference"])),
        ("cni-add-parallel20", med(par["stowage"]), med(par["reference"])),
    ]


if __name__ == "__main__":
    for name, a, b in bench_cni():
        print(f"BENCH {name} stowage={a:.3f} reference={b:.3f} ratio={a / b:.3f}", flush=True)
