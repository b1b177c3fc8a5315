"""CRI RuntimeService: Version and Status answer; pods and containers are not served yet, and
the generated base class answers UNIMPLEMENTED for them."""

from __future__ import annotations

from cri_shim._pb import api_pb2 as pb
from cri_shim._pb import api_pb2_grpc as pb_grpc

__all__ = ["RUNTIME_NAME", "RuntimeService"]

RUNTIME_NAME = "stowage"
RUNTIME_VERSION = "0.1.0"
# The kubelet refuses a runtime whose Version.version is anything but this.
KUBE_API_VERSION = "0.1.0"


class RuntimeService(pb_grpc.RuntimeServiceServicer):  # type: ignore[misc]
    def Version(self, request: pb.VersionRequest, context: object) -> pb.VersionResponse:
        return pb.VersionResponse(
            version=KUBE_API_VERSION,
            runtime_name=RUNTIME_NAME,
            runtime_version=RUNTIME_VERSION,
            runtime_api_version="v1",
        )

    def Status(self, request: pb.StatusRequest, context: object) -> pb.StatusResponse:
        conditions = [
            pb.RuntimeCondition(
                type="RuntimeReady",
                status=False,
                reason="RuntimeServiceNotReady",
                message="stowage serves the image service only; pods are not supported yet",
            ),
            pb.RuntimeCondition(
                type="NetworkReady",
                status=False,
                reason="NetworkPluginNotReady",
                message="no pod network: the runtime service is not available yet",
            ),
        ]
        return pb.StatusResponse(status=pb.RuntimeStatus(conditions=conditions))
