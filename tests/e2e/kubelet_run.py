"""``make e2e-kubelet``: a stock kubelet runs static pods on stowage-cri, with no API server.

The kubelet is v1.36.3 of k8s.io/kubernetes, built from the Go module proxy into
``.tools/bin/kubelet`` through the wrapper module in ``tests/e2e/kubelet``. It runs standalone:
no kubeconfig, pods come from a static-pod directory, images are pulled by stowage from a
local docker-registry under their upstream names, and the pod network is a test CNI network.

Theory of operation (``kubelet_node``). Everything the kubelet touches is ours and is undone on
exit, also when a check fails; each undo is registered on an ``ExitStack`` as the step is
taken:

- a work directory holds the kubelet's root dir (which the kubelet bind-mounts onto itself,
  rshared), pod log dir, cert dir, static-pod dir, flex-volume dir and ``resolv.conf``;
- the pods' cgroups live under a cgroup root of our own (``/stowage-kubelet-<hex>`` in every
  hierarchy), removed bottom-up at the end;
- the kubelet sets six kernel tunables when ``protectKernelDefaults`` is off (and refuses to
  start when it is on and they differ): their values are saved first and restored;
- some paths are fixed in the kubelet, whatever its root dir: it symlinks container logs into
  ``/var/log/containers`` and serves device-plugin registration on
  ``/var/lib/kubelet/device-plugins/kubelet.sock``. Our links are removed, and whichever of
  these paths did not exist before; we refuse to start next to a live kubelet's socket;
- network: the kubelet's servers listen on 127.0.0.1 only, it has no kubeconfig, no cluster
  DNS, no iptables chains (``makeIPTablesUtilChains: false``). Its node address is the gateway
  address of the test's CNI bridge, which we create up front: without a node IP the kubelet
  would resolve its node name through the host's DNS servers.

On exit the static pods are withdrawn and the kubelet given a moment to stop them, then it is
killed, every pod left on stowage is removed, mounts under the work directory are unmounted
and the rest above is undone.

The checks (``check_*``) are shared by ``tests/e2e/test_kubelet.py`` and ``main``; each
returns a one-line summary and raises ``AssertionError`` or ``TimeoutError`` on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from tests.harness import (
    TOP,
    StowageDaemon,
    cni_network,
    free_port,
    registry,
    stowage_daemon,
    wait_for,
)
from tests.images.publish import publish_catalog

__all__ = [
    "CHECKS",
    "KubeletNode",
    "check_kubelet_view",
    "check_liveness_probe",
    "check_restart_policy",
    "check_static_pod",
    "check_withdrawal",
    "kubelet_node",
    "leftovers",
    "main",
]

KUBELET = os.environ.get("STOWAGE_KUBELET", os.path.join(TOP, ".tools", "bin", "kubelet"))
CRICTL = os.path.join(TOP, ".tools", "bin", "crictl")
BUSYBOX = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
NGINX = "registry.k8s.io/e2e-test-images/nginx:1.14-2"
NODE_NAME = "stowage-e2e-node"
NAMESPACE = "default"  # where the kubelet puts static pods that name no namespace
T = TypeVar("T")

# What the kubelet's container manager sets when protectKernelDefaults is off.
KERNEL_TUNABLES = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
# Fixed in the kubelet, whatever its root dir: container log links, and the device-plugin
# registration socket (with its checkpoint).
LEGACY_LOG_DIR = "/var/log/containers"
DEVICE_PLUGIN_DIR = "/var/lib/kubelet/device-plugins"
FIXED_PATHS = (  # deepest first
    f"{DEVICE_PLUGIN_DIR}/kubelet.sock",
    f"{DEVICE_PLUGIN_DIR}/kubelet_internal_checkpoint",
    DEVICE_PLUGIN_DIR,
    "/var/lib/kubelet",
    LEGACY_LOG_DIR,
)


# ---------------------------------------------------------------------------------------------
# Pure parts: the kubelet's configuration and the static pods.


def kubelet_config(
    *,
    endpoint: str,
    static_pod_dir: str,
    pod_logs_dir: str,
    resolv_conf: str,
    volume_plugin_dir: str,
    cgroup_root: str,
    port: int,
    healthz_port: int,
) -> dict[str, Any]:
    """A KubeletConfiguration (v1beta1) for a standalone kubelet on loopback."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "containerRuntimeEndpoint": endpoint,
        "imageServiceEndpoint": endpoint,
        "staticPodPath": static_pod_dir,
        "fileCheckFrequency": "1s",
        "syncFrequency": "10s",
        "podLogsDir": pod_logs_dir,
        "volumePluginDir": volume_plugin_dir,
        # The kubelet takes the driver from RuntimeConfig; this is only its fallback.
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": True,
        "cgroupRoot": cgroup_root,
        "failCgroupV1": False,
        "failSwapOn": False,
        "registerNode": False,
        "address": "127.0.0.1",
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": True},  # the server listens on loopback only
            "webhook": {"enabled": False},
            "x509": {},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDNS": [],
        "resolvConf": resolv_conf,
        "makeIPTablesUtilChains": False,
        "oomScoreAdj": 0,  # the default, -999, is refused on this kind of host
        "protectKernelDefaults": False,
        # Every restart after 2 s: the restart checks need not wait 10 s, 20 s, 40 s...
        "crashLoopBackOff": {"maxContainerRestartPeriod": "2s"},
        # A nearly full disk must not evict the test's pods or collect its images.
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "logging": {"format": "text"},
    }


