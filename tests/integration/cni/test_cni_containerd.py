"""Interop: Debian's containerd 1.6 runs a pod with ``stowage-bridge`` and
``stowage-host-local`` as its CNI network (no stowage daemon, no agent: the plugins alone),
the pod gets our address, and stopping and removing it leaves nothing behind.

The test plays a node inside a throwaway "host" network namespace that it enters itself:
the local registry serving the pause image, containerd, and so the plugins it executes,
their bridge, forwarding sysctls and nftables tables all live there, and deleting that
namespace removes them. What outlives a namespace is cleaned up explicitly, also when the
test fails: containerd is stopped, its shims killed, the mounts under its state directory
unmounted, and the pod namespaces it made under /run/netns removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cni_bridge.bridge import host_veth_name
from cni_bridge.install import install
from images.hosts import write_mirror_config
from tests.harness import registry, wait_for
from tests.images.build import build_images
from tests.images.catalog import catalog
from tests.images.push import push_all

from .harness import REF_DIR, sh

pytestmark = pytest.mark.root

TOP = Path(__file__).resolve().parents[3]
CRICTL = TOP / ".tools" / "bin" / "crictl"
PAUSE = "registry.k8s.io/pause:3.9"
SUBNET = "10.199.61.0/24"
NETWORK = "stwtest-ctd"
BRIDGE = "stwtestctd0"
CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def _inside(ns: str) -> Iterator[None]:
    """This (single) thread, and every process it starts, in network namespace ``ns``."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(fd)
        finally:
            os.close(fd)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def _conflist(work: str) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",  # containerd 1.6's libcni speaks up to 1.0.0
        "name": NETWORK,
        "plugins": [
            {
                "type": "stowage-bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "stateDir": f"{work}/state",
                "capabilities": {"portMappings": True},
                "ipam": {
                    "type": "stowage-host-local",
                    "ranges": [[{"subnet": SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": f"{work}/ipam",
                },
            }
        ],
    }


def _containerd_config(work: str) -> str:
    return (
        "version = 2\n"
        f'root = "{work}/root"\nstate = "{work}/run"\n'
        f'[grpc]\n  address = "{work}/containerd.sock"\n'
        '[plugins."io.containerd.grpc.v1.cri"]\n'
        '  stream_server_address = "127.0.0.1"\n'
        f'  sandbox_image = "{PAUSE}"\n'
        "  # This kernel refuses negative oom_score_adj values.\n"
        "  restrict_oom_score_adj = true\n"
        '[plugins."io.containerd.grpc.v1.cri".registry]\n'
        f'  config_path = "{work}/certs.d"\n'
        '[plugins."io.containerd.grpc.v1.cri".cni]\n'
        f'  conf_dir = "{work}/net.d"\n  bin_dir = "{work}/bin"\n'
    )


def _publish_pause(url: str, work: str) -> None:
    entries = [e for e in catalog() if e.ref == PAUSE]
    built = build_images(Path(work) / "layouts", entries=entries)
    assert [b.ref for b in built] == [PAUSE]
    push_all({b.ref: str(b.layout) for b in built}, url)


def _pod_namespaces() -> set[str]:
    try:
        return {n for n in os.listdir("/run/netns") if n.startswith("cni-")}
    except FileNotFoundError:
        return set()


@contextlib.contextmanager
def _containerd(work: str) -> Iterator[str]:
    """containerd on private sockets and directories; on exit it is stopped and its shims,
    mounts and pod namespaces are gone."""
    config = os.path.join(work, "config.toml")
    Path(config).write_text(_containerd_config(work))
    namespaces_before = _pod_namespaces()
    log = open(os.path.join(work, "containerd.log"), "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(["containerd", "--config", config], stdout=log, stderr=log)
    sock = os.path.join(work, "containerd.sock")
    try:
        wait_for(lambda: os.path.exists(sock), 30, "the containerd socket")
        yield f"unix://{sock}"
    finally:
        if proc.poll() is None:
            _remove_pods(f"unix://{sock}")  # a failed test may leave its pod running
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        _kill_tasks(work)
        _kill_shims(work)
        _unmount_under(work)
        for ns in _pod_namespaces() - namespaces_before:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _remove_pods(endpoint: str) -> None:
    base = [str(CRICTL), "--runtime-endpoint", endpoint, "--timeout", "30s"]
    listing = subprocess.run([*base, "pods", "-q"], capture_output=True, text=True,
                             timeout=60, check=False)
    for sid in listing.stdout.split():
        for verb in ("stopp", "rmp"):
            subprocess.run([*base, verb, sid], capture_output=True, timeout=60, check=False)


def _kill_tasks(work: str) -> None:
    """Last resort when the CRI could not remove a pod (containerd died): its processes,
    found by their cgroup, and the cgroup directories runc made for them."""
    try:
        ids = os.listdir(f"{work}/run/io.containerd.runtime.v2.task/k8s.io")
    except FileNotFoundError:
        return
    for cid in ids:
        dirs = glob.glob(f"/sys/fs/cgroup/*/k8s.io/{cid}") + glob.glob(
            f"/sys/fs/cgroup/k8s.io/{cid}")
        for d in dirs:
            with contextlib.suppress(OSError):
                for pid in Path(d, "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
        deadline = time.monotonic() + 10
        for d in dirs:
            while os.path.isdir(d) and time.monotonic() < deadline:
                try:
                    os.rmdir(d)
                except OSError:
                    time.sleep(0.05)  # busy until the killed processes are reaped


def _kill_shims(work: str) -> None:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline[0].endswith(b"containerd-shim-runc-v2") and work.encode() in b" ".join(
            cmdline
        ):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)


def _unmount_under(work: str) -> None:
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    for m in sorted((m for m in mounts if m.startswith(work + "/")), reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True, check=False)


def _crictl(endpoint: str, *args: str) -> str:
    res = subprocess.run(
        [str(CRICTL), "--runtime-endpoint", endpoint, "--image-endpoint", endpoint,
         "--timeout", "120s", *args],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert res.returncode == 0, f"crictl {' '.join(args)}: {res.stderr}"
    return res.stdout


def _links() -> set[str]:
    return {link["ifname"] for link in json.loads(sh("ip", "-j", "link").stdout or b"[]")}


def _nft_elements_with(ip: str) -> list[str]:
    out = sh("nft", "-j", "list", "ruleset").stdout
    found = []
    for item in json.loads(out)["nftables"]:
        for kind in ("set", "map"):
            s = item.get(kind)
            if s and s.get("table") == "stowage_cni":
                found += [f"{s['name']}: {e}" for e in s.get("elem", []) if ip in json.dumps(e)]
    return found


def _skip_unless_ready() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for tool in ("containerd", "runc", "docker-registry", "nft", "ip"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")
    if not CRICTL.exists() or not os.path.exists(f"{REF_DIR}/loopback"):
        pytest.skip("needs crictl in .tools and Debian's CNI loopback plugin")


def test_containerd_runs_a_pod_on_our_network() -> None:
    _skip_unless_ready()
    ns = f"stwtest-h-{secrets.token_hex(4)}"
    work = tempfile.mkdtemp(prefix="stwtest-ctd-")
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        sh("ip", "netns", "add", ns)
        stack.callback(sh, "ip", "netns", "del", ns, check=False)
        sh("ip", "link", "set", "lo", "up", ns=ns)
        stack.enter_context(_inside(ns))

        # The node: our plugins (and the loopback plugin containerd always runs) in a bin
        # dir of the test's own, one conflist, the pause image in a local registry.
        install(f"{work}/bin", None, agent_socket="")
        os.symlink(f"{REF_DIR}/loopback", f"{work}/bin/loopback")
        os.makedirs(f"{work}/net.d")
        Path(f"{work}/net.d/10-{NETWORK}.conflist").write_text(json.dumps(_conflist(work)))
        reg = stack.enter_context(registry())
        _publish_pause(reg.url, work)
        write_mirror_config(f"{work}/certs.d", ["registry.k8s.io"], reg.url)
        endpoint = stack.enter_context(_containerd(work))
        wait_for(lambda: subprocess.run(
            [str(CRICTL), "--runtime-endpoint", endpoint, "info"], capture_output=True,
            check=False, timeout=30).returncode == 0, 60, "containerd's CRI plugin")

        pod = {"metadata": {"name": "stwtest-pod", "namespace": "default",
                            "uid": secrets.token_hex(8), "attempt": 0},
               "log_directory": f"{work}/logs", "linux": {}}
        Path(f"{work}/pod.json").write_text(json.dumps(pod))
        try:
            sid = _crictl(endpoint, "runp", f"{work}/pod.json").strip()
        except AssertionError as exc:
            log = Path(f"{work}/containerd.log").read_text(errors="replace")
            raise AssertionError(f"{exc}\ncontainerd log tail:\n{log[-4000:]}") from exc
        inspect = json.loads(_crictl(endpoint, "inspectp", "-o", "json", sid))
        ip = inspect["status"]["network"]["ip"]
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(SUBNET)
        (netns,) = [n["path"] for n in inspect["info"]["runtimeSpec"]["linux"]["namespaces"]
                    if n["type"] == "network"]
        inside = json.loads(sh("nsenter", f"--net={netns}", "ip", "-j", "addr", "show",
                               "eth0").stdout)
        assert f"{ip}/24" in {f"{a['local']}/{a['prefixlen']}" for a in inside[0]["addr_info"]}
        routes = json.loads(sh("nsenter", f"--net={netns}", "ip", "-j", "route").stdout)
        assert any(r["dst"] == "default" and r.get("gateway") == "10.199.61.1" for r in routes)

        # What our plugin set up for it, where our plugin keeps it.
        veth = host_veth_name(NETWORK, sid, "eth0")
        assert veth in _links()
        assert BRIDGE in _links()
        ip_file = Path(f"{work}/ipam/{NETWORK}/{ip}")
        assert ip_file.read_bytes() == f"{sid}\r\neth0".encode()
        record = Path(f"{work}/state/{NETWORK}/{sid}:eth0.json")
        assert json.loads(record.read_text())["ips"] == [f"{ip}/24"]
        assert _nft_elements_with(ip), "the pod's address is masqueraded"

        _crictl(endpoint, "stopp", sid)
        _crictl(endpoint, "rmp", sid)
        assert veth not in _links()
        assert not ip_file.exists()
        assert not record.exists()
        assert _nft_elements_with(ip) == []
        assert json.loads(_crictl(endpoint, "pods", "-o", "json"))["items"] == []
