"""The gRPC servicers: each method converts protobuf to the model, makes one call into the
core and converts back."""

from csi_hostpath.service.controller import ControllerService
from csi_hostpath.service.group_controller import GroupControllerService
from csi_hostpath.service.identity import IdentityService
from csi_hostpath.service.node import NodeService

__all__ = ["ControllerService", "GroupControllerService", "IdentityService", "NodeService"]
