"""Pod sandboxes: run, stop, remove, status.

Theory of operation: a pod is its pinned namespaces (see ``netns.py``), a state directory with
its hostname, hosts and resolv.conf files and a tmpfs for /dev/shm, its CNI attachment, and, only
when its containers share a PID namespace, one tiny ``stowage-pause`` process that is pid 1 of
that namespace. RunPodSandbox takes these steps in order and registers the undo of each as it
goes; a failure unwinds them all, so a failed run leaves nothing. Stop tears down the network
and every process but keeps the record (the kubelet still asks for its status); remove frees
the rest. Both are idempotent and accept ids they do not know.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import time
from typing import Any

import grpc

from cri_shim._pb import api_pb2 as pb
from cri_shim.cgroup_warm import AttachWarmer
from cri_shim.cni import Cni, CniError, PodNetworkArgs, pod_ips
from cri_shim.errors import CriError
from cri_shim.netns import IdMap, NamespaceError, pin_namespaces, unpin_namespaces
from cri_shim.podfiles import hosts_file, resolv_conf
from cri_shim.runtime import DEFAULT_HANDLER, Registry, Sandbox, new_id
from cri_shim.spec import SpecError, userns_mappings
from cri_shim.stats import join_cgroup, pod_cgroup_dir
from cri_shim.store import SandboxMeta, SandboxStatus, b64, unb64

__all__ = ["PodManager", "sandbox_config"]

log = logging.getLogger("stowage.cri.pods")

SHM_SIZE = 64 << 20


def sandbox_config(sb: Sandbox) -> pb.PodSandboxConfig:
    cfg = pb.PodSandboxConfig()
    cfg.ParseFromString(unb64(sb.meta.config))
    return cfg


def _ns_options(cfg: pb.PodSandboxConfig) -> pb.NamespaceOption:
    return cfg.linux.security_context.namespace_options


def reserved_name(md: pb.PodSandboxMetadata) -> str:
    return f"{md.name}_{md.namespace}_{md.uid}_{md.attempt}"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


class PodManager:
    def __init__(
        self,
        reg: Registry,
        cni: Cni,
        pause_binary: str,
        handlers: frozenset[str] = frozenset({DEFAULT_HANDLER}),
        cgroup_driver: str = "cgroupfs",
        warmer: AttachWarmer | None = None,
    ) -> None:
        self.cgroup_driver = cgroup_driver
        self.warmer = warmer or AttachWarmer()
        self.reg = reg
        self.cni = cni
        self.pause_binary = pause_binary
        self.handlers = handlers

    # RunPodSandbox

    def run(self, cfg: pb.PodSandboxConfig, handler: str) -> str:
        md = cfg.metadata
        if not md.name or not md.namespace or not md.uid:
            raise CriError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "pod sandbox metadata needs name, namespace and uid",
            )
        if handler and handler not in self.handlers:
            raise CriError(
                grpc.StatusCode.NOT_FOUND,
                f"no runtime handler {handler!r} (configured: {', '.join(sorted(self.handlers))})",
            )
        sandbox_id = new_id()
        name = reserved_name(md)
        with contextlib.ExitStack() as undo, self.reg.reserved(name, sandbox_id):
            meta, status = self._setup(cfg, sandbox_id, name, handler, undo)
            self.reg.add_sandbox(meta, status)
            undo.pop_all()
        log.info("pod sandbox ready", extra={"id": sandbox_id, "pod": name, "ips": status.ips})
        return sandbox_id

    def _setup(
        self,
        cfg: pb.PodSandboxConfig,
        sandbox_id: str,
        name: str,
        handler: str,
        undo: contextlib.ExitStack,
    ) -> tuple[SandboxMeta, SandboxStatus]:
        ns = _ns_options(cfg)
        if ns.pid == pb.POD and cfg.linux.cgroup_parent:
            # The infra process will join the pod's cgroup: see cgroup_warm.
            self.warmer.warm()
        host_net = ns.network == pb.NODE
        host_ipc = ns.ipc == pb.NODE
        state_dir = os.path.join(self.reg.paths.pods, sandbox_id)
        os.makedirs(state_dir, mode=0o711)
        undo.callback(shutil.rmtree, state_dir, True)
        hostname = cfg.hostname or (os.uname().nodename if host_net else md_name(cfg))
        shm = None
        if not host_ipc:
            shm = os.path.join(state_dir, "shm")
            os.makedirs(shm, mode=0o1777)
            undo.callback(_umount, shm)
        try:
            mappings = userns_mappings(ns)
        except SpecError as exc:
            raise CriError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc
        userns = None
        if mappings is not None:
            uid, gid = mappings[0][0], mappings[1][0]
            userns = (
                IdMap(uid["containerID"], uid["hostID"], uid["size"]),
                IdMap(gid["containerID"], gid["hostID"], gid["size"]),
            )
        try:
            pins = pin_namespaces(
                self.reg.paths.namespaces,
                sandbox_id,
                net=not host_net,
                ipc=not host_ipc,
                uts=not host_net,
                hostname=hostname,
                helper=self.pause_binary,
                shm=shm,
                shm_size=SHM_SIZE,
                userns=userns,
            )
        except NamespaceError as exc:
            raise CriError(grpc.StatusCode.INTERNAL, str(exc)) from exc
        undo.callback(unpin_namespaces, self.reg.paths.namespaces, sandbox_id)
        infra_pid = None
        if ns.pid == pb.POD:
            infra_pid = self._start_infra(state_dir, pins.user)
            undo.callback(_kill_infra, infra_pid)
            # Accounted to the pod, as containerd's and CRI-O's pause containers are.
            pod_cgroup = pod_cgroup_dir(cfg.linux.cgroup_parent, self.cgroup_driver)
            if pod_cgroup is not None:
                join_cgroup(infra_pid, pod_cgroup)
        ips: list[str] = []
        attached = False
        if not host_net:
            assert pins.net is not None  # noqa: S101 - pinned above
            args = self._net_args(cfg, sandbox_id, pins.net)
            try:
                result = self.cni.setup(args)
            except CniError as exc:
                raise CriError(
                    grpc.StatusCode.UNKNOWN, f"failed to set up pod network: {exc}"
                ) from exc
            undo.callback(self._teardown_quietly, args)
            ips = pod_ips(result)
            attached = True
        _write(os.path.join(state_dir, "hostname"), hostname + "\n")
        _write(
            os.path.join(state_dir, "hosts"),
            hosts_file(_read("/etc/hosts") if host_net else None, hostname, ips),
        )
        dns = cfg.dns_config
        _write(
            os.path.join(state_dir, "resolv.conf"),
            resolv_conf(
                list(dns.servers), list(dns.searches), list(dns.options), _read("/etc/resolv.conf")
            ),
        )
        meta = SandboxMeta(
            id=sandbox_id,
            name=name,
            config=b64(cfg.SerializeToString()),
            created_ns=time.time_ns(),
            runtime_handler=handler,
            state_dir=state_dir,
            netns_path=pins.net,
            ipc_ns_path=pins.ipc,
            uts_ns_path=pins.uts,
            cgroup_parent=cfg.linux.cgroup_parent,
            infra_id=None if infra_pid is None else str(infra_pid),
            user_ns_path=pins.user,
        )
        return meta, SandboxStatus(state="ready", ips=tuple(ips), network_attached=attached)

    def _net_args(self, cfg: pb.PodSandboxConfig, sandbox_id: str, netns: str) -> PodNetworkArgs:
        ports = [
            {
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": pb.Protocol.Name(p.protocol).lower(),
                "hostIP": p.host_ip,
            }
            for p in cfg.port_mappings
            if p.host_port
        ]
        caps: dict[str, Any] = {"portMappings": ports} if ports else {}
        md = cfg.metadata
        return PodNetworkArgs(sandbox_id, netns, md.name, md.namespace, md.uid, capabilities=caps)

    def _teardown_quietly(self, args: PodNetworkArgs) -> None:
        try:
            self.cni.teardown(args)
        except CniError as exc:
            log.error("network teardown failed", extra={"id": args.container_id, "error": str(exc)})

    def _start_infra(self, state_dir: str, user_ns: str | None) -> int:
        # The helper itself records the infra's pid and start time, in a file we open for it:
        # if we die at any moment after it forks, the start-up sweep still finds the process
        # (the file is in the pod's state directory).
        fd = os.open(
            os.path.join(state_dir, "infra.pid"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644
        )
        try:
            args = [self.pause_binary, "--new-pidns", "--pid-fd", str(fd)]
            if user_ns is not None:
                # The PID namespace must belong to the pod's user namespace, or its containers
                # (which enter that user namespace first) may not join it.
                args = ["nsenter", f"--user={user_ns}", *args]
            res = subprocess.run(
                args,
                capture_output=True,
                text=True,
                check=False,
                start_new_session=True,
                pass_fds=(fd,),
            )
        finally:
            os.close(fd)
        if res.returncode != 0 or not res.stdout.strip().isdigit():
            raise CriError(grpc.StatusCode.INTERNAL, f"infra process: {res.stderr.strip()}")
        return int(res.stdout.strip())

    # StopPodSandbox

    def stop(self, sandbox_id: str, stop_containers: Any) -> None:
        sb = self.reg.sandbox(sandbox_id)
        if sb is None:
            return  # the CRI asks stop to succeed for unknown pods
        with sb.lock:
            started = time.monotonic()
            stop_containers(sb)
            stopped = time.monotonic()
            if sb.status.network_attached and sb.meta.netns_path:
                cfg = sandbox_config(sb)
                args = self._net_args(cfg, sb.meta.id, sb.meta.netns_path)
                try:
                    self.cni.teardown(args)
                except CniError as exc:
                    raise CriError(
                        grpc.StatusCode.UNKNOWN, f"failed to tear down pod network: {exc}"
                    ) from exc
            self._stop_infra(sb)
            log.debug(
                "pod sandbox stopped",
                extra={
                    "id": sb.meta.id,
                    "containers_ms": round(1000 * (stopped - started)),
                    "network_ms": round(1000 * (time.monotonic() - stopped)),
                },
            )
            if sb.status.state != "notready" or sb.status.network_attached:
                self.reg.set_sandbox_status(
                    sb,
                    SandboxStatus(
                        state="notready",
                        ips=sb.status.ips,
                        network_attached=False,
                        version=sb.status.version,
                    ),
                )

    # CNI CHECK

    def check_network(self, sb: Sandbox) -> str | None:
        """CNI CHECK of the pod's attachment, with what ADD was given: None when it holds (or
        the pod has none), else what is wrong."""
        if not (sb.status.network_attached and sb.meta.netns_path):
            return None
        try:
            self.cni.check(self._net_args(sandbox_config(sb), sb.meta.id, sb.meta.netns_path))
        except CniError as exc:
            return str(exc)
        return None

    def verify_networks(self) -> None:
        """After a restart, CHECKs every ready pod's network: whatever happened to the node
        while we were down (a veth or an address removed, a bridge gone), a pod whose network
        no longer holds is NOTREADY, so the kubelet replaces it instead of keeping a pod that
        looks ready and cannot be reached. Its stop still tears the attachment down."""
        checked = 0
        for sb in list(self.reg.sandboxes.values()):
            with sb.lock:
                if sb.status.state != "ready":
                    continue
                problem = self.check_network(sb)
                checked += 1
                if problem is None:
                    continue
                log.warning(
                    "pod network failed its CNI CHECK: pod is not ready",
                    extra={"id": sb.meta.id, "error": problem},
                )
                self.reg.set_sandbox_status(sb, dataclasses.replace(sb.status, state="notready"))
        log.info("pod networks checked", extra={"pods": checked})

    def _stop_infra(self, sb: Sandbox) -> None:
        pid = infra_pid(sb)
        if pid is not None:
            _kill_infra(pid)

    # RemovePodSandbox

    def remove(self, sandbox_id: str, stop_containers: Any, remove_container: Any) -> None:
        sb = self.reg.sandbox(sandbox_id)
        if sb is None:
            return
        with sb.lock:
            self.stop(sb.meta.id, stop_containers)
            for c in self.reg.containers_of(sb.meta.id):
                remove_container(c.meta.id)
            unpin_namespaces(self.reg.paths.namespaces, sb.meta.id)
            _umount(os.path.join(sb.meta.state_dir, "shm"))
            shutil.rmtree(sb.meta.state_dir, ignore_errors=True)
            self.reg.drop_sandbox(sb)
        log.info("pod sandbox removed", extra={"id": sb.meta.id})


def md_name(cfg: pb.PodSandboxConfig) -> str:
    return cfg.metadata.name[:63] or "pod"


def infra_pid(sb: Sandbox) -> int | None:
    """The pod's infra process if it still runs (checked by start time against pid reuse)."""
    return infra_pid_in(sb.meta.state_dir)


def infra_pid_in(state_dir: str) -> int | None:
    """The infra process recorded in a pod's state directory, if it still runs."""
    text = _read(os.path.join(state_dir, "infra.pid"))
    pid_s, _, started = (text or "").strip().partition(" ")
    if not pid_s.isdigit() or not started:
        return None
    pid = int(pid_s)
    return pid if _start_time(pid) == started else None


def kill_infra_in(state_dir: str) -> None:
    """Start-up sweep: the infra process of a pod that was never recorded (or whose record is
    gone) would otherwise hold its PID namespace forever."""
    pid = infra_pid_in(state_dir)
    if pid is not None:
        _kill_infra(pid)


def _start_time(pid: int) -> str:
    stat = _read(f"/proc/{pid}/stat") or ""
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""


def _kill_infra(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)


def _umount(path: str) -> None:
    if os.path.ismount(path):
        subprocess.run(["umount", "-l", path], capture_output=True, check=False)
