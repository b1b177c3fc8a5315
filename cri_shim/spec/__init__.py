"""OCI runtime-spec generation for containers and pod infra processes (pure, no I/O).

The runtime service calls `build_container_spec` / `build_sandbox_spec` with what it read from
disk (image config, the image's /etc/passwd and /etc/group) and what it decided for the pod
(`PodContext`), writes the returned dict as config.json, and maps `SpecError` to
INVALID_ARGUMENT.
"""

from cri_shim.spec.container import (
    PodContext,
    RuntimeOptions,
    Ulimit,
    build_container_spec,
    container_user,
    process_args,
    process_env,
    userns_mappings,
)
from cri_shim.spec.resources import cgroup_parent_path
from cri_shim.spec.sandbox import build_sandbox_spec
from cri_shim.spec.security import DeviceInfo, SpecError
from cri_shim.spec.users import ResolvedUser

__all__ = [
    "DeviceInfo",
    "PodContext",
    "ResolvedUser",
    "RuntimeOptions",
    "SpecError",
    "Ulimit",
    "build_container_spec",
    "build_sandbox_spec",
    "cgroup_parent_path",
    "container_user",
    "process_args",
    "process_env",
    "userns_mappings",
]
