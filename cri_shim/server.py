"""``stowage-cri``: the CRI daemon. Serves the ImageService and RuntimeService on a unix socket
that only root can use."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from concurrent import futures
from dataclasses import replace

import grpc

from cri_shim._pb import api_pb2_grpc as pb_grpc
from cri_shim.cgroup_warm import AttachWarmer
from cri_shim.cni import Cni
from cri_shim.config import Config, ConfigError, load_config
from cri_shim.containers import ContainerManager
from cri_shim.events import ExitWatcher
from cri_shim.interceptors import ErrorInterceptor
from cri_shim.logs import setup_logging
from cri_shim.oci.runc import Runc
from cri_shim.pods import PodManager
from cri_shim.recover import recover
from cri_shim.runtime import DEFAULT_HANDLER, Paths, Registry
from cri_shim.service.image_service import ImageService
from cri_shim.service.runtime_service import RuntimeService
from cri_shim.spec import RuntimeOptions
from cri_shim.spec.security import capabilities_from_mask
from cri_shim.streaming import StreamingService
from images.store import ImageStore

__all__ = ["main", "serve"]

log = logging.getLogger("stowage.cri")


def _socket_path(endpoint: str) -> str:
    return endpoint.removeprefix("unix://")


def open_store(cfg: Config) -> ImageStore:
    return ImageStore(
        os.path.join(cfg.cri.root, "images"),
        registry_config_dir=cfg.images.registry_config_dir,
        max_concurrent_downloads=cfg.images.max_concurrent_downloads,
    )


def _own_oom_score_adj() -> int:
    try:
        with open("/proc/self/oom_score_adj") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 0


def _bounding_capabilities() -> tuple[str, ...]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    return capabilities_from_mask(int(line.split()[1], 16))
    except (OSError, ValueError):
        pass
    return ()


def _has_hugetlb_controller() -> bool:
    """cgroup v2: listed in the root's cgroup.controllers; v1: a mounted hierarchy."""
    try:
        with open("/sys/fs/cgroup/cgroup.controllers") as f:
            return "hugetlb" in f.read().split()
    except OSError:
        pass
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fstype, _source, options = line.split(" - ", 1)[1].split()[:3]
                if fstype == "cgroup" and "hugetlb" in options.split(","):
                    return True
    except (OSError, ValueError, IndexError):
        pass
    return False


def build_runtime(cfg: Config, store: ImageStore) -> RuntimeService:
    """Wires the runtime service and brings its state back from disk."""
    paths = Paths(root=cfg.cri.root, state=cfg.cri.state)
    os.makedirs(paths.state, mode=0o711, exist_ok=True)
    os.chmod(paths.state, 0o711)  # noqa: S103 - search only: user-namespaced containers traverse it
    for d in (paths.pods, paths.namespaces, paths.bundles, paths.exits, paths.sockets):
        os.makedirs(d, mode=0o711, exist_ok=True)
    reg = Registry(paths)
    reg.load()
    systemd = cfg.runtime.cgroup_driver == "systemd"
    runtimes = {
        name: Runc(paths.handler_root(name), binary, systemd)
        for name, binary in ((DEFAULT_HANDLER, cfg.runtime.runc), *cfg.runtime.handlers)
    }
    cni = Cni(cfg.cni.conf_dir, list(cfg.cni.bin_dirs), paths.cni_cache, loopback=False)
    options = RuntimeOptions(
        restrict_oom_score_adj=cfg.runtime.restrict_oom_score_adj,
        daemon_oom_score_adj=_own_oom_score_adj(),
        available_capabilities=_bounding_capabilities(),
        hugetlb=_has_hugetlb_controller(),
    )
    warmer = AttachWarmer()  # one warm-up thread for pods' and containers' cgroup attaches
    pods = PodManager(
        reg, cni, cfg.runtime.pause, frozenset(runtimes), cfg.runtime.cgroup_driver, warmer
    )
    containers = ContainerManager(
        reg,
        store,
        runtimes,
        options,
        cfg.runtime.cgroup_driver,
        helper=cfg.runtime.pause,
        warmer=warmer,
    )
    recover(reg, list(runtimes.values()), cni, store.snapshots)
    containers.recover()

    def on_exit(container_id: str) -> None:
        c = reg.container(container_id)
        if c is not None:
            with c.lock:
                containers.refresh(c)

    ExitWatcher(paths.exits, on_exit).start()
    # In the background: one CNI CHECK per pod must not hold up serving the kubelet.
    threading.Thread(target=pods.verify_networks, name="cni-check", daemon=True).start()
    return RuntimeService(
        reg, pods, containers, cni, cfg.runtime.cgroup_driver, cfg.cni.conf_template
    )