def static_pod(
    name: str,
    containers: list[dict[str, Any]],
    *,
    restart_policy: str = "Always",
    volumes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "restartPolicy": restart_policy,
            "dnsPolicy": "Default",
            "terminationGracePeriodSeconds": 2,
            "volumes": volumes or [],
            "containers": containers,
        },
    }


# A busybox loop that writes to the shared emptyDir (and its stdout) once a second; nginx
# serves the same volume.
WRITER_SCRIPT = (
    "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); "
    'echo "tick $i" | tee -a /shared/ticks; sleep 1; done'
)


def web_pod() -> dict[str, Any]:
    shared = {"name": "shared", "mountPath": "/shared"}
    return static_pod(
        "web",
        [
            {
                "name": "writer",
                "image": BUSYBOX,
                "command": ["sh", "-c", WRITER_SCRIPT],
                "env": [
                    {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}
                ],
                "volumeMounts": [shared],
                "livenessProbe": {
                    "exec": {"command": ["sh", "-c", "test -s /shared/ticks"]},
                    "initialDelaySeconds": 2,
                    "periodSeconds": 1,
                    "failureThreshold": 1,
                },
            },
            {
                "name": "nginx",
                "image": NGINX,
                "volumeMounts": [{"name": "shared", "mountPath": "/usr/share/nginx/html"}],
            },
        ],
        volumes=[{"name": "shared", "emptyDir": {}}],
    )


def crasher_pod() -> dict[str, Any]:
    return static_pod(
        "crasher",
        [
            {
                "name": "crash",
                "image": BUSYBOX,
                "command": ["sh", "-c", "echo attempt starts; sleep 1; exit 3"],
            }
        ],
        restart_policy="OnFailure",
    )


def liveness_pod() -> dict[str, Any]:
    # Healthy for 4 s, then the probe's file goes away: the kubelet must kill and restart it.
    return static_pod(
        "liveness",
        [
            {
                "name": "probed",
                "image": BUSYBOX,
                "command": [
                    "sh",
                    "-c",
                    "trap 'exit 0' TERM; touch /tmp/healthy; sleep 4; rm -f /tmp/healthy; "
                    "while true; do sleep 1; done",
                ],
                "livenessProbe": {
                    "exec": {"command": ["cat", "/tmp/healthy"]},
                    "initialDelaySeconds": 1,
                    "periodSeconds": 1,
                    "failureThreshold": 1,
                },
            }
        ],
    )


def shared_pid_pod() -> dict[str, Any]:
    # shareProcessNamespace: one PID namespace for the pod, held by stowage's infra process.
    pod = static_pod(
        "sharedpid",
        [
            {"name": "first", "image": BUSYBOX, "command": ["sleep", "3601"]},
            {"name": "second", "image": BUSYBOX, "command": ["sleep", "3602"]},
        ],
    )
    pod["spec"]["shareProcessNamespace"] = True
    return pod


def gateway_of(conf_dir: str) -> tuple[str, str]:
    """(bridge, gateway/prefix) of the first network in a CNI config dir: bridge + host-local."""
    name = sorted(os.listdir(conf_dir))[0]
    with open(os.path.join(conf_dir, name)) as f:
        conf = json.load(f)
    plugin = conf["plugins"][0] if "plugins" in conf else conf
    subnet = ipaddress.ip_network(plugin["ipam"]["ranges"][0][0]["subnet"])
    return plugin["bridge"], f"{subnet.network_address + 1}/{subnet.prefixlen}"


# ---------------------------------------------------------------------------------------------
# The node: a kubelet on a stowage daemon.


