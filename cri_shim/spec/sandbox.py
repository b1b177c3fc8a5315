"""The OCI spec of a pod's infra ("pause") process, for pods that need one (a pod-level PID
namespace needs a living init; other pods can do with pinned namespace files).

The infra process does nothing but hold namespaces and reap zombies, so it gets the least: no
capabilities, no_new_privs, a read-only root, our default seccomp profile. It *creates* the
pod's namespaces unless the runtime already made (and passes) one: the network namespace is
usually created first for CNI, and joined here.
"""

from __future__ import annotations

from typing import Any

from cri_shim.spec import mounts as mnt
from cri_shim.spec import resources as res
from cri_shim.spec import seccomp as sec
from cri_shim.spec import security
from cri_shim.spec.container import (
    ANN_CONTAINER_TYPE,
    ANN_SANDBOX_ID,
    ANN_SANDBOX_LOG_DIR,
    ANN_SANDBOX_NAME,
    ANN_SANDBOX_NAMESPACE,
    ANN_SANDBOX_UID,
    DEFAULT_PATH,
    NS_NODE,
    OCI_VERSION,
    PodContext,
    RuntimeOptions,
    sysctls_for,
    userns_mappings,
)
from cri_shim.spec.security import SpecError

__all__ = ["SANDBOX_OOM_SCORE_ADJ", "build_sandbox_spec", "sandbox_annotations"]

# The infra process must outlive the pod's containers under memory pressure: if it dies the
# pod loses its PID namespace. Clamped by restrict_oom_score_adj like any other score.
SANDBOX_OOM_SCORE_ADJ = -998
SANDBOX_CPU_SHARES = 2  # the minimum: pause never runs


def sandbox_annotations(sandbox_config: Any, sandbox_id: str) -> dict[str, str]:
    meta = sandbox_config.metadata
    out = dict(sorted(sandbox_config.annotations.items()))
    out.update(
        {
            ANN_CONTAINER_TYPE: "sandbox",
            ANN_SANDBOX_ID: sandbox_id,
            ANN_SANDBOX_NAME: meta.name,
            ANN_SANDBOX_NAMESPACE: meta.namespace,
            ANN_SANDBOX_UID: meta.uid,
            ANN_SANDBOX_LOG_DIR: sandbox_config.log_directory,
        }
    )
    return out


def _namespace(kind: str, host: bool, path: str | None) -> dict[str, str] | None:
    if host:
        return None
    return {"type": kind, "path": path} if path else {"type": kind}


def build_sandbox_spec(
    sandbox_config: Any,
    pod: PodContext,
    rootfs: str,
    pause_args: list[str],
    options: RuntimeOptions,
) -> dict[str, Any]:
    """The infra process's spec.

    Namespaces follow the pod config's modes; a non-None path in `pod` means "join this one"
    (made by the runtime beforehand), None means "create it" (or the host's for mode NODE).
    A host-network pod also keeps the host's UTS namespace, as the kubelet expects.
    """
    if not pause_args:
        raise SpecError("no command for the pod's infra process")
    sc = sandbox_config.linux.security_context
    privileged = bool(sc.privileged)
    ns = sc.namespace_options
    host_net = int(ns.network) == NS_NODE
    host_ipc = int(ns.ipc) == NS_NODE
    host_pid = int(ns.pid) == NS_NODE or pod.host_pid
    id_maps = userns_mappings(ns if sc.HasField("namespace_options") else None)

    candidates = [
        {"type": "mount"},
        _namespace("network", host_net, pod.netns_path),
        _namespace("ipc", host_ipc, pod.ipc_ns_path),
        _namespace("uts", host_net, pod.uts_ns_path),
        _namespace("pid", host_pid, pod.pid_ns_path),
        _namespace("user", id_maps is None, pod.user_ns_path),
        {"type": "cgroup"} if options.cgroup_namespace and not privileged else None,
    ]
    namespaces = [n for n in candidates if n is not None]

    uid = sc.run_as_user.value if sc.HasField("run_as_user") else 0
    gid = sc.run_as_group.value if sc.HasField("run_as_group") else 0
    if sc.HasField("run_as_group") and not sc.HasField("run_as_user"):
        raise SpecError("run_as_group requires run_as_user")
    for value, what in ((uid, "run_as_user"), (gid, "run_as_group")):
        if value < 0:
            raise SpecError(f"{what} {value} is out of range")

    process: dict[str, Any] = {
        "terminal": False,
        "user": {"uid": uid, "gid": gid, "additionalGids": [gid]},
        "args": list(pause_args),
        "env": [f"PATH={DEFAULT_PATH}"],
        "cwd": "/",
        "capabilities": {"bounding": [], "effective": [], "permitted": []},
        "noNewPrivileges": True,
        "oomScoreAdj": res.oom_score_adj(
            SANDBOX_OOM_SCORE_ADJ,
            restrict=options.restrict_oom_score_adj,
            daemon_score=options.daemon_oom_score_adj,
        ),
    }
    if options.apparmor_enabled and options.apparmor_default_profile and not privileged:
        process["apparmorProfile"] = options.apparmor_default_profile

    resources: dict[str, Any] = {
        "cpu": {"shares": SANDBOX_CPU_SHARES},
        "devices": security.device_rules([], privileged=False),
    }
    if options.pids_limit > 0:
        resources["pids"] = {"limit": options.pids_limit}
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "cgroupsPath": res.cgroup_parent_path(pod.cgroup_parent, pod.cgroup_driver, pod.sandbox_id),
        "resources": resources,
    }
    if id_maps is not None:
        linux["uidMappings"], linux["gidMappings"] = id_maps
    if sandbox_config.linux.sysctls:
        linux["sysctl"] = sysctls_for(
            sandbox_config.linux.sysctls,
            own_net=not host_net,
            own_ipc=not host_ipc,
            own_uts=not host_net,
        )
    masked, readonly = security.masked_and_readonly_paths([], [], privileged=privileged)
    if masked:
        linux["maskedPaths"] = masked
        linux["readonlyPaths"] = readonly
    if not privileged:
        # An empty capability set: the profile's capability-gated rules all stay closed.
        linux["seccomp"] = sec.render_default((), options.arch)

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": True},
        "mounts": mnt.default_mounts(privileged=False),
        "annotations": sandbox_annotations(sandbox_config, pod.sandbox_id),
        "linux": linux,
    }
    if not host_net and pod.hostname:
        spec["hostname"] = pod.hostname
    return spec
