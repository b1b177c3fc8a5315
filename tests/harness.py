"""Processes the tests drive for real: Debian's docker-registry on loopback and a stowage-cri
daemon on a private socket. Both are context managers that stop their process and remove their
files on exit, also when the block fails."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

__all__ = ["Registry", "StowageDaemon", "free_port", "registry", "stowage_daemon", "wait_for"]

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIRRORED_HOSTS = (
    "registry.k8s.io",
    "k8s.gcr.io",
    "gcr.io",
    "docker.io",
    "public.ecr.aws",
    "quay.io",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():  # type: ignore[operator]
                return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Registry:
    url: str  # http://127.0.0.1:PORT
    host: str  # 127.0.0.1:PORT
    storage: str


@contextlib.contextmanager
def registry() -> Iterator[Registry]:
    """Debian's docker-registry on 127.0.0.1, a free port and a temporary storage directory."""
    port = free_port()
    work = tempfile.mkdtemp(prefix="stowage-registry-")
    config = os.path.join(work, "config.yml")
    with open(config, "w") as f:
        f.write(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {work}/data\n  delete:\n"
            "    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
        )
    log = open(os.path.join(work, "registry.log"), "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(["docker-registry", "serve", config], stdout=log, stderr=log)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(url + "/v2/", timeout=1).status_code == 200, 20, "registry")
        yield Registry(url=url, host=f"127.0.0.1:{port}", storage=f"{work}/data")
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def write_mirrors(config_dir: str, mirror_url: str) -> None:
    """Maps the public registries to ``mirror_url``, so images keep their upstream names."""
    from images.hosts import write_mirror_config

    write_mirror_config(config_dir, list(MIRRORED_HOSTS), mirror_url)


@contextlib.contextmanager
def cni_network(subnet: str | None = None, bridge: str | None = None) -> Iterator[str]:
    """A CNI config dir with one network of Debian's reference plugins (bridge, host-local,
    portmap) on a subnet of the test's own; the bridge, IPAM state and port-map chains are
    removed on exit. Without arguments the bridge and a /24 in 10.203.0.0/16 are picked at
    random, so concurrent runs do not collide."""
    rng = secrets.SystemRandom()
    subnet = subnet or f"10.203.{rng.randrange(256)}.0/24"
    bridge = bridge or f"stw{secrets.token_hex(4)}"
    work = tempfile.mkdtemp(prefix="stowage-cni-")
    conf = {
        "cniVersion": "1.0.0",
        "name": "stowage-test",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": f"{work}/ipam",
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    os.makedirs(f"{work}/net.d")
    with open(f"{work}/net.d/10-stowage-test.conflist", "w") as f:
        json.dump(conf, f)
    nat_before = {family: _has_nat_table(family) for family in ("ip", "ip6")}
    try:
        yield f"{work}/net.d"
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        _drop_portmap_chains()
        for family, existed in nat_before.items():
            if not existed:
                _drop_empty_nat_table(family)
        shutil.rmtree(work, ignore_errors=True)


def _has_nat_table(family: str) -> bool:
    res = subprocess.run(["nft", "list", "table", family, "nat"], capture_output=True, check=False)
    return res.returncode == 0


def _drop_empty_nat_table(family: str) -> None:
    """iptables-nft creates the nat table (base chains only) the first time anyone lists it; a
    table the test run created and left without rules goes."""
    res = subprocess.run(
        ["nft", "list", "table", family, "nat"], capture_output=True, text=True, check=False
    )
    body = [line.strip() for line in res.stdout.splitlines()]
    rules = [
        line for line in body
        if line and not line.startswith(("table", "chain", "type", "}"))
    ]  # fmt: skip
    if res.returncode == 0 and not rules:
        subprocess.run(["nft", "delete", "table", family, "nat"], capture_output=True, check=False)


@contextlib.contextmanager
def stowage_cni_network(subnet: str | None = None) -> Iterator[str]:
    """Like ``cni_network`` but with our own plugins (stowage-bridge, stowage-host-local,
    CNI 1.1.0), installed into the test's own bin dir next to its conf dir."""
    rng = secrets.SystemRandom()
    subnet = subnet or f"10.206.{rng.randrange(256)}.0/24"
    bridge = f"stw{secrets.token_hex(4)}"
    work = tempfile.mkdtemp(prefix="stowage-cni-")
    from cni_bridge.install import install

    install(f"{work}/bin", None, agent_socket="")
    conf = {
        "cniVersion": "1.1.0",
        "name": "stowage-own",
        "plugins": [
            {
                "type": "stowage-bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": False,
                "capabilities": {"portMappings": True},
                "ipam": {
                    "type": "stowage-host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "dataDir": f"{work}/ipam",
                },
            }
        ],
    }
    os.makedirs(f"{work}/net.d")
    with open(f"{work}/net.d/10-stowage-own.conflist", "w") as f:
        json.dump(conf, f)
    try:
        yield f"{work}/net.d"
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


_PORTMAP_CHAINS = (
    "CNI-HOSTPORT-DNAT",
    "CNI-HOSTPORT-SNAT",
    "CNI-HOSTPORT-MASQ",
    "CNI-HOSTPORT-SETMARK",
)


def _drop_portmap_chains() -> None:
    """The reference portmap plugin leaves its top-level chains behind; tests must not."""
    listing = subprocess.run(
        ["iptables", "-t", "nat", "-S"], capture_output=True, text=True, check=False
    ).stdout
    for line in listing.splitlines():
        if line.startswith("-A ") and any(f"-j {c}" in line for c in _PORTMAP_CHAINS):
            # iptables-save quotes comments: split as a shell would.
            subprocess.run(
                ["iptables", "-t", "nat", "-D", *shlex.split(line)[1:]],
                capture_output=True,
                check=False,
            )
    for chain in _PORTMAP_CHAINS:
        for op in ("-F", "-X"):
            subprocess.run(["iptables", "-t", "nat", op, chain], capture_output=True, check=False)


class StowageDaemon:
    """A running stowage-cri; ``kill`` (SIGKILL, as a crash) and ``start`` again to test
    recovery."""

    def __init__(self, work: str, argv: list[str]) -> None:
        self.work = work
        self.argv = argv
        self.socket = os.path.join(work, "stowage.sock")
        self.endpoint = f"unix://{self.socket}"
        self.root = os.path.join(work, "root")
        self.state = os.path.join(work, "state")
        self.registry_config_dir = os.path.join(work, "certs.d")
        self.log_path = os.path.join(work, "stowage-cri.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=log,
                cwd=TOP,
                env=dict(
                    os.environ, PATH=f"{TOP}/.tools/bin:{os.environ.get('PATH', '/usr/bin:/bin')}"
                ),
            )
        proc = self.proc
        wait_for(
            lambda: os.path.exists(self.socket) or proc.poll() is not None, 30, "stowage-cri socket"
        )
        if proc.poll() is not None:
            with open(self.log_path) as f:
                raise RuntimeError(f"stowage-cri exited: {f.read()[-2000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)


@contextlib.contextmanager
def stowage_daemon(
    mirror_url: str | None = None, cni_conf_dir: str | None = None, root_size: str | None = None
) -> Iterator[StowageDaemon]:
    """A stowage-cri with its own root, state, socket and registry config; on exit every pod
    it still has is stopped and removed (by the daemon itself), then the daemon and its files.
    With ``root_size`` (e.g. "40m") the root is a tmpfs of that size, to fill the disk."""
    work = tempfile.mkdtemp(prefix="stowage-cri-")
    os.chmod(work, 0o711)  # noqa: S103 - as /run: user-namespaced containers traverse it
    if root_size is not None:
        os.makedirs(f"{work}/root")
        subprocess.run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"size={root_size}",
                "stowage-test-root",
                f"{work}/root",
            ],
            check=True,
        )
    certs = os.path.join(work, "certs.d")
    os.makedirs(certs)
    if mirror_url is not None:
        write_mirrors(certs, mirror_url)
    argv = [
        sys.executable,
        "-m",
        "cri_shim.server",
        "--socket",
        f"unix://{work}/stowage.sock",
        "--root",
        f"{work}/root",
        "--state",
        f"{work}/state",
        "--registry-config-dir",
        certs,
        "--log-level",
        os.environ.get("STOWAGE_LOG_LEVEL", "info"),
        "--cni-conf-dir",
        cni_conf_dir or os.path.join(work, "net.d"),
    ]
    if cni_conf_dir is not None and os.path.isdir(os.path.join(cni_conf_dir, "..", "bin")):
        argv += ["--cni-bin-dir", os.path.normpath(os.path.join(cni_conf_dir, "..", "bin"))]
    if os.environ.get("STOWAGE_CONFIG"):
        argv += ["--config", os.environ["STOWAGE_CONFIG"]]
    daemon = StowageDaemon(work, argv)
    try:
        daemon.start()
        yield daemon
    finally:
        with contextlib.suppress(Exception):
            if daemon.proc is not None and daemon.proc.poll() is None:
                _remove_all_pods(daemon.endpoint)
        daemon.stop()
        _cleanup_state(daemon.state)
        if root_size is not None:
            subprocess.run(["umount", "-l", f"{work}/root"], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


def _remove_all_pods(endpoint: str) -> None:
    crictl = os.path.join(TOP, ".tools", "bin", "crictl")
    base = [crictl, "--runtime-endpoint", endpoint, "--image-endpoint", endpoint]
    ids = subprocess.run(
        [*base, "pods", "-q"], capture_output=True, text=True, timeout=60, check=False
    ).stdout.split()
    for pod in ids:
        subprocess.run([*base, "stopp", pod], capture_output=True, timeout=120, check=False)
        subprocess.run([*base, "rmp", "-f", pod], capture_output=True, timeout=120, check=False)


def _cleanup_state(state: str) -> None:
    """Whatever a crashed test left under the daemon's state: containers, mounts, pins."""
    runc_root = os.path.join(state, "runc")
    if os.path.isdir(runc_root):
        for cid in os.listdir(runc_root):
            subprocess.run(
                ["runc", "--root", runc_root, "delete", "--force", cid],
                capture_output=True,
                check=False,
            )
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    for target in sorted((m for m in mounts if m.startswith(state + "/")), reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)
    if state in mounts:
        subprocess.run(["umount", "-l", state + "/ns"], capture_output=True, check=False)