@dataclass
class KubeletNode:
    daemon: StowageDaemon
    work: str
    log_path: str
    port: int
    healthz_port: int
    node_ip: str
    cgroup_root: str
    proc: subprocess.Popen[bytes] | None = None
    saved_tunables: dict[str, str] = field(default_factory=dict)
    created_paths: list[str] = field(default_factory=list)
    _ssl: ssl.SSLContext | None = field(default=None, repr=False)

    @property
    def root_dir(self) -> str:
        return os.path.join(self.work, "root")

    @property
    def manifests(self) -> str:
        return os.path.join(self.work, "manifests")

    @property
    def pod_logs(self) -> str:
        return os.path.join(self.work, "pod-logs")

    @property
    def cert_dir(self) -> str:
        return os.path.join(self.work, "pki")

    # -- static pods --------------------------------------------------------------------------

    def add_static_pod(self, manifest: dict[str, Any]) -> str:
        """Writes the manifest atomically (the kubelet skips dot files); returns the pod name
        as the kubelet and the CRI know it."""
        name = manifest["metadata"]["name"]
        tmp = os.path.join(self.manifests, f".{name}.json.tmp")
        with open(tmp, "w") as f:
            json.dump(manifest, f)
        os.replace(tmp, os.path.join(self.manifests, f"{name}.json"))
        return self.pod_name(name)

    def remove_static_pod(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.manifests, f"{name}.json"))

    @staticmethod
    def pod_name(name: str) -> str:
        return f"{name}-{NODE_NAME}"

    # -- the runtime's view, through crictl ----------------------------------------------------

    def crictl(self, *args: str) -> str:
        ep = self.daemon.endpoint
        res = subprocess.run(
            [CRICTL, "--runtime-endpoint", ep, "--image-endpoint", ep, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if res.returncode != 0:
            raise AssertionError(f"crictl {' '.join(args)} failed: {res.stderr.strip()}")
        return res.stdout

    def sandboxes(self, pod_name: str | None = None) -> list[dict[str, Any]]:
        args = ["pods", "-o", "json"] + (["--name", f"^{pod_name}$"] if pod_name else [])
        items: list[dict[str, Any]] = json.loads(self.crictl(*args))["items"]
        return items

    def ready_sandbox(self, pod_name: str) -> dict[str, Any]:
        ready = [s for s in self.sandboxes(pod_name) if s["state"] == "SANDBOX_READY"]
        if len(ready) != 1:
            raise AssertionError(f"{pod_name}: {len(ready)} ready sandboxes")
        return ready[0]

    def containers(self, sandbox_id: str, name: str | None = None) -> list[dict[str, Any]]:
        """Every container of the sandbox (running or not), oldest attempt first."""
        args = ["ps", "-a", "-o", "json", "--pod", sandbox_id]
        if name:
            args += ["--name", f"^{name}$"]
        ctrs: list[dict[str, Any]] = json.loads(self.crictl(*args))["containers"]
        return sorted(ctrs, key=lambda c: int(c["metadata"].get("attempt", 0)))

    def inspect(self, container_id: str) -> dict[str, Any]:
        status: dict[str, Any] = json.loads(self.crictl("inspect", "-o", "json", container_id))
        return status

    # -- the kubelet's view -------------------------------------------------------------------

    def healthz(self) -> str:
        url = f"http://127.0.0.1:{self.healthz_port}/healthz"
        with httpx.Client(trust_env=False, timeout=5) as client:
            return client.get(url).text

    def api(self, path: str) -> Any:
        """GET on the kubelet's authenticated server (anonymous, loopback), checking its
        self-signed certificate against the CA the kubelet wrote next to it."""
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=os.path.join(self.cert_dir, "kubelet.crt"))
            ctx.check_hostname = False  # issued for the node name; the chain is still verified
            self._ssl = ctx
        with httpx.Client(trust_env=False, timeout=10, verify=self._ssl) as client:
            res = client.get(f"https://127.0.0.1:{self.port}{path}")
            res.raise_for_status()
            return res.json()

    def pods(self, path: str = "/pods") -> list[dict[str, Any]]:
        """A PodList's items from the kubelet (which writes an empty list as null)."""
        items: list[dict[str, Any]] = self.api(path)["items"] or []
        return items

    def kubelet_pod(self, pod_name: str) -> dict[str, Any] | None:
        for pod in self.pods():
            if pod["metadata"]["name"] == pod_name:
                found: dict[str, Any] = pod
                return found
        return None

    def container_status(self, pod_name: str, container: str) -> dict[str, Any]:
        pod = self.kubelet_pod(pod_name)
        if pod is None:
            raise AssertionError(f"the kubelet does not list {pod_name}")
        for st in pod.get("status", {}).get("containerStatuses", []):
            if st["name"] == container:
                found: dict[str, Any] = st
                return found
        raise AssertionError(f"no status for {pod_name}/{container} yet")

    def log_tail(self, size: int = 6000) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-size:]
        except OSError as exc:
            return f"(no kubelet log: {exc})"


