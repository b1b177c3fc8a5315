"""``stowage-csi``: the CSI host-path driver daemon. Serves Identity, Controller, GroupController
and Node on a unix socket that only root can use."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from concurrent import futures

import grpc

from csi_hostpath._pb import csi_pb2_grpc as pb_grpc
from csi_hostpath.config import DEFAULT_NAME, DriverConfig
from csi_hostpath.decisions import parse_size
from csi_hostpath.driver import Driver, open_driver
from csi_hostpath.errors import InvalidArgument
from csi_hostpath.interceptors import ErrorInterceptor
from csi_hostpath.service import (
    ControllerService,
    GroupControllerService,
    IdentityService,
    NodeService,
)

__all__ = ["main", "serve"]

log = logging.getLogger("stowage.csi")


def socket_path(endpoint: str) -> str:
    if endpoint.startswith("unix://"):
        return endpoint.removeprefix("unix://")
    if endpoint.startswith("unix:"):
        return endpoint.removeprefix("unix:")
    if endpoint.startswith("/"):
        return endpoint
    raise ValueError(f"endpoint {endpoint!r} is not a unix socket (unix:///path)")


def serve(driver: Driver, endpoint: str, *, workers: int = 16) -> grpc.Server:
    path = socket_path(endpoint)
    os.makedirs(os.path.dirname(path) or "/", mode=0o700, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="csi"),
        interceptors=[ErrorInterceptor()],
    )
    pb_grpc.add_IdentityServicer_to_server(IdentityService(driver.env.config), server)
    pb_grpc.add_ControllerServicer_to_server(ControllerService(driver), server)
    pb_grpc.add_GroupControllerServicer_to_server(GroupControllerService(driver), server)
    pb_grpc.add_NodeServicer_to_server(NodeService(driver), server)
    # Bound in a private directory, made 0600 there, then renamed into place: the socket is
    # never reachable by others, and never seen at its path with another mode.
    staging = tempfile.mkdtemp(prefix=".csi-sock-", dir=os.path.dirname(path))
    staged = os.path.join(staging, "s")
    try:
        server.add_insecure_port(f"unix://{staged}")
        server.start()
        os.chmod(staged, 0o600)
        os.rename(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("serving", extra={"socket": path, "root": driver.env.config.root})
    return server


class _JsonFormatter(logging.Formatter):
    _SKIP = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out = {"level": record.levelname.lower(), "msg": record.getMessage()}
        out.update({k: v for k, v in record.__dict__.items() if k not in self._SKIP})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger("stowage.csi")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def parse_args(argv: list[str] | None) -> tuple[DriverConfig, str, str]:
    p = argparse.ArgumentParser(prog="stowage-csi", description="Stowage CSI host-path driver")
    p.add_argument("--endpoint", default="unix:///run/stowage/csi.sock")
    p.add_argument("--nodeid", required=True, help="this node's id (NodeGetInfo)")
    p.add_argument("--root", default="/var/lib/stowage/csi", help="volumes, snapshots, state")
    p.add_argument("--drivername", default=DEFAULT_NAME)
    p.add_argument("--max-total-size", default="1Ti", help="capacity of all volumes together")
    p.add_argument("--max-volume-size", default="1Ti", help="largest single volume")
    p.add_argument("--max-volumes-per-node", type=int, default=0, help="0: no limit")
    p.add_argument(
        "--allowed-path-prefix",
        action="append",
        help="where target and staging paths may be (repeatable; default /var/lib/kubelet)",
    )
    p.add_argument(
        "--accepted-mutable-parameter",
        action="append",
        default=[],
        help="a ControllerModifyVolume parameter name to accept (repeatable)",
    )
    p.add_argument("--log-level", default="info")
    a = p.parse_args(argv)
    prefixes = tuple(os.path.normpath(x) for x in (a.allowed_path_prefix or ["/var/lib/kubelet"]))
    config = DriverConfig(
        node_id=a.nodeid,
        root=os.path.abspath(a.root),
        name=a.drivername,
        max_total_bytes=parse_size(a.max_total_size),
        max_volume_bytes=parse_size(a.max_volume_size),
        max_volumes_per_node=a.max_volumes_per_node,
        allowed_path_prefixes=prefixes,
        accepted_mutable_parameters=frozenset(a.accepted_mutable_parameter),
    )
    return config, a.endpoint, a.log_level


def main(argv: list[str] | None = None) -> int:
    try:
        config, endpoint, level = parse_args(argv)
        socket_path(endpoint)
    except (InvalidArgument, ValueError) as exc:
        print(f"stowage-csi: {exc}", file=sys.stderr)
        return 2
    _setup_logging(level)
    if os.geteuid() != 0:
        print("stowage-csi: must run as root", file=sys.stderr)
        return 2
    driver = open_driver(config)
    server = serve(driver, endpoint)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("stopping")
    server.stop(grace=5).wait()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path(endpoint))
    return 0


if __name__ == "__main__":
    sys.exit(main())
