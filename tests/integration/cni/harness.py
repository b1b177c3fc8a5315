"""Throwaway network namespaces for the CNI tests, and a runtime's way of calling a plugin.

Every test gets its own "host" namespace (``stwtest-h-*``): the bridge, the nftables table,
the forwarding sysctls all live there, so nothing touches the real host and deleting the
namespace removes everything. Pod namespaces (``stwtest-c-*``) are made with ``ip netns add``
like a runtime does. All of them are deleted on exit, also when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cni_bridge.install import install

REF_DIR = "/usr/lib/cni"


def sh(
    *args: str, ns: str = "", check: bool = True, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    cmd = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    return subprocess.run(cmd, check=check, capture_output=True, input=input, timeout=60)


def ipj(ns: str, *args: str) -> Any:
    return json.loads(sh("ip", "-j", *args, ns=ns).stdout or b"[]")


_SERVER = """
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(4)
print("ready", flush=True)
s.settimeout(20)
while True:
    c, peer = s.accept()
    c.sendall(peer[0].encode())
    c.close()
"""

_CLIENT = """
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print(c.recv(100).decode())
"""


@contextlib.contextmanager
def tcp_server(ns: str, addr: str, port: int) -> Iterator[None]:
    """A server in ``ns`` that answers each connection with the peer address it saw."""
    p = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", _SERVER, addr, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == b"ready", p.stderr.read() if p.stderr else ""
        yield
    finally:
        p.kill()
        p.communicate()  # reaps it and closes the pipes


def tcp_peer(ns: str, addr: str, port: int) -> str:
    """Connect from ``ns``; returns the source address the server saw."""
    out = sh(sys.executable, "-c", _CLIENT, addr, str(port), ns=ns)
    return out.stdout.decode().strip()


@dataclass
class Lab:
    host: str
    tmp: str
    bin_dir: str
    pods: list[str] = field(default_factory=list)

    def pod(self) -> str:
        name = f"stwtest-c-{secrets.token_hex(4)}"
        sh("ip", "netns", "add", name)
        self.pods.append(name)
        return name

    def drop_pod(self, name: str) -> None:
        sh("ip", "netns", "del", name, check=False)

    def env(
        self, command: str, cid: str = "", pod: str = "", ifname: str = "eth0", args: str = ""
    ) -> dict[str, str]:
        env = {
            "CNI_COMMAND": command,
            "CNI_PATH": f"{self.bin_dir}:{REF_DIR}",
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        if cid:
            env.update(CNI_CONTAINERID=cid, CNI_IFNAME=ifname)
        if pod:
            env["CNI_NETNS"] = f"/run/netns/{pod}"
        if args:
            env["CNI_ARGS"] = args
        return env

    def popen(self, plugin: str, env: dict[str, str], stdin: bytes) -> subprocess.Popen[bytes]:
        exe = plugin if plugin.startswith("/") else os.path.join(self.bin_dir, plugin)
        p = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.host,
                "env",
                "-i",
                *(f"{k}={v}" for k, v in env.items()),
                exe,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert p.stdin is not None
        p.stdin.write(stdin)
        p.stdin.close()
        p.stdin = None  # written in full: communicate() must not touch it again
        return p

    def call(
        self,
        plugin: str,
        command: str,
        conf: dict[str, Any] | bytes,
        cid: str = "",
        pod: str = "",
        ifname: str = "eth0",
        args: str = "",
    ) -> tuple[Any, int]:
        stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
        p = self.popen(plugin, self.env(command, cid, pod, ifname, args), stdin)
        out, err = p.communicate(timeout=60)
        try:
            parsed = json.loads(out) if out.strip() else None
        except ValueError:
            parsed = {"unparsed": out.decode(), "stderr": err.decode()}
        return parsed, p.returncode

    def ok(
        self,
        plugin: str,
        command: str,
        conf: dict[str, Any],
        cid: str = "",
        pod: str = "",
        ifname: str = "eth0",
        args: str = "",
    ) -> Any:
        out, rc = self.call(plugin, command, conf, cid, pod, ifname, args)
        assert rc == 0, f"{plugin} {command} failed: {out}"
        return out

    def nft_elements(self) -> set[str]:
        """Every element of our tables, as 'set:element' strings."""
        out = sh("nft", "-j", "list", "ruleset", ns=self.host).stdout
        found = set()
        for item in json.loads(out)["nftables"]:
            for kind in ("set", "map"):
                s = item.get(kind)
                if s and s.get("table") == "stowage_cni":
                    for e in s.get("elem", []):
                        found.add(f"{s['name']}:{json.dumps(e, sort_keys=True)}")
        return found

    def host_links(self, prefix: str = "veth") -> list[str]:
        return [
            link["ifname"] for link in ipj(self.host, "link") if link["ifname"].startswith(prefix)
        ]


@contextlib.contextmanager
def lab() -> Iterator[Lab]:
    host = f"stwtest-h-{secrets.token_hex(4)}"
    tmp = tempfile.mkdtemp(prefix="stwtest-cni-")
    bin_dir = os.path.join(tmp, "bin")
    install(bin_dir, None, agent_socket="")
    sh("ip", "netns", "add", host)
    sh("ip", "link", "set", "lo", "up", ns=host)
    the_lab = Lab(host, tmp, bin_dir)
    try:
        yield the_lab
    finally:
        for pod in the_lab.pods:
            sh("ip", "netns", "del", pod, check=False)
        sh("ip", "netns", "del", host, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def bridge_conf(
    lab: Lab,
    subnet: str = "10.199.10.0/24",
    v6: str = "",
    name: str = "stwtestnet",
    bridge: str = "stwtestbr0",
    ipam_type: str = "stowage-host-local",
    version: str = "1.1.0",
    **extra: Any,
) -> dict[str, Any]:
    ranges = [[{"subnet": subnet}]]
    if v6:
        ranges.append([{"subnet": v6}])
    return {
        "cniVersion": version,
        "name": name,
        "type": "stowage-bridge",
        "bridge": bridge,
        "stateDir": os.path.join(lab.tmp, "state"),
        "ipam": {"type": ipam_type, "ranges": ranges, "dataDir": os.path.join(lab.tmp, "ipam")},
        **extra,
    }
