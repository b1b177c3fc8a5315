"""CRI RuntimeService: each handler converts the request, makes one call into the pod or
container manager and converts the answer back. Exec, Attach and PortForward answer with a
single-use URL of the streaming server (``cri_shim.streaming``), UNIMPLEMENTED without one."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import queue
import time
from collections.abc import Iterator
from typing import Any, TypeVar

import grpc

from cri_shim._pb import api_pb2 as pb
from cri_shim._pb import api_pb2_grpc as pb_grpc
from cri_shim.cni import Cni, CniError
from cri_shim.containers import ContainerManager, container_config
from cri_shim.errors import CriError
from cri_shim.events import CREATED, DELETED, STARTED, STOPPED
from cri_shim.pods import PodManager, sandbox_config
from cri_shim.runtime import DEFAULT_HANDLER, Container, Registry, Sandbox
from cri_shim.service.stats import StatsCollector
from cri_shim.streaming import (
    AttachTarget,
    ExecTarget,
    PortForwardTarget,
    StreamingService,
    StreamOptions,
)

__all__ = ["RUNTIME_NAME", "RuntimeService"]

log = logging.getLogger("stowage.cri.runtime")

RUNTIME_NAME = "stowage"
RUNTIME_VERSION = "0.1.0"
# The kubelet refuses a runtime whose Version.version is anything but this.
KUBE_API_VERSION = "0.1.0"

# Streamed answers are sent in pages of this many items.
_PAGE = 100

T = TypeVar("T")

_CONTAINER_STATE = {
    "created": pb.CONTAINER_CREATED,
    "running": pb.CONTAINER_RUNNING,
    "exited": pb.CONTAINER_EXITED,
    "unknown": pb.CONTAINER_UNKNOWN,
}


def _pages(items: list[T]) -> Iterator[list[T]]:
    """Streamed answers go in pages; an empty answer is still one (empty) page."""
    for start in range(0, max(len(items), 1), _PAGE):
        yield items[start : start + _PAGE]


def _labels_match(labels: Any, selector: Any) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _sandbox_message(sb: Sandbox) -> pb.PodSandbox:
    cfg = sandbox_config(sb)
    return pb.PodSandbox(
        id=sb.meta.id,
        metadata=cfg.metadata,
        state=pb.SANDBOX_READY if sb.status.state == "ready" else pb.SANDBOX_NOTREADY,
        created_at=sb.meta.created_ns,
        labels=cfg.labels,
        annotations=cfg.annotations,
        runtime_handler=sb.meta.runtime_handler,
    )


def _container_message(c: Container) -> pb.Container:
    cfg = container_config(c)
    return pb.Container(
        id=c.meta.id,
        pod_sandbox_id=c.meta.sandbox_id,
        metadata=cfg.metadata,
        image=pb.ImageSpec(image=cfg.image.image, user_specified_image=c.meta.image_ref),
        image_ref=c.meta.image_id,
        image_id=c.meta.image_id,
        state=_CONTAINER_STATE[c.status.state],
        created_at=c.meta.created_ns,
        labels=cfg.labels,
        annotations=cfg.annotations,
    )


class RuntimeService(pb_grpc.RuntimeServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        reg: Registry,
        pods: PodManager,
        containers: ContainerManager,
        cni: Cni,
        cgroup_driver: str,
        cni_conf_template: str = "",
    ) -> None:
        self.cni_conf_template = cni_conf_template
        self.reg = reg
        self.pods = pods
        self.containers = containers
        self.cni = cni
        self.cgroup_driver = cgroup_driver
        self.stats = StatsCollector(reg, containers.images.snapshots, cgroup_driver)
        # Set by the daemon once the streaming server listens.
        self.streaming: StreamingService | None = None

    def Version(self, request: pb.VersionRequest, context: object) -> pb.VersionResponse:
        return pb.VersionResponse(
            version=KUBE_API_VERSION,
            runtime_name=RUNTIME_NAME,
            runtime_version=RUNTIME_VERSION,
            runtime_api_version="v1",
        )

    def Status(self, request: pb.StatusRequest, context: object) -> pb.StatusResponse:
        net_ok = self.cni.network() is not None
        conditions = [
            pb.RuntimeCondition(type="RuntimeReady", status=True),
            pb.RuntimeCondition(
                type="NetworkReady",
                status=net_ok,
                reason="" if net_ok else "NetworkPluginNotReady",
                message="" if net_ok else f"no CNI network config in {self.cni.conf_dir}",
            ),
        ]
        info = (
            {
                "config": json.dumps(
                    {
                        "cniConfDir": self.cni.conf_dir,
                        "cniBinDirs": self.cni.bin_dirs,
                        # Where pod state lives (critest checks id-mapped mount support there).
                        "stateDir": self.reg.paths.state,
                    }
                )
            }
            if request.verbose
            else {}
        )
        # Features are claimed for the default handler only: runc's are tested by critest
        # here; another runtime's are not known to us.
        runc_features = pb.RuntimeHandlerFeatures(
            recursive_read_only_mounts=True, user_namespaces=True
        )
        handlers = [pb.RuntimeHandler(name="", features=runc_features)] + [
            pb.RuntimeHandler(
                name=name,
                features=runc_features
                if name == DEFAULT_HANDLER
                else pb.RuntimeHandlerFeatures(),
            )
            for name in sorted(self.containers.runtimes)
        ]
        return pb.StatusResponse(
            status=pb.RuntimeStatus(conditions=conditions),
            info=info,
            runtime_handlers=handlers,
            features=pb.RuntimeFeatures(supplemental_groups_policy=True),
        )

    def RuntimeConfig(
        self, request: pb.RuntimeConfigRequest, context: object
    ) -> pb.RuntimeConfigResponse:
        driver = pb.SYSTEMD if self.cgroup_driver == "systemd" else pb.CGROUPFS
        return pb.RuntimeConfigResponse(linux=pb.LinuxRuntimeConfiguration(cgroup_driver=driver))

    def UpdateRuntimeConfig(
        self, request: pb.UpdateRuntimeConfigRequest, context: object
    ) -> pb.UpdateRuntimeConfigResponse:
        # The kubelet sends the node's pod CIDR(s), comma-separated for dual stack. Only a
        # configured template uses it (as in containerd): our pods get their addresses from
        # the CNI network's IPAM, not from us.
        cidrs = [c.strip() for c in request.runtime_config.network_config.pod_cidr.split(",")]
        cidrs = [c for c in cidrs if c]
        if not cidrs or not self.cni_conf_template:
            return pb.UpdateRuntimeConfigResponse()
        for cidr in cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise CriError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"pod CIDR {cidr!r} is not a CIDR"
                ) from exc
        try:
            written = self.cni.write_from_template(self.cni_conf_template, cidrs)
        except CniError as exc:
            raise CriError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from exc
        if written is not None:
            log.info("CNI config written from template", extra={"path": written, "cidrs": cidrs})
        return pb.UpdateRuntimeConfigResponse()

    # pods

    def RunPodSandbox(
        self, request: pb.RunPodSandboxRequest, context: object
    ) -> pb.RunPodSandboxResponse:
        return pb.RunPodSandboxResponse(
            pod_sandbox_id=self.pods.run(request.config, request.runtime_handler)
        )

    def StopPodSandbox(
        self, request: pb.StopPodSandboxRequest, context: object
    ) -> pb.StopPodSandboxResponse:
        self.pods.stop(request.pod_sandbox_id, self.containers.stop_all)
        return pb.StopPodSandboxResponse()

    def RemovePodSandbox(
        self, request: pb.RemovePodSandboxRequest, context: object
    ) -> pb.RemovePodSandboxResponse:
        self.pods.remove(request.pod_sandbox_id, self.containers.stop_all, self.containers.remove)
        return pb.RemovePodSandboxResponse()

    def _sandbox_status(self, sb: Sandbox) -> pb.PodSandboxStatus:
        cfg = sandbox_config(sb)
        ips = list(sb.status.ips) if sb.status.state == "ready" else []
        return pb.PodSandboxStatus(
            id=sb.meta.id,
            metadata=cfg.metadata,
            state=_sandbox_message(sb).state,
            created_at=sb.meta.created_ns,
            network=pb.PodSandboxNetworkStatus(
                ip=ips[0] if ips else "",
                additional_ips=[pb.PodIP(ip=ip) for ip in ips[1:]],
            ),
            linux=pb.LinuxPodSandboxStatus(
                namespaces=pb.Namespace(options=cfg.linux.security_context.namespace_options)
            ),
            labels=cfg.labels,
            annotations=cfg.annotations,
            runtime_handler=sb.meta.runtime_handler,
        )

    def PodSandboxStatus(
        self, request: pb.PodSandboxStatusRequest, context: object
    ) -> pb.PodSandboxStatusResponse:
        sb = self.reg.need_sandbox(request.pod_sandbox_id)
        info = {}
        if request.verbose:
            details: dict[str, object] = {
                "netns": sb.meta.netns_path,
                "ips": list(sb.status.ips),
                "stateDir": sb.meta.state_dir,
            }
            if sb.status.network_attached:
                # crictl inspectp asks for this: it is where a CNI CHECK result helps a human.
                problem = self.pods.check_network(sb)
                details["networkCheck"] = {"ok": problem is None, "error": problem or ""}
            info["info"] = json.dumps(details)
        containers = [self._container_status_message(c) for c in self.reg.containers_of(sb.meta.id)]
        return pb.PodSandboxStatusResponse(
            status=self._sandbox_status(sb),
            info=info,
            containers_statuses=containers,
            timestamp=time.time_ns(),
        )

    def _list_sandboxes(self, f: pb.PodSandboxFilter) -> list[pb.PodSandbox]:
        messages = [_sandbox_message(sb) for sb in self._sandboxes(f)]
        return [m for m in messages if not f.HasField("state") or m.state == f.state.state]

    def ListPodSandbox(
        self, request: pb.ListPodSandboxRequest, context: object
    ) -> pb.ListPodSandboxResponse:
        return pb.ListPodSandboxResponse(items=self._list_sandboxes(request.filter))

    def StreamPodSandboxes(
        self, request: pb.StreamPodSandboxesRequest, context: object
    ) -> Iterator[pb.StreamPodSandboxesResponse]:
        for page in _pages(self._list_sandboxes(request.filter)):
            yield pb.StreamPodSandboxesResponse(pod_sandboxes=page)

    # containers

    def CreateContainer(
        self, request: pb.CreateContainerRequest, context: object
    ) -> pb.CreateContainerResponse:
        cid = self.containers.create(request.pod_sandbox_id, request.config, request.sandbox_config)
        return pb.CreateContainerResponse(container_id=cid)

    def StartContainer(
        self, request: pb.StartContainerRequest, context: object
    ) -> pb.StartContainerResponse:
        self.containers.start(request.container_id)
        return pb.StartContainerResponse()

    def StopContainer(
        self, request: pb.StopContainerRequest, context: object
    ) -> pb.StopContainerResponse:
        self.containers.stop(request.container_id, int(request.timeout))
        return pb.StopContainerResponse()

    def RemoveContainer(
        self, request: pb.RemoveContainerRequest, context: object
    ) -> pb.RemoveContainerResponse:
        self.containers.remove(request.container_id)
        return pb.RemoveContainerResponse()

    def _containers(self, f: Any) -> list[Container]:
        """Containers matching a ContainerFilter or ContainerStatsFilter (id and pod id by
        prefix, labels); state is the caller's, since only ContainerFilter has one."""
        out = []
        for c in list(self.reg.containers.values()):
            if f.id and not c.meta.id.startswith(f.id):
                continue
            if f.pod_sandbox_id and not c.meta.sandbox_id.startswith(f.pod_sandbox_id):
                continue
            if _labels_match(container_config(c).labels, f.label_selector):
                out.append(c)
        return out

    def _sandboxes(self, f: Any) -> list[Sandbox]:
        """Pods matching a PodSandboxFilter or PodSandboxStatsFilter (id by prefix, labels)."""
        return [
            sb
            for sb in list(self.reg.sandboxes.values())
            if (not f.id or sb.meta.id.startswith(f.id))
            and _labels_match(sandbox_config(sb).labels, f.label_selector)
        ]

    def _list_containers(self, f: pb.ContainerFilter) -> list[pb.Container]:
        out = []
        for c in self._containers(f):
            with c.lock:
                self.containers.refresh(c)
            msg = _container_message(c)
            if not f.HasField("state") or msg.state == f.state.state:
                out.append(msg)
        return out

    def ListContainers(
        self, request: pb.ListContainersRequest, context: object
    ) -> pb.ListContainersResponse:
        return pb.ListContainersResponse(containers=self._list_containers(request.filter))

    def StreamContainers(
        self, request: pb.StreamContainersRequest, context: object
    ) -> Iterator[pb.StreamContainersResponse]:
        for page in _pages(self._list_containers(request.filter)):
            yield pb.StreamContainersResponse(containers=page)

    def _container_status_message(self, c: Container) -> pb.ContainerStatus:
        cfg = container_config(c)
        st = c.status
        user = c.meta.extra.get("user") or {}
        return pb.ContainerStatus(
            user=pb.ContainerUser(
                linux=pb.LinuxContainerUser(
                    uid=int(user.get("uid", 0)),
                    gid=int(user.get("gid", 0)),
                    supplemental_groups=[int(g) for g in user.get("additionalGids", [])],
                )
            ),
            id=c.meta.id,
            metadata=cfg.metadata,
            state=_CONTAINER_STATE[st.state],
            created_at=c.meta.created_ns,
            started_at=st.started_ns,
            finished_at=st.finished_ns,
            exit_code=st.exit_code,
            image=pb.ImageSpec(image=cfg.image.image, user_specified_image=c.meta.image_ref),
            image_ref=c.meta.image_id,
            image_id=c.meta.image_id,
            reason=st.reason,
            message=st.message,
            labels=cfg.labels,
            annotations=cfg.annotations,
            mounts=list(cfg.mounts),
            log_path=c.meta.log_path,
        )

    def ContainerStatus(
        self, request: pb.ContainerStatusRequest, context: object
    ) -> pb.ContainerStatusResponse:
        c = self.containers.status(request.container_id)
        info = {}
        if request.verbose:
            details: dict[str, object] = {
                "pid": c.status.pid,
                "bundle": c.meta.bundle,
                "sandboxID": c.meta.sandbox_id,
            }
            # As containerd's: `crictl inspect` users read the OCI spec the container runs with.
            spec_path = os.path.join(c.meta.bundle, "config.json")
            with contextlib.suppress(OSError, ValueError), open(spec_path) as f:
                details["runtimeSpec"] = json.load(f)
            info["info"] = json.dumps(details)
        return pb.ContainerStatusResponse(status=self._container_status_message(c), info=info)

    def ExecSync(self, request: pb.ExecSyncRequest, context: object) -> pb.ExecSyncResponse:
        out, err, code = self.containers.exec_sync(
            request.container_id, list(request.cmd), int(request.timeout)
        )
        return pb.ExecSyncResponse(stdout=out, stderr=err, exit_code=code)

    # streaming: each call parks the request under a token and answers with its URL

    def _streaming(self) -> StreamingService:
        if self.streaming is None:
            raise CriError(grpc.StatusCode.UNIMPLEMENTED, "the streaming server is not running")
        return self.streaming

    def Exec(self, request: pb.ExecRequest, context: object) -> pb.ExecResponse:
        opts = StreamOptions(request.stdin, request.stdout, request.stderr, request.tty)
        target = ExecTarget(request.container_id, tuple(request.cmd), opts)
        return pb.ExecResponse(url=self._streaming().exec_url(target))

    def Attach(self, request: pb.AttachRequest, context: object) -> pb.AttachResponse:
        opts = StreamOptions(request.stdin, request.stdout, request.stderr, request.tty)
        target = AttachTarget(request.container_id, opts)
        return pb.AttachResponse(url=self._streaming().attach_url(target))

    def PortForward(
        self, request: pb.PortForwardRequest, context: object
    ) -> pb.PortForwardResponse:
        target = PortForwardTarget(request.pod_sandbox_id)
        return pb.PortForwardResponse(url=self._streaming().port_forward_url(target))

    def ReopenContainerLog(
        self, request: pb.ReopenContainerLogRequest, context: object
    ) -> pb.ReopenContainerLogResponse:
        self.containers.reopen_log(request.container_id)
        return pb.ReopenContainerLogResponse()

    def UpdateContainerResources(
        self, request: pb.UpdateContainerResourcesRequest, context: object
    ) -> pb.UpdateContainerResourcesResponse:
        from cri_shim.spec.resources import linux_resources

        if not request.HasField("linux"):
            raise CriError(grpc.StatusCode.INVALID_ARGUMENT, "only linux resources are supported")
        resources = linux_resources(request.linux, hugetlb=self.containers.options.hugetlb)
        self.containers.update_resources(request.container_id, resources)
        return pb.UpdateContainerResourcesResponse()

    def UpdatePodSandboxResources(
        self, request: pb.UpdatePodSandboxResourcesRequest, context: object
    ) -> pb.UpdatePodSandboxResourcesResponse:
        # The kubelet resizes the pod's cgroup itself; a runtime only needs to know it happened
        # (we keep no pod-level resources of our own), but the pod must exist.
        self.reg.need_sandbox(request.pod_sandbox_id)
        return pb.UpdatePodSandboxResourcesResponse()

    # events

    def GetContainerEvents(
        self, request: pb.GetEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ContainerEventResponse]:
        kinds = {
            CREATED: pb.CONTAINER_CREATED_EVENT,
            STARTED: pb.CONTAINER_STARTED_EVENT,
            STOPPED: pb.CONTAINER_STOPPED_EVENT,
            DELETED: pb.CONTAINER_DELETED_EVENT,
        }
        with self.containers.events.subscribe() as events:
            while context.is_active():
                try:
                    event = events.get(timeout=1)
                except queue.Empty:
                    continue
                response = pb.ContainerEventResponse(
                    container_id=event.container_id,
                    container_event_type=kinds[event.kind],
                    created_at=event.at_ns,
                )
                sb = self.reg.sandbox(event.sandbox_id)
                if sb is not None:
                    response.pod_sandbox_status.CopyFrom(self._sandbox_status(sb))
                    response.containers_statuses.extend(
                        self._container_status_message(c)
                        for c in self.reg.containers_of(sb.meta.id)
                    )
                yield response

    # stats

    def ContainerStats(
        self, request: pb.ContainerStatsRequest, context: object
    ) -> pb.ContainerStatsResponse:
        c = self.reg.need_container(request.container_id)
        return pb.ContainerStatsResponse(stats=self.stats.container(c))

    def _container_stats(self, f: pb.ContainerStatsFilter) -> list[pb.ContainerStats]:
        return [self.stats.container(c) for c in self._containers(f)]

    def ListContainerStats(
        self, request: pb.ListContainerStatsRequest, context: object
    ) -> pb.ListContainerStatsResponse:
        return pb.ListContainerStatsResponse(stats=self._container_stats(request.filter))

    def StreamContainerStats(
        self, request: pb.StreamContainerStatsRequest, context: object
    ) -> Iterator[pb.StreamContainerStatsResponse]:
        for page in _pages(self._container_stats(request.filter)):
            yield pb.StreamContainerStatsResponse(container_stats=page)

    def PodSandboxStats(
        self, request: pb.PodSandboxStatsRequest, context: object
    ) -> pb.PodSandboxStatsResponse:
        sb = self.reg.need_sandbox(request.pod_sandbox_id)
        return pb.PodSandboxStatsResponse(stats=self.stats.sandbox(sb))

    def _sandbox_stats(self, f: pb.PodSandboxStatsFilter) -> list[pb.PodSandboxStats]:
        return [self.stats.sandbox(sb) for sb in self._sandboxes(f)]

    def ListPodSandboxStats(
        self, request: pb.ListPodSandboxStatsRequest, context: object
    ) -> pb.ListPodSandboxStatsResponse:
        return pb.ListPodSandboxStatsResponse(stats=self._sandbox_stats(request.filter))

    def StreamPodSandboxStats(
        self, request: pb.StreamPodSandboxStatsRequest, context: object
    ) -> Iterator[pb.StreamPodSandboxStatsResponse]:
        for page in _pages(self._sandbox_stats(request.filter)):
            yield pb.StreamPodSandboxStatsResponse(pod_sandbox_stats=page)