def serve(cfg: Config, ready: threading.Event | None = None) -> grpc.Server:
    path = _socket_path(cfg.cri.socket)
    # 0711, not 0700: containers in a user namespace must be able to traverse to their bundle
    # under the state dir (the socket itself is 0600).
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    store = open_store(cfg)
    store.recover()
    runtime = build_runtime(cfg, store)
    runtime.streaming = StreamingService(
        runtime.reg, runtime.containers, cfg.streaming.address, cfg.streaming.port
    )
    runtime.streaming.start()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="cri"),
        interceptors=[ErrorInterceptor()],
        options=[
            ("grpc.max_receive_message_length", 16 << 20),
            ("grpc.max_send_message_length", 16 << 20),
        ],
    )
    pb_grpc.add_ImageServiceServicer_to_server(ImageService(store), server)
    pb_grpc.add_RuntimeServiceServicer_to_server(runtime, server)
    # The socket is bound in a private directory, made 0600 there, then renamed into place:
    # it is never reachable by others, and never seen at its path with another mode.
    staging = tempfile.mkdtemp(prefix=".stowage-sock-", dir=os.path.dirname(path))
    staged = os.path.join(staging, "s")
    try:
        server.add_insecure_port(f"unix://{staged}")
        server.start()
        os.chmod(staged, 0o600)
        os.rename(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("serving", extra={"socket": path, "root": cfg.cri.root})
    if ready is not None:
        ready.set()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stowage-cri", description="Stowage CRI daemon")
    parser.add_argument("--config", help="config file (default /etc/stowage/config.toml)")
    parser.add_argument("--socket", help="override cri.socket")
    parser.add_argument("--root", help="override cri.root")
    parser.add_argument("--state", help="override cri.state")
    parser.add_argument("--cni-conf-dir", help="override cni.conf_dir")
    parser.add_argument("--cni-bin-dir", action="append", help="search first for CNI plugins")
    parser.add_argument("--registry-config-dir", help="override images.registry_config_dir")
    parser.add_argument("--log-level", help="override log.level")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"stowage-cri: {exc}", file=sys.stderr)
        return 2
    if args.socket:
        cfg = replace(cfg, cri=replace(cfg.cri, socket=args.socket))
    if args.root:
        cfg = replace(cfg, cri=replace(cfg.cri, root=args.root))
    if args.state:
        cfg = replace(cfg, cri=replace(cfg.cri, state=args.state))
    if args.cni_conf_dir:
        cfg = replace(cfg, cni=replace(cfg.cni, conf_dir=args.cni_conf_dir))
    if args.cni_bin_dir:
        cfg = replace(cfg, cni=replace(cfg.cni, bin_dirs=(*args.cni_bin_dir, *cfg.cni.bin_dirs)))
    if args.registry_config_dir:
        cfg = replace(cfg, images=replace(cfg.images, registry_config_dir=args.registry_config_dir))
    if args.log_level:
        cfg = replace(cfg, log=replace(cfg.log, level=args.log_level))
    setup_logging(cfg.log.level, cfg.log.format)
    if os.geteuid() != 0:
        print("stowage-cri: must run as root", file=sys.stderr)
        return 2
    server = serve(cfg)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("stopping")
    server.stop(grace=5).wait()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_socket_path(cfg.cri.socket))
    return 0


if __name__ == "__main__":
    sys.exit(main())
