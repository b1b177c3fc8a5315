"""Containers: create, start, stop, remove, status, exec.

Theory of operation: CreateContainer prepares a writable snapshot over the image, mounts it as
the bundle's rootfs, writes the OCI spec and has conmon run ``runc create``; the container then
exists, stopped before its first instruction. StartContainer is ``runc start``. conmon stays
beside the container for its whole life: it writes the CRI log and, when the container exits,
an exit file named after the container whose content is the exit code and whose mtime is the
exit time. State is derived, never guessed: an exit file means exited; a recorded start means
running; otherwise created. Because conmon (not stowage-cri) is the parent, a restart of the
daemon changes nothing for a running container.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc

from cri_shim._pb import api_pb2 as pb
from cri_shim.cgroup_warm import AttachWarmer
from cri_shim.errors import CriError
from cri_shim.events import CREATED, DELETED, STARTED, STOPPED, ContainerEvent, EventBus
from cri_shim.oci.conmon import ConmonSpec, launch
from cri_shim.oci.runc import Runc, RuncError
from cri_shim.pods import infra_pid, sandbox_config
from cri_shim.runtime import DEFAULT_HANDLER, Container, Registry, Sandbox, new_id
from cri_shim.spec import (
    PodContext,
    RuntimeOptions,
    SpecError,
    build_container_spec,
    userns_mappings,
)
from cri_shim.stats import CgroupReader, cgroup_dir
from cri_shim.store import ContainerMeta, ContainerStatus, b64, unb64
from images.errors import ImageError
from images.mount import Mount, mount_all, overlay_mount, unmount
from images.store import ImageStore

__all__ = ["ContainerManager", "container_config"]

log = logging.getLogger("stowage.cri.containers")


def container_config(c: Container) -> pb.ContainerConfig:
    cfg = pb.ContainerConfig()
    cfg.ParseFromString(unb64(c.meta.config))
    return cfg


def _image_file(lowers: list[str], rel: str) -> str | None:
    """A file of the image as the container will see it, read from its layers (topmost first)
    without mounting them: the first layer that has it, deletes it (a whiteout) or hides the
    layers below (an opaque directory) decides. Symlinks are never followed, so nothing
    outside the layers is read."""
    parts = rel.strip("/").split("/")
    for layer in lowers:
        path = layer
        hidden = False
        for i, part in enumerate(parts):
            path = os.path.join(path, part)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                break
            if stat.S_ISLNK(st.st_mode):
                return None
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return None  # whiteout: deleted in this layer
            if i < len(parts) - 1 and _opaque(path):
                hidden = True
        else:
            try:
                with open(path, errors="replace") as f:
                    return f.read()
            except OSError:
                return None
        if hidden:
            return None
    return None


def _opaque(directory: str) -> bool:
    try:
        return os.getxattr(directory, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _device_info(path: str) -> tuple[str, int, int, int]:
    import stat as st

    s = os.stat(path)
    kind = "c" if st.S_ISCHR(s.st_mode) else "b" if st.S_ISBLK(s.st_mode) else ""
    if not kind:
        raise CriError(grpc.StatusCode.INVALID_ARGUMENT, f"{path} is not a device")
    return kind, os.major(s.st_rdev), os.minor(s.st_rdev), st.S_IMODE(s.st_mode)


def _localhost_profile(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            data: dict[str, Any] = json.load(f)
            return data
    except (OSError, ValueError) as exc:
        raise CriError(
            grpc.StatusCode.INVALID_ARGUMENT, f"cannot load seccomp profile {path}: {exc}"
        ) from exc


class ContainerManager:
    def __init__(
        self,
        reg: Registry,
        images: ImageStore,
        runtimes: dict[str, Runc],
        options: RuntimeOptions,
        cgroup_driver: str,
        helper: str = "stowage-pause",
        events: EventBus | None = None,
        warmer: AttachWarmer | None = None,
    ) -> None:
        self.helper = helper
        self.events = events or EventBus()
        self._launcher = ThreadPoolExecutor(max_workers=8, thread_name_prefix="runc-create")
        self.warmer = warmer or AttachWarmer()
        self._creating: dict[str, Future[int]] = {}
        self.reg = reg
        self.images = images
        # One OCI runtime per RuntimeClass handler; a container uses its pod's.
        self.runtimes = runtimes
        self.options = options
        self.cgroup_driver = cgroup_driver
        self.cgroups = CgroupReader()

    # CreateContainer

    def create(
        self, sandbox_id: str, cfg: pb.ContainerConfig, sandbox_cfg: pb.PodSandboxConfig
    ) -> str:
        t0 = time.monotonic()
        sb = self.reg.need_sandbox(sandbox_id)
        if not cfg.metadata.name:
            raise CriError(grpc.StatusCode.INVALID_ARGUMENT, "container metadata needs a name")
        image = self.images.status(cfg.image.image)
        if image is None:
            raise CriError(grpc.StatusCode.NOT_FOUND, f"image {cfg.image.image!r} not found")
        self._oci(sb.meta.runtime_handler)  # a handler since removed from the config
        md, smd = cfg.metadata, sandbox_config(sb).metadata
        name = f"{md.name}_{smd.name}_{smd.namespace}_{smd.uid}_{md.attempt}"
        container_id = new_id()
        with sb.lock, contextlib.ExitStack() as undo, self.reg.reserved(name, container_id):
            # Checked under the pod's lock: a StopPodSandbox or RemovePodSandbox that held it
            # meanwhile has killed the pod's PID namespace or removed the pod altogether.
            if self.reg.sandbox(sb.meta.id) is not sb or sb.status.state != "ready":
                raise CriError(
                    grpc.StatusCode.FAILED_PRECONDITION, f"pod sandbox {sb.meta.id} is not ready"
                )
            meta, conmon = self._setup(sb, cfg, sandbox_cfg, image, container_id, name, undo)
            self.reg.add_container(meta, ContainerStatus(state="created"))
            # runc create (under conmon) runs in the background, as containerd defers it to
            # StartContainer: the kubelet's next call, StartContainer, waits for it, and its
            # failure is reported there (as containerd reports it). It is submitted last, so
            # that its thread does not compete for the GIL with this call's own work.
            self._creating[container_id] = self._launcher.submit(
                self._mount_and_launch, sb, sandbox_cfg, container_id, meta.bundle, conmon
            )
            undo.pop_all()
        self._publish(container_id, sandbox_id, CREATED)
        log.debug("create total", extra={"ms": round(1000 * (time.monotonic() - t0))})
        return container_id

    def _mount_and_launch(
        self,
        sb: Sandbox,
        sandbox_cfg: pb.PodSandboxConfig,
        container_id: str,
        bundle: str,
        conmon: ConmonSpec,
    ) -> int:
        """The slow half of CreateContainer, off the RPC's path: mount the rootfs, then have
        conmon run ``runc create``. Returns the container init's pid."""
        self.warmer.warm()  # runc will attach the container to its cgroup: see cgroup_warm
        rootfs = os.path.join(bundle, "rootfs")
        mounts = self.images.snapshots.mounts(container_id)
        if sb.meta.user_ns_path is not None:
            mappings = userns_mappings(sandbox_cfg.linux.security_context.namespace_options)
            assert mappings is not None  # noqa: S101 - the pod has a user namespace
            root = (mappings[0][0]["hostID"], mappings[1][0]["hostID"])
            mounts = self._idmapped_layers(bundle, container_id, sb.meta.user_ns_path, root)
        t0 = time.monotonic()
        try:
            mount_all(mounts, rootfs)
        except ImageError as exc:
            raise RuncError(str(exc)) from exc
        finally:
            if sb.meta.user_ns_path is not None:
                self._drop_idmapped_layers(bundle)
        t1 = time.monotonic()
        pid = launch(conmon, self._oci(sb.meta.runtime_handler))
        log.debug(
            "container launched",
            extra={
                "id": container_id,
                "mount_ms": round(1000 * (t1 - t0), 1),
                "launch_ms": round(1000 * (time.monotonic() - t1), 1),
            },
        )
        return pid

    def _oci(self, handler: str) -> Runc:
        runtime = self.runtimes.get(handler or DEFAULT_HANDLER)
        if runtime is None:
            raise CriError(grpc.StatusCode.NOT_FOUND, f"no runtime handler {handler!r}")
        return runtime

    def oci_of(self, c: Container) -> Runc:
        """The OCI runtime a container was created with (its pod's handler)."""
        return self._oci(str(c.meta.extra.get("runtime_handler", DEFAULT_HANDLER)))

    def _created(self, c: Container) -> int:
        """Waits for the container's runc create; its init's pid (0 if no longer known)."""
        future = self._creating.get(c.meta.id)
        if future is None:
            state = self.oci_of(c).state(c.meta.id)
            return 0 if state is None else state.pid
        try:
            return future.result(timeout=120)
        except (RuncError, TimeoutError) as exc:
            raise CriError(grpc.StatusCode.UNKNOWN, f"failed to create container: {exc}") from exc
        finally:
            if future.done():
                self._creating.pop(c.meta.id, None)

    def _settled(self, c: Container) -> None:
        """Lets a pending runc create finish (or fail) before the container is torn down."""
        with contextlib.suppress(CriError):
            self._created(c)

    def _publish(self, container_id: str, sandbox_id: str, kind: str) -> None:
        self.events.publish(ContainerEvent(container_id, sandbox_id, kind, time.time_ns()))

    def _setup(
        self,
        sb: Sandbox,
        cfg: pb.ContainerConfig,
        sandbox_cfg: pb.PodSandboxConfig,
        image: Any,
        container_id: str,
        name: str,
        undo: contextlib.ExitStack,
    ) -> tuple[ContainerMeta, ConmonSpec]:
        from images import manifest as mf

        t_start = time.monotonic()
        bundle = os.path.join(self.reg.paths.bundles, container_id)
        rootfs = os.path.join(bundle, "rootfs")
        os.makedirs(rootfs, mode=0o755)
        undo.callback(shutil.rmtree, bundle, True)
        self.images.snapshots.prepare(container_id, image.chain_id)
        undo.callback(self.images.snapshots.remove, container_id)
        undo.callback(unmount, rootfs)
        lowers = self.images.snapshots.lowerdirs(image.chain_id) if image.chain_id else []
        t_mount = time.monotonic()
        image_config = mf.parse_image_config(json.dumps(image.config).encode())
        log_path = ""
        if sandbox_cfg.log_directory and cfg.log_path:
            log_path = os.path.join(sandbox_cfg.log_directory, cfg.log_path)
        t_spec = time.monotonic()
        pod = self._pod_context(sb, sandbox_cfg, container_id)
        try:
            spec = build_container_spec(
                cfg,
                sandbox_cfg,
                image_config,
                pod,
                rootfs,
                _image_file(lowers, "etc/passwd"),
                _image_file(lowers, "etc/group"),
                container_id,
                self.options,
                _localhost_profile,
                device_info=_device_info,
                resolve_host_path=os.path.realpath,
            )
        except SpecError as exc:
            raise CriError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(spec, f)
        conmon = ConmonSpec(
            container_id=container_id,
            name=name,
            bundle=bundle,
            log_path=log_path or os.path.join(bundle, "container.log"),
            exit_dir=self.reg.paths.exits,
            socket_dir=self.reg.paths.sockets,
            stdin=cfg.stdin,
            stdin_once=cfg.stdin_once,
            tty=cfg.tty,
        )
        log.info(
            "container created",
            extra={
                "id": container_id,
                "container": name,
                "prepare_ms": round(1000 * (t_mount - t_start)),
                "mount_ms": round(1000 * (t_spec - t_mount)),
                "spec_ms": round(1000 * (time.monotonic() - t_spec)),
            },
        )
        meta = ContainerMeta(
            id=container_id,
            sandbox_id=sb.meta.id,
            name=name,
            config=b64(cfg.SerializeToString()),
            created_ns=time.time_ns(),
            image_id=image.id,
            image_ref=cfg.image.user_specified_image or cfg.image.image,
            log_path=log_path,
            bundle=bundle,
            snapshot_key=container_id,
            extra={
                "runtime_handler": sb.meta.runtime_handler or DEFAULT_HANDLER,
                "stop_signal": image_config.stop_signal or "SIGTERM",
                "user": spec["process"].get("user", {}),
                "cgroup": spec.get("linux", {}).get("cgroupsPath", ""),
            },
        )
        return meta, conmon

    def _idmapped_layers(
        self, bundle: str, key: str, user_ns: str, root: tuple[int, int]
    ) -> list[Mount]:
        """The rootfs of a user-namespaced container: overlay cannot be id-mapped itself, so
        each image layer is bound id-mapped under the bundle and the overlay is made of those.
        The writable layer is not id-mapped (overlay creates its work files as the mounter,
        whom an id-mapped upper could not represent): its two empty directories are owned by
        the container's root instead (``root``: host uid and gid)."""
        snaps = self.images.snapshots
        parent = snaps.parent_of_active(key)
        lowers = snaps.lowerdirs(parent) if parent else []
        stage = os.path.join(bundle, "idmap")
        pairs: list[str] = []
        mapped_lowers = []
        for i, lower in enumerate(lowers):
            target = os.path.join(stage, f"l{i}")
            os.makedirs(target)
            pairs += [lower, target]
            mapped_lowers.append(target)
        upper = snaps.active_dir(key)
        for d in ("fs", "work"):
            os.chown(os.path.join(upper, d), *root)
        if not pairs:
            return [overlay_mount([], os.path.join(upper, "fs"), os.path.join(upper, "work"))]
        res = subprocess.run(
            [self.helper, "--idmap-bind", user_ns, *pairs],
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            self._drop_idmapped_layers(bundle)
            raise CriError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"id-mapped layers for a user-namespaced pod: {res.stderr.strip()}",
            )
        return [
            overlay_mount(mapped_lowers, os.path.join(upper, "fs"), os.path.join(upper, "work"))
        ]

    def _drop_idmapped_layers(self, bundle: str) -> None:
        # The overlay holds its own references to its layers: the staging mounts can go.
        stage = os.path.join(bundle, "idmap")
        if os.path.isdir(stage):
            targets = [os.path.join(stage, n) for n in sorted(os.listdir(stage))]
            subprocess.run(["umount", "-l", *targets], capture_output=True, check=False)
            shutil.rmtree(stage, ignore_errors=True)

    def _pod_context(self, sb: Sandbox, cfg: pb.PodSandboxConfig, container_id: str) -> PodContext:
        ns = cfg.linux.security_context.namespace_options
        pid = infra_pid(sb)
        state = sb.meta.state_dir
        shm = os.path.join(state, "shm")
        return PodContext(
            sandbox_id=sb.meta.id,
            netns_path=sb.meta.netns_path,
            ipc_ns_path=sb.meta.ipc_ns_path,
            uts_ns_path=sb.meta.uts_ns_path,
            pid_ns_path=None if pid is None else f"/proc/{pid}/ns/pid",
            host_pid=ns.pid == pb.NODE,
            hostname=_read_text(os.path.join(state, "hostname")).strip(),
            hosts_path=os.path.join(state, "hosts"),
            resolv_path=os.path.join(state, "resolv.conf"),
            hostname_path=os.path.join(state, "hostname"),
            shm_path=shm if os.path.ismount(shm) else None,
            cgroup_parent=sb.meta.cgroup_parent,  # the spec builder places the container in it
            cgroup_driver=self.cgroup_driver,
            user_ns_path=sb.meta.user_ns_path,
        )

    # StartContainer

    def start(self, container_id: str) -> None:
        c = self.reg.need_container(container_id)
        with c.lock:
            self.refresh(c)
            if c.status.state != "created":
                raise CriError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"container {c.meta.id} is {c.status.state}, not created",
                )
            t0 = time.monotonic()
            pid = self._created(c)
            t1 = time.monotonic()
            try:
                self.oci_of(c).start(c.meta.id)
            except RuncError as exc:
                raise CriError(
                    grpc.StatusCode.UNKNOWN, f"failed to start container: {exc}"
                ) from exc
            self.reg.set_container_status(
                c,
                ContainerStatus(
                    state="running",
                    pid=pid,
                    started_ns=time.time_ns(),
                    version=c.status.version,
                ),
            )
            self._publish(c.meta.id, c.meta.sandbox_id, STARTED)
            log.debug(
                "container started",
                extra={
                    "id": c.meta.id,
                    "wait_ms": round(1000 * (t1 - t0), 1),
                    "start_ms": round(1000 * (time.monotonic() - t1), 1),
                },
            )

    # status

    def _exit_file(self, c: Container) -> str:
        return os.path.join(self.reg.paths.exits, c.meta.id)

    def refresh(self, c: Container) -> ContainerStatus:
        """Folds conmon's exit file into the record (the one way a container becomes exited)."""
        if c.status.state == "exited":
            return c.status
        path = self._exit_file(c)
        try:
            with open(path) as f:
                text = f.read().strip()
            finished = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            return c.status
        code = int(text) if text.lstrip("-").isdigit() else 255
        reason = "Completed" if code == 0 else ("OOMKilled" if self._oom_killed(c) else "Error")
        self.reg.set_container_status(
            c,
            ContainerStatus(
                state="exited",
                pid=c.status.pid,
                started_ns=c.status.started_ns or finished,
                finished_ns=finished,
                exit_code=code,
                reason=reason,
                version=c.status.version,
            ),
        )
        self._publish(c.meta.id, c.meta.sandbox_id, STOPPED)
        return c.status

    def _oom_killed(self, c: Container) -> bool:
        # The container's cgroup outlives its processes until runc delete: its OOM-kill count
        # tells an OOM from any other SIGKILL.
        if os.path.exists(os.path.join(c.meta.bundle, "oom")):  # conmon saw the OOM event
            return True
        path = str(c.meta.extra.get("cgroup", ""))
        return bool(path) and self.cgroups.oom_kills(cgroup_dir(path, self.cgroup_driver)) > 0

    def status(self, container_id: str) -> Container:
        c = self.reg.need_container(container_id)
        with c.lock:
            self.refresh(c)
        return c

    # StopContainer

    def stop(self, container_id: str, timeout: int) -> None:
        c = self.reg.container(container_id)
        if c is None:
            return  # the CRI asks stop to succeed for unknown containers
        with c.lock:
            self._stop(c, timeout)

    def _stop(self, c: Container, timeout: int) -> None:
        self._settled(c)
        self.refresh(c)
        if c.status.state == "exited":
            return
        if c.status.state == "created":
            # Never started: nothing runs but runc's init; kill it and record the exit.
            self._kill(c, signal.SIGKILL)
            self._wait_exit(c, 10)
            self.refresh(c)
            if c.status.state != "exited":
                self._mark_exited(c, 137, "Error")
            return
        sig = _signal_number(str(c.meta.extra.get("stop_signal", "SIGTERM")))
        if timeout > 0:
            self._kill(c, sig)
            if self._wait_exit(c, timeout):
                self.refresh(c)
                return
        self._kill(c, signal.SIGKILL, all_processes=True)
        if not self._wait_exit(c, 15):
            self._mark_exited(c, 137, "Error")
        self.refresh(c)

    def _kill(self, c: Container, sig: int, all_processes: bool = False) -> None:
        try:
            self.oci_of(c).kill(c.meta.id, sig, all_processes)
        except RuncError as exc:
            log.info("kill failed", extra={"id": c.meta.id, "error": str(exc)})

    def _wait_exit(self, c: Container, timeout: float) -> bool:
        """Waits for conmon's exit file. It appears within milliseconds of the exit, so the
        file is polled often and runc (a process start each time) asked only now and then, in
        case conmon itself is gone."""
        deadline = time.monotonic() + timeout
        path = self._exit_file(c)
        next_state_check = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            if os.path.exists(path):
                return True
            if time.monotonic() >= next_state_check:
                state = self.oci_of(c).state(c.meta.id)
                if state is None or state.status == "stopped":
                    time.sleep(0.1)
                    return os.path.exists(path) or state is None
                next_state_check = time.monotonic() + 0.5
            time.sleep(0.002)
        return os.path.exists(path)

    def _mark_exited(self, c: Container, code: int, reason: str) -> None:
        self.reg.set_container_status(
            c,
            ContainerStatus(
                state="exited",
                pid=c.status.pid,
                started_ns=c.status.started_ns,
                finished_ns=time.time_ns(),
                exit_code=code,
                reason=reason,
                version=c.status.version,
            ),
        )
        self._publish(c.meta.id, c.meta.sandbox_id, STOPPED)

    def stop_all(self, sb: Sandbox) -> None:
        for c in self.reg.containers_of(sb.meta.id):
            with c.lock:
                self._stop(c, 0)

    # RemoveContainer

    def remove(self, container_id: str) -> None:
        c = self.reg.container(container_id)
        if c is None:
            return
        with c.lock:
            self._settled(c)
            if c.status.state in ("running", "created"):
                self._stop(c, 0)
            self.oci_of(c).delete(c.meta.id, force=True)
            rootfs = os.path.join(c.meta.bundle, "rootfs")
            with contextlib.suppress(Exception):
                unmount(rootfs)
            self.images.snapshots.remove(c.meta.snapshot_key)
            if self.images.status(c.meta.image_id) is None:
                # Its image was removed while in use: the layers only this container held go now.
                self.images.gc()
            shutil.rmtree(c.meta.bundle, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._exit_file(c))
            self.reg.drop_container(c)
        self._publish(c.meta.id, c.meta.sandbox_id, DELETED)
        log.info("container removed", extra={"id": c.meta.id})

    # ExecSync

    def exec_sync(
        self, container_id: str, cmd: list[str], timeout: int
    ) -> tuple[bytes, bytes, int]:
        c = self.reg.need_container(container_id)
        self.refresh(c)
        if c.status.state != "running":
            raise CriError(
                grpc.StatusCode.FAILED_PRECONDITION, f"container {c.meta.id} is not running"
            )
        if not cmd:
            raise CriError(grpc.StatusCode.INVALID_ARGUMENT, "exec needs a command")
        with open(os.path.join(c.meta.bundle, "config.json")) as f:
            process = json.load(f)["process"]
        process["args"] = cmd
        process["terminal"] = False
        with tempfile.NamedTemporaryFile(
            "w", dir=c.meta.bundle, suffix=".json", delete=False
        ) as pf:
            json.dump(process, pf)
        pid_file = pf.name + ".pid"
        self.warmer.warm()  # runc exec attaches the command to the container's cgroup
        try:
            proc = subprocess.Popen(
                self.oci_of(c).exec_args(c.meta.id, pf.name, pid_file),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            try:
                out, err = proc.communicate(timeout=timeout if timeout > 0 else None)
            except subprocess.TimeoutExpired as exc:
                # Kill the command, then let runc reap it and exit: killing runc first would
                # leave the command's zombie to a pid 1 that may be slow to reap it.
                self._kill_exec(pid_file)
                try:
                    proc.communicate(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
                raise CriError(
                    grpc.StatusCode.DEADLINE_EXCEEDED, f"command {cmd!r} timed out after {timeout}s"
                ) from exc
            return out, err, proc.returncode
        finally:
            for p in (pf.name, pid_file):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)

    def _kill_exec(self, pid_file: str) -> None:
        with contextlib.suppress(OSError, ValueError), open(pid_file) as f:
            os.kill(int(f.read().strip()), signal.SIGKILL)

    # ReopenContainerLog

    def reopen_log(self, container_id: str) -> None:
        c = self.reg.need_container(container_id)
        self.refresh(c)
        if c.status.state != "running":
            raise CriError(
                grpc.StatusCode.FAILED_PRECONDITION, f"container {c.meta.id} is not running"
            )
        ctl = os.path.join(c.meta.bundle, "ctl")
        # conmon's control fifo: "<type> <height> <width>"; type 2 asks it to reopen the log.
        fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, b"2 0 0\n")
        finally:
            os.close(fd)
        # conmon acts on it asynchronously; the kubelet expects the new file once we answer.
        deadline = time.monotonic() + 5
        while c.meta.log_path and not os.path.exists(c.meta.log_path):
            if time.monotonic() > deadline:
                raise CriError(grpc.StatusCode.UNKNOWN, "conmon did not reopen the log file")
            time.sleep(0.01)

    # UpdateContainerResources

    def update_resources(self, container_id: str, resources: dict[str, Any]) -> None:
        c = self.reg.need_container(container_id)
        with c.lock:
            self.refresh(c)
            if c.status.state in ("exited",):
                raise CriError(
                    grpc.StatusCode.FAILED_PRECONDITION, f"container {c.meta.id} is not running"
                )
            try:
                self.oci_of(c).update(c.meta.id, resources)
            except RuncError as exc:
                raise CriError(grpc.StatusCode.UNKNOWN, str(exc)) from exc

    # recovery

    def recover(self) -> None:
        """Start-up: bring each container's record in line with what is really there."""
        for c in list(self.reg.containers.values()):
            self.refresh(c)
            if c.status.state == "exited":
                continue
            try:
                state = self.oci_of(c).state(c.meta.id)
            except CriError as exc:
                # Its runtime handler left the config: nothing here can ask that runtime.
                log.error("container left unchecked", extra={"id": c.meta.id, "error": str(exc)})
                continue
            except RuncError as exc:
                log.error("container state unknown", extra={"id": c.meta.id, "error": str(exc)})
                continue
            if state is None:
                # Its runtime state is gone (a reboot, or a crash mid-create): it has exited.
                self._mark_exited(c, 255, "Unknown")


def _signal_number(name: str) -> int:
    name = name.upper()
    if name.isdigit():
        return int(name)
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        return int(signal.SIGTERM)


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""