@contextlib.contextmanager
def kubelet_node(
    daemon: StowageDaemon, cni_conf_dir: str, log_dir: str | None = None
) -> Iterator[KubeletNode]:
    """A standalone kubelet on ``daemon`` whose pods join the network in ``cni_conf_dir``; its
    log goes to ``log_dir`` (kept) or into the work directory (removed). See the module's
    theory of operation for what is set up and undone."""
    if not os.access(KUBELET, os.X_OK):
        raise FileNotFoundError(f"{KUBELET} is not built: make {os.path.relpath(KUBELET, TOP)}")
    if log_dir is not None:
        os.makedirs(log_dir, exist_ok=True)
    port = healthz_port = free_port()
    while healthz_port == port:
        healthz_port = free_port()
    work = tempfile.mkdtemp(prefix="stowage-kubelet-")
    with contextlib.ExitStack() as undo:
        undo.callback(shutil.rmtree, work, True)
        node = KubeletNode(
            daemon=daemon,
            work=work,
            log_path=os.path.join(log_dir or work, "kubelet.log"),
            port=port,
            healthz_port=healthz_port,
            node_ip="",
            cgroup_root=f"/stowage-kubelet-{secrets.token_hex(4)}",
        )
        for d in (node.root_dir, node.manifests, node.pod_logs, node.cert_dir):
            os.makedirs(d)
        resolv = os.path.join(work, "resolv.conf")
        with open(resolv, "w") as f:
            f.write("nameserver 127.0.0.1\nsearch stowage.test\noptions ndots:1\n")

        node.node_ip = _ensure_bridge_address(undo, cni_conf_dir)
        _make_cgroup_root(undo, node.cgroup_root)
        node.saved_tunables = _save_kernel_tunables(undo)
        node.created_paths = _protect_fixed_paths(undo)
        _protect_legacy_log_dir(undo, node.pod_logs)
        undo.callback(_unmount_below, work)
        undo.callback(_remove_all_pods, node)

        config = kubelet_config(
            endpoint=daemon.endpoint,
            static_pod_dir=node.manifests,
            pod_logs_dir=node.pod_logs,
            resolv_conf=resolv,
            volume_plugin_dir=os.path.join(work, "volume-plugins"),
            cgroup_root=node.cgroup_root,
            port=node.port,
            healthz_port=node.healthz_port,
        )
        config_path = os.path.join(work, "kubelet-config.json")
        with open(config_path, "w") as f:
            json.dump(config, f, indent=1)
        argv = [
            KUBELET,
            f"--config={config_path}",
            f"--root-dir={node.root_dir}",
            f"--cert-dir={node.cert_dir}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={node.node_ip.split('/')[0]}",
            "--v=2",
        ]
        with open(node.log_path, "wb") as log:
            log.write(("+ " + " ".join(argv) + "\n").encode())
            log.flush()
            # Its own process group, so that a wrapper (STOWAGE_KUBELET) dies with it.
            node.proc = subprocess.Popen(
                argv, stdout=log, stderr=log, cwd=work, start_new_session=True
            )
        undo.callback(_stop_kubelet, node)
        proc = node.proc
        try:
            wait_for(
                lambda: proc.poll() is not None or node.healthz() == "ok", 60, "kubelet healthz"
            )
            if proc.poll() is not None:
                raise RuntimeError(f"kubelet exited with {proc.returncode}")
        except Exception as exc:
            raise RuntimeError(f"{exc}\n---- kubelet log (tail) ----\n{node.log_tail()}") from exc
        yield node


# -- set-up steps, each registering its undo ---------------------------------------------------


def _ensure_bridge_address(undo: contextlib.ExitStack, cni_conf_dir: str) -> str:
    """Creates the network's bridge with its gateway address (as the bridge plugin would on
    the first pod) so that the kubelet has a node IP of the test's own."""
    bridge, gateway = gateway_of(cni_conf_dir)
    exists = subprocess.run(["ip", "link", "show", bridge], capture_output=True, check=False)
    if exists.returncode != 0:
        subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
        undo.callback(subprocess.run, ["ip", "link", "del", bridge], capture_output=True)
    addrs = subprocess.run(
        ["ip", "-o", "addr", "show", "dev", bridge], capture_output=True, text=True, check=True
    ).stdout
    if f" {gateway} " not in addrs:
        subprocess.run(["ip", "addr", "add", gateway, "dev", bridge], check=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    return gateway


def _cgroup_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [
            line.split()[4]
            for line in f
            if line.split(" - ")[1].split()[0] in ("cgroup", "cgroup2")
        ]


def _make_cgroup_root(undo: contextlib.ExitStack, root: str) -> None:
    """``root`` in every hierarchy (the kubelet checks it exists); cpuset needs its cpus and
    mems filled in before a child can hold a task."""
    for mount in _cgroup_mounts():
        path = mount + root
        os.makedirs(path, exist_ok=True)
        undo.callback(_remove_cgroup_tree, path)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if os.path.exists(os.path.join(mount, knob)):
                with open(os.path.join(mount, knob)) as src:
                    value = src.read().strip()
                with open(os.path.join(path, knob), "w") as dst:
                    dst.write(value)


def _remove_cgroup_tree(path: str) -> None:
    for _ in range(50):  # a pod's last processes may take a moment to leave
        for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
        if not os.path.exists(path):
            return
        time.sleep(0.1)
    print(f"kubelet-e2e: could not remove cgroup {path}", file=sys.stderr)


def _save_kernel_tunables(undo: contextlib.ExitStack) -> dict[str, str]:
    saved = {}
    for key in KERNEL_TUNABLES:
        with open(f"/proc/sys/{key}") as f:
            saved[key] = f.read().strip()

    def restore() -> None:
        for key, value in saved.items():
            with contextlib.suppress(OSError), open(f"/proc/sys/{key}", "w") as f:
                f.write(value)

    undo.callback(restore)
    return dict(saved)


def _protect_legacy_log_dir(undo: contextlib.ExitStack, pod_logs: str) -> None:
    def clean() -> None:
        if not os.path.isdir(LEGACY_LOG_DIR):
            return
        for name in os.listdir(LEGACY_LOG_DIR):
            link = os.path.join(LEGACY_LOG_DIR, name)
            if os.path.islink(link) and os.readlink(link).startswith(pod_logs + "/"):
                os.unlink(link)

    undo.callback(clean)


def _protect_fixed_paths(undo: contextlib.ExitStack) -> list[str]:
    """The kubelet creates a few paths it does not take from its root dir: whichever of them
    did not exist before is removed again (directories only when empty)."""
    sock = os.path.join(DEVICE_PLUGIN_DIR, "kubelet.sock")
    if os.path.exists(sock):
        with socket.socket(socket.AF_UNIX) as s:
            if s.connect_ex(sock) == 0:
                raise RuntimeError(f"a kubelet is already serving {sock} on this host")
    created = [p for p in FIXED_PATHS if not os.path.lexists(p)]

    def clean() -> None:
        for path in created:  # deepest first
            with contextlib.suppress(OSError):
                if os.path.isdir(path) and not os.path.islink(path):
                    os.rmdir(path)
                else:
                    os.unlink(path)

    undo.callback(clean)
    return created


# -- tear-down steps ---------------------------------------------------------------------------


def _stop_kubelet(node: KubeletNode) -> None:
    """Withdraws the static pods and lets a live kubelet stop them, then stops it."""
    proc = node.proc
    if proc is None:
        return
    if proc.poll() is None:
        for name in os.listdir(node.manifests):
            os.unlink(os.path.join(node.manifests, name))
        with contextlib.suppress(Exception):
            wait_for(lambda: not _running_containers(node), 30, "the kubelet to stop its pods")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _running_containers(node: KubeletNode) -> bool:
    return bool(node.crictl("ps", "-q").split())


def _remove_all_pods(node: KubeletNode) -> None:
    with contextlib.suppress(Exception):
        for pod in node.crictl("pods", "-q").split():
            with contextlib.suppress(Exception):
                node.crictl("stopp", pod)
            with contextlib.suppress(Exception):
                node.crictl("rmp", "-f", pod)


def _mounts_below(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == path or p.startswith(path + "/")]


def _unmount_below(path: str) -> None:
    """Everything mounted at or under ``path``, deepest first (the kubelet's root dir is a
    bind mount of itself, and may be stacked)."""
    for _ in range(5):
        points = _mounts_below(path)
        if not points:
            return
        for point in sorted(points, key=len, reverse=True):
            if subprocess.run(["umount", point], capture_output=True, check=False).returncode:
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def leftovers(node: KubeletNode) -> list[str]:
    """What a finished ``kubelet_node`` left on the host: empty when the clean-up worked."""
    found = [f"mount {m}" for m in _mounts_below(node.work)]
    if os.path.exists(node.work):
        found.append(f"directory {node.work}")
    found += [
        f"cgroup {m}{node.cgroup_root}"
        for m in _cgroup_mounts()
        if os.path.exists(m + node.cgroup_root)
    ]
    for key, value in node.saved_tunables.items():
        with open(f"/proc/sys/{key}") as f:
            now = f.read().strip()
        if now != value:
            found.append(f"sysctl {key}={now} (was {value})")
    if os.path.isdir(LEGACY_LOG_DIR):
        found += [
            f"log link {name}"
            for name in os.listdir(LEGACY_LOG_DIR)
            if os.path.islink(os.path.join(LEGACY_LOG_DIR, name))
            and os.readlink(os.path.join(LEGACY_LOG_DIR, name)).startswith(node.pod_logs)
        ]
    found += [f"path {p}" for p in node.created_paths if os.path.lexists(p)]
    if node.proc is not None and node.proc.poll() is None:
        found.append(f"kubelet process {node.proc.pid}")
    return found


# ---------------------------------------------------------------------------------------------
# The checks, in the order they run: each one leaves its pods in place for the next.


def _wait(check: Callable[[], object], timeout: float, what: str) -> None:
    wait_for(check, timeout, what)


def _eventually(check: Callable[[], T], timeout: float, what: str) -> T:
    """``check()``'s result once it stops raising: pods change under our feet (the kubelet
    removes all but the newest dead attempt of each container)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, KeyError, LookupError, httpx.HTTPError) as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}: {exc}") from exc
        time.sleep(0.2)


def _attempt(ctr: dict[str, Any]) -> int:
    return int(ctr["metadata"].get("attempt", 0))


def _check(cond: bool) -> bool:
    assert cond
    return cond


def _ensure_web(node: KubeletNode) -> tuple[str, dict[str, Any]]:
    """The web pod (added if absent: an unchanged manifest is a no-op for the kubelet) with
    both containers running; returns its name and ready sandbox."""
    pod_name = node.add_static_pod(web_pod())
    sandbox = _eventually(lambda: node.ready_sandbox(pod_name), 120, f"{pod_name} sandbox")

    def both_running() -> bool:
        states = {c["metadata"]["name"]: c["state"] for c in node.containers(sandbox["id"])}
        return states == {"writer": "CONTAINER_RUNNING", "nginx": "CONTAINER_RUNNING"}

    _wait(both_running, 120, f"{pod_name} containers running")
    return pod_name, sandbox


def check_static_pod(node: KubeletNode) -> str:
    """The two-container pod comes up; logs flow through conmon to crictl; the emptyDir is
    shared; nginx serves it on the pod's IP."""
    pod_name, sandbox = _ensure_web(node)
    assert sandbox["metadata"]["namespace"] == NAMESPACE
    sid = sandbox["id"]
    writer = node.containers(sid, "writer")[-1]
    nginx = node.containers(sid, "nginx")[-1]

    _wait(lambda: "tick 2" in node.crictl("logs", writer["id"]), 30, "writer's log")
    status = node.inspect(writer["id"])["status"]
    log_path = status["logPath"]
    assert log_path.startswith(node.pod_logs + "/"), log_path
    expected_dir = f"{NAMESPACE}_{pod_name}_{sandbox['metadata']['uid']}"
    assert os.path.relpath(log_path, node.pod_logs).split("/")[0] == expected_dir, log_path
    with open(log_path) as f:
        first = f.readline().rstrip("\n").split(" ", 3)
    assert first[1:] == ["stdout", "F", "tick 1"], first

    ip = json.loads(node.crictl("inspectp", "-o", "json", sid))["status"]["network"]["ip"]
    with httpx.Client(trust_env=False, timeout=5) as client:
        body = client.get(f"http://{ip}/ticks").text
    assert body.startswith("tick 1\n"), body[:100]
    _wait(lambda: "GET /ticks" in node.crictl("logs", nginx["id"]), 15, "nginx access log")

    _eventually(
        lambda: _check((node.kubelet_pod(pod_name) or {})["status"]["phase"] == "Running"),
        60,
        "the kubelet to report web Running",
    )
    return (
        f"{pod_name}: sandbox {sid[:12]} ip {ip}, writer+nginx running, "
        f"log {os.path.relpath(log_path, node.pod_logs)}, nginx served the emptyDir"
    )


def check_restart_policy(node: KubeletNode) -> str:
    """A container that exits 3 under restartPolicy OnFailure is restarted: new attempts on
    stowage, the restart count in the kubelet's status, the old attempt's exit code."""
    pod_name = node.add_static_pod(crasher_pod())
    sid = _eventually(lambda: node.ready_sandbox(pod_name)["id"], 120, f"{pod_name} sandbox")

    def restarted_twice() -> tuple[list[int], dict[str, Any], str]:
        ctrs = node.containers(sid, "crash")
        numbers = [_attempt(c) for c in ctrs]
        assert max(numbers, default=0) >= 2, numbers
        exited = [c for c in ctrs if c["state"] == "CONTAINER_EXITED"]
        assert exited, ctrs
        dead = exited[-1]
        return numbers, node.inspect(dead["id"])["status"], node.crictl("logs", dead["id"])

    numbers, dead, log = _eventually(restarted_twice, 90, "two restarts of crash")
    assert numbers == sorted(set(numbers)), numbers
    assert dead["exitCode"] == 3, dead
    assert dead["reason"] == "Error", dead
    assert "attempt starts" in log, log

    def counted() -> dict[str, Any]:
        st = node.container_status(pod_name, "crash")
        assert int(st["restartCount"]) >= 2, st
        return st

    st = _eventually(counted, 60, "the kubelet's restart count")
    last = st["lastState"]["terminated"]
    assert last["exitCode"] == 3, last
    return (
        f"{pod_name}: attempts {numbers} on stowage (older ones collected), dead attempt "
        f"{dead['metadata']['attempt']} exit {dead['exitCode']} ({dead['reason']}), "
        f"restartCount {st['restartCount']}"
    )


def check_liveness_probe(node: KubeletNode) -> str:
    """Exec liveness probes run through ExecSync: a passing one leaves web's writer alone, a
    failing one has the kubelet kill and restart the container."""
    web_name, _ = _ensure_web(node)
    pod_name = node.add_static_pod(liveness_pod())
    sid = _eventually(lambda: node.ready_sandbox(pod_name)["id"], 120, f"{pod_name} sandbox")

    def restarted() -> dict[str, Any]:
        ctrs = node.containers(sid, "probed")
        assert max((_attempt(c) for c in ctrs), default=0) >= 1, ctrs
        exited = [c for c in ctrs if c["state"] == "CONTAINER_EXITED"]
        assert exited, ctrs
        dead = exited[-1]
        status: dict[str, Any] = node.inspect(dead["id"])["status"]
        return status

    killed = _eventually(restarted, 60, "a liveness restart")
    _eventually(
        lambda: _check(int(node.container_status(pod_name, "probed")["restartCount"]) >= 1),
        30,
        "the kubelet to count the liveness restart",
    )
    with open(node.log_path, errors="replace") as f:
        log = f.read()
    assert "failed liveness probe" in log, "no liveness failure in the kubelet's log"

    # web's writer has been probed every second since it started, and always passed.
    writer = node.container_status(web_name, "writer")
    assert writer["restartCount"] == 0, writer
    assert writer["ready"] is True, writer
    return (
        f"{pod_name}: probe failure had attempt {killed['metadata']['attempt']} killed "
        f"(exit {killed['exitCode']}) and restarted; web/writer passes its probe, restartCount 0"
    )


def check_shared_pid_namespace(node: KubeletNode) -> str:
    """shareProcessNamespace: the two containers see each other's processes, and the infra
    process that holds their PID namespace is accounted to the pod's own cgroup."""
    pod_name = node.add_static_pod(shared_pid_pod())
    sid = _eventually(lambda: node.ready_sandbox(pod_name)["id"], 120, f"{pod_name} sandbox")

    def both_running() -> bool:
        ctrs = node.containers(sid)
        return len([c for c in ctrs if c["state"] == "CONTAINER_RUNNING"]) == 2

    _wait(both_running, 120, f"{pod_name} containers running")
    first = node.containers(sid, "first")[-1]
    seen = node.crictl("exec", first["id"], "ps", "-e", "-o", "pid,args")
    assert "sleep 3602" in seen, seen  # the other container's process
    pid_one = [line for line in seen.splitlines() if line.split()[:1] == ["1"]]
    assert pid_one, seen
    assert "stowage-pause" in pid_one[0], seen  # pid 1 is the infra process

    uid = node.kubelet_pod(pod_name)["metadata"]["uid"]  # type: ignore[index]
    pod_cgroups = [p for p in _pod_cgroups(node) if p.endswith(f"pod{uid}")]
    assert pod_cgroups, f"no cgroup for pod {uid}"
    infra_in = []
    for path in pod_cgroups:
        with open(os.path.join(path, "cgroup.procs")) as f:
            for pid in f.read().split():
                with contextlib.suppress(OSError), open(f"/proc/{pid}/comm") as c:
                    if c.read().strip() == "stowage-pause":
                        infra_in.append(path)
    # The kubelet makes the pod's cgroup before RunPodSandbox in the hierarchies it manages
    # (a devices one appears later, made by runc for the first container).
    for hierarchy in ("cpu", "memory", "pids"):
        assert any(f"/{hierarchy}/" in p for p in infra_in), (hierarchy, infra_in)
    node.remove_static_pod("sharedpid")  # its sandbox goes in the withdrawal check's GC wait
    _wait(
        lambda: all(c["state"] != "CONTAINER_RUNNING" for c in node.containers(sid)),
        120,
        f"{pod_name} containers stopped",
    )
    return (
        f"{pod_name}: containers share one PID namespace (pid 1 is stowage-pause), and the "
        f"infra process is in the pod's cgroup in {len(infra_in)} hierarchies"
    )


def check_kubelet_view(node: KubeletNode) -> str:
    """The kubelet's own endpoints on loopback: healthz, /pods with status, /runningpods."""
    web_name, web_sandbox = _ensure_web(node)
    assert node.healthz() == "ok"
    expected = {node.pod_name(n.removesuffix(".json")) for n in os.listdir(node.manifests)}

    def listed() -> dict[str, dict[str, Any]]:
        pods = {p["metadata"]["name"]: p for p in node.pods()}
        assert set(pods) == expected, sorted(pods)
        assert pods[web_name]["status"]["phase"] == "Running", pods[web_name]["status"]
        return pods

    pods = _eventually(listed, 30, "the kubelet to list the static pods")
    web = pods[web_name]
    assert web["status"]["podIP"].startswith(node.node_ip.rsplit(".", 1)[0] + ".")
    # A standalone kubelet reports no hostIP in pod status, but resolves it for the downward
    # API from its node IP (without one, it would look its node name up in DNS).
    writer_id = next(
        c["id"]
        for c in node.containers(web_sandbox["id"], "writer")
        if c["state"] == "CONTAINER_RUNNING"
    )
    host_ip = node.crictl("exec", "-s", writer_id, "sh", "-c", "echo $HOST_IP").strip()
    assert host_ip == node.node_ip.split("/")[0], host_ip
    ready = {c["name"]: c["ready"] for c in web["status"]["containerStatuses"]}
    assert ready == {"writer": True, "nginx": True}, ready
    image_ids = [c["imageID"] for c in web["status"]["containerStatuses"]]
    assert all(i for i in image_ids), image_ids

    running = node.pods("/runningpods/")
    names = {p["metadata"]["name"] for p in running}
    assert web_name in names, names
    run_web = next(p for p in running if p["metadata"]["name"] == web_name)
    assert {c["name"] for c in run_web["spec"]["containers"]} == {"writer", "nginx"}
    return (
        f"healthz ok; /pods lists {len(pods)} pods (web Running on {web['status']['podIP']}); "
        f"/runningpods lists {len(running)}; downward-API hostIP {host_ip}"
    )


def check_withdrawal(node: KubeletNode) -> str:
    """Removing the manifests makes the kubelet stop and remove every pod on stowage: no
    sandbox, no container, no mount, no pod directory left."""
    if not os.listdir(node.manifests):
        _ensure_web(node)
    before = [s["id"] for s in node.sandboxes()]
    assert before, "no pods to withdraw"
    for name in os.listdir(node.manifests):
        node.remove_static_pod(name.removesuffix(".json"))
    start = time.monotonic()
    _wait(lambda: not _running_containers(node), 60, "the kubelet to stop the containers")
    stopped = time.monotonic() - start
    # Dead sandboxes go in the kubelet's container GC, which runs once a minute.
    _wait(lambda: not node.sandboxes(), 150, "the kubelet to remove the sandboxes")
    removed = time.monotonic() - start
    assert node.crictl("ps", "-a", "-q").split() == []
    _eventually(lambda: _check(not node.pods()), 30, "the kubelet to forget the pods")
    pods_dir = os.path.join(node.root_dir, "pods")
    _wait(lambda: os.listdir(pods_dir) == [], 60, "the kubelet to remove the pod directories")
    _wait(lambda: os.listdir(node.pod_logs) == [], 60, "the kubelet to remove the pod logs")
    _eventually(lambda: _check(not _pod_cgroups(node)), 30, "the kubelet to remove pod cgroups")
    leftovers = [
        m
        for m in _mounts_below(node.root_dir) + _mounts_below(node.daemon.state)
        if any(i in m for i in before) or m.startswith(pods_dir)
    ]
    assert leftovers == [], leftovers
    return (
        f"{len(before)} pods withdrawn: containers stopped after {stopped:.1f}s, "
        f"sandboxes removed after {removed:.1f}s (container GC); no mounts, pod dirs, "
        "pod logs or pod cgroups left"
    )


def _pod_cgroups(node: KubeletNode) -> list[str]:
    """The kubelet's pod-level cgroups (``.../kubepods/<qos>/pod<uid>``), in any hierarchy."""
    found = []
    for mount in _cgroup_mounts():
        for dirpath, dirs, _files in os.walk(mount + node.cgroup_root):
            found += [os.path.join(dirpath, d) for d in dirs if d.startswith("pod")]
    return found


CHECKS: tuple[Callable[[KubeletNode], str], ...] = (
    check_static_pod,
    check_restart_policy,
    check_liveness_probe,
    check_shared_pid_namespace,
    check_kubelet_view,
    check_withdrawal,
)


# ---------------------------------------------------------------------------------------------


def kubelet_version() -> str:
    out = subprocess.run([KUBELET, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def run(log_dir: str) -> int:
    print(f"kubelet-e2e: {kubelet_version()} on stowage-cri; logs in {log_dir}", flush=True)
    os.makedirs(log_dir, exist_ok=True)
    failed = 0
    with registry() as reg, cni_network() as net:
        publish_catalog(reg.url)
        with stowage_daemon(reg.url, net) as daemon, kubelet_node(daemon, net, log_dir) as node:
            for check in CHECKS:
                name = check.__name__.removeprefix("check_")
                started = time.monotonic()
                try:
                    summary = check(node)
                except Exception:
                    failed += 1
                    print(f"kubelet-e2e: FAIL {name}\n{traceback.format_exc()}", flush=True)
                    print("---- kubelet log (tail) ----\n" + node.log_tail(), flush=True)
                    with open(daemon.log_path, errors="replace") as f:
                        print("---- stowage-cri log (tail) ----\n" + f.read()[-6000:])
                    shutil.copy(daemon.log_path, os.path.join(log_dir, "stowage-cri.log"))
                    break
                took = time.monotonic() - started
                print(f"kubelet-e2e: PASS {name} ({took:.1f}s): {summary}", flush=True)
        left = leftovers(node)
    if left:
        failed += 1
        print("kubelet-e2e: FAIL clean-up left " + "; ".join(left), flush=True)
    print("kubelet-e2e: FAILED" if failed else f"kubelet-e2e: all {len(CHECKS)} checks passed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--log-dir",
        default=os.path.join(TOP, "build", "kubelet-e2e"),
        help="where the kubelet's log (and stowage-cri's, on failure) is kept",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("kubelet-e2e: needs root", file=sys.stderr)
        return 2
    return run(args.log_dir)


if __name__ == "__main__":
    sys.exit(main())
