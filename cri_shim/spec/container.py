"""The OCI runtime spec (config.json) of a container, built from the CRI request, the image's
config and what the runtime decided for the pod. Pure: host facts (device numbers, profile
files, the image's /etc/passwd) are passed in as values or small callbacks, so every rule here
is tested without root.

Reading guide: `build_container_spec` assembles the parts; each part has its own module
(users, mounts, resources, security, seccomp) and this one adds the process (command, env),
the namespaces, sysctls and annotations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cri_shim.spec import mounts as mnt
from cri_shim.spec import resources as res
from cri_shim.spec import seccomp as sec
from cri_shim.spec import security
from cri_shim.spec.security import DeviceInfo, SpecError
from cri_shim.spec.users import ResolvedUser, resolve_user
from images.manifest import ImageConfig

__all__ = [
    "DEFAULT_PATH",
    "OCI_VERSION",
    "PodContext",
    "RuntimeOptions",
    "Ulimit",
    "build_container_spec",
    "container_annotations",
    "container_user",
    "namespace_list",
    "process_args",
    "process_env",
    "sysctls_for",
    "userns_mappings",
]

OCI_VERSION = "1.0.2"  # what runc 1.1 and crun 1.8 (Debian 12) implement
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# runtime.v1.NamespaceMode values.
NS_POD, NS_CONTAINER, NS_NODE, NS_TARGET = 0, 1, 2, 3

# The io.kubernetes.cri.* annotations containerd sets; tools (and NRI plugins) read them.
ANN_CONTAINER_TYPE = "io.kubernetes.cri.container-type"
ANN_SANDBOX_ID = "io.kubernetes.cri.sandbox-id"
ANN_CONTAINER_NAME = "io.kubernetes.cri.container-name"
ANN_IMAGE_NAME = "io.kubernetes.cri.image-name"
ANN_SANDBOX_NAME = "io.kubernetes.cri.sandbox-name"
ANN_SANDBOX_NAMESPACE = "io.kubernetes.cri.sandbox-namespace"
ANN_SANDBOX_UID = "io.kubernetes.cri.sandbox-uid"
ANN_SANDBOX_LOG_DIR = "io.kubernetes.cri.sandbox-log-directory"


@dataclass(frozen=True)
class PodContext:
    """What the runtime decided for the pod; paths are on the host."""

    sandbox_id: str
    netns_path: str | None  # None = host network
    ipc_ns_path: str | None  # None = host IPC
    uts_ns_path: str | None  # None = host UTS
    # Pod-level PID namespace (the infra process's /proc/PID/ns/pid); None = each container
    # gets its own, or the host's when host_pid.
    pid_ns_path: str | None
    host_pid: bool
    hostname: str
    hosts_path: str  # files the runtime wrote for the pod ("" = none)
    resolv_path: str
    hostname_path: str
    shm_path: str | None  # None = host IPC (the host's /dev/shm)
    cgroup_parent: str  # the kubelet's cgroup_parent (slice name or path for the driver)
    cgroup_driver: str  # "cgroupfs" or "systemd"
    # The pod's user namespace when it has one (userns_options mode POD). None with mappings
    # requested means each container creates one with the pod's mappings.
    user_ns_path: str | None = None
    # Write the pod's sysctls from each container's spec. False when an infra process (whose
    # spec carries them) already set them in the shared namespaces.
    apply_sysctls: bool = True


@dataclass(frozen=True)
class Ulimit:
    type: str  # "RLIMIT_NOFILE", ...
    soft: int
    hard: int


@dataclass(frozen=True)
class RuntimeOptions:
    """Daemon configuration that shapes specs."""

    restrict_oom_score_adj: bool = False
    daemon_oom_score_adj: int = 0
    seccomp_profile_root: str = "/var/lib/kubelet/seccomp"
    apparmor_enabled: bool = False
    # The profile RuntimeDefault means when AppArmor is on; "" = none (unconfined).
    apparmor_default_profile: str = ""
    default_ulimits: tuple[Ulimit, ...] = ()
    pids_limit: int = 0  # per container; 0 = unlimited
    hugetlb: bool = True  # the host has the hugetlb cgroup controller (else limits are dropped)
    arch: str = "amd64"  # host architecture, for the seccomp profile's architectures
    # A private cgroup namespace for unprivileged containers (what cgroup v2 hosts want).
    cgroup_namespace: bool = False
    # The runtime's own bounding set: what "all capabilities" means here (empty = all known).
    available_capabilities: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# process


def process_args(config: Any, image: ImageConfig) -> list[str]:
    """The kubelet's rule: `command` replaces the image's entrypoint *and* drops its cmd;
    `args` alone replace the cmd and keep the entrypoint."""
    command, args = list(config.command), list(config.args)
    if command:
        argv = command + args
    elif args:
        argv = list(image.entrypoint) + args
    else:
        argv = list(image.entrypoint) + list(image.cmd)
    if not argv:
        raise SpecError("no command specified: neither the request nor the image has one")
    return argv


def _env_value(value: str | bytes) -> str:
    # The generated KeyValue.value is `bytes` in this CRI version. Invalid UTF-8 becomes
    # U+FFFD, as Go's encoding/json does for the kubelet's strings.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _merge_env(items: Iterable[str]) -> list[str]:
    """Later values win; a variable keeps the position where it first appeared."""
    merged: dict[str, str] = {}
    for item in items:
        key, _, _ = item.partition("=")
        merged[key] = item
    return list(merged.values())


def process_env(config: Any, image: ImageConfig) -> list[str]:
    """The image's environment, then the request's (which wins); PATH defaults like Docker's."""
    request = [f"{kv.key}={_env_value(kv.value)}" for kv in config.envs if kv.key]
    env = _merge_env([*image.env, *request])
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, f"PATH={DEFAULT_PATH}")
    return env


def container_user(
    config: Any, image: ImageConfig, passwd: str | None, group: str | None
) -> ResolvedUser:
    """The identity the container runs as (also what ContainerStatus.user reports)."""
    sc = config.linux.security_context
    return resolve_user(
        run_as_user=sc.run_as_user.value if sc.HasField("run_as_user") else None,
        run_as_username=sc.run_as_username,
        run_as_group=sc.run_as_group.value if sc.HasField("run_as_group") else None,
        image_user=image.user,
        supplemental_groups=list(sc.supplemental_groups),
        strict_groups=int(sc.supplemental_groups_policy) == 1,  # SupplementalGroupsPolicy.Strict
        passwd=passwd,
        group=group,
    )


# ---------------------------------------------------------------------------------------------
# namespaces and sysctls


def userns_mappings(ns_options: Any) -> tuple[list[dict[str, int]], list[dict[str, int]]] | None:
    """(uidMappings, gidMappings) for a pod with its own user namespace, None for the host's.

    Only mode POD is a user namespace (the CRI allows no CONTAINER or TARGET), with exactly one
    uid and one gid range that maps container id 0, as the kubelet always sends.
    """
    if ns_options is None or not ns_options.HasField("userns_options"):
        return None
    userns = ns_options.userns_options
    mode = int(userns.mode)
    if mode == NS_NODE:
        if userns.uids or userns.gids:
            raise SpecError("user namespace mode NODE takes no id mappings")
        return None
    if mode != NS_POD:
        raise SpecError("user namespace mode must be POD or NODE")
    out = []
    for kind, mappings in (("uid", userns.uids), ("gid", userns.gids)):
        if len(mappings) != 1:
            raise SpecError(f"user namespace needs exactly one {kind} mapping, got {len(mappings)}")
        m = mappings[0]
        if m.container_id != 0:
            raise SpecError(f"user namespace {kind} mapping must map container id 0")
        if m.length == 0:
            raise SpecError(f"user namespace {kind} mapping has length 0")
        out.append([{"containerID": m.container_id, "hostID": m.host_id, "size": m.length}])
    return out[0], out[1]


def _pid_mode(config: Any, sandbox_config: Any) -> int:
    sc = config.linux.security_context
    if sc.HasField("namespace_options"):
        return int(sc.namespace_options.pid)
    return int(sandbox_config.linux.security_context.namespace_options.pid)


def namespace_list(
    pod: PodContext,
    *,
    pid_mode: int,
    target_pid_ns_path: str | None,
    userns: bool,
    cgroup_ns: bool,
) -> list[dict[str, str]]:
    """`linux.namespaces` of a container: joins the pod's, creates its own mount namespace; a
    namespace left out is the host's."""
    out: list[dict[str, str]] = [{"type": "mount"}]
    if pod.host_pid or pid_mode == NS_NODE:
        pass
    elif pid_mode == NS_TARGET:
        if not target_pid_ns_path:
            raise SpecError("PID namespace mode TARGET needs a running target container")
        out.append({"type": "pid", "path": target_pid_ns_path})
    elif pid_mode == NS_POD and pod.pid_ns_path:
        out.append({"type": "pid", "path": pod.pid_ns_path})
    else:
        out.append({"type": "pid"})
    for kind, path in (
        ("network", pod.netns_path),
        ("ipc", pod.ipc_ns_path),
        ("uts", pod.uts_ns_path),
    ):
        if path is not None:
            out.append({"type": kind, "path": path})
    if userns:
        user: dict[str, str] = {"type": "user"}
        if pod.user_ns_path:
            user["path"] = pod.user_ns_path
        out.append(user)
    if cgroup_ns:
        out.append({"type": "cgroup"})
    return out


# sysctls the kernel scopes to the IPC namespace (besides the whole fs.mqueue.* tree).
_IPC_SYSCTLS = frozenset(
    {
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    }
)
_UTS_SYSCTLS = frozenset({"kernel.hostname", "kernel.domainname"})


def sysctls_for(
    sysctls: Mapping[str, str], *, own_net: bool, own_ipc: bool, own_uts: bool
) -> dict[str, str]:
    """The pod's sysctls, refused when they would change the host: only namespaced sysctls
    are allowed, and only for namespaces the pod does not share with the host."""
    out: dict[str, str] = {}
    for raw, value in sorted(sysctls.items()):
        key = raw.replace("/", ".")
        if key.startswith("net."):
            allowed, ns = own_net, "network"
        elif key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            allowed, ns = own_ipc, "IPC"
        elif key in _UTS_SYSCTLS:
            allowed, ns = own_uts, "UTS"
        else:
            raise SpecError(f"sysctl {raw!r} is not namespaced and would change the host")
        if not allowed:
            raise SpecError(f"sysctl {raw!r} needs a pod {ns} namespace; the pod uses the host's")
        out[key] = value
    return out


# ---------------------------------------------------------------------------------------------
# annotations


def _sandbox_annotations(sandbox_config: Any, sandbox_id: str) -> dict[str, str]:
    meta = sandbox_config.metadata
    return {
        ANN_SANDBOX_ID: sandbox_id,
        ANN_SANDBOX_NAME: meta.name,
        ANN_SANDBOX_NAMESPACE: meta.namespace,
        ANN_SANDBOX_UID: meta.uid,
    }


def container_annotations(config: Any, sandbox_config: Any, sandbox_id: str) -> dict[str, str]:
    """The request's annotations plus ours; ours win, so a request cannot disguise a container
    as another pod's."""
    image = config.image
    out = dict(sorted(config.annotations.items()))
    out.update(_sandbox_annotations(sandbox_config, sandbox_id))
    out[ANN_CONTAINER_TYPE] = "container"
    out[ANN_CONTAINER_NAME] = config.metadata.name
    out[ANN_IMAGE_NAME] = image.user_specified_image or image.image
    return out


# ---------------------------------------------------------------------------------------------
# the builder


def _security_profile(sc: Any, field: str) -> tuple[bool, int, str]:
    if sc.HasField(field):
        profile = getattr(sc, field)
        return True, int(profile.profile_type), profile.localhost_ref
    return False, 0, ""


_APPARMOR_TYPES = {0: "RuntimeDefault", 1: "Unconfined", 2: "Localhost"}


def _apparmor(
    sc: Any,
    options: RuntimeOptions,
    privileged: bool,
    is_loaded: Callable[[str], bool] | None,
) -> str | None:
    has, ptype, ref = _security_profile(sc, "apparmor")
    if has:
        kind: str | None = _APPARMOR_TYPES.get(ptype)
        if kind is None:
            raise SpecError(f"unknown AppArmor profile type {ptype}")
    else:
        kind, ref = security.deprecated_apparmor(sc.apparmor_profile)
    return security.apparmor_profile(
        kind,
        ref,
        privileged=privileged,
        enabled=options.apparmor_enabled,
        default_profile=options.apparmor_default_profile,
        is_loaded=is_loaded,
    )


def _rlimits(ulimits: Sequence[Ulimit]) -> list[dict[str, Any]]:
    return [{"type": u.type, "soft": u.soft, "hard": u.hard} for u in ulimits]


def build_container_spec(
    config: Any,
    sandbox_config: Any,
    image: ImageConfig,
    pod: PodContext,
    rootfs: str,
    passwd: str | None,
    group: str | None,
    container_id: str,
    options: RuntimeOptions,
    localhost_profile: Callable[[str], Any] | None = None,
    *,
    device_info: Callable[[str], DeviceInfo] | None = None,
    host_devices: Callable[[], Sequence[str]] | None = None,
    resolve_host_path: Callable[[str], str] | None = None,
    image_volume_path: Callable[[Any], str] | None = None,
    apparmor_loaded: Callable[[str], bool] | None = None,
    target_pid_ns_path: str | None = None,
) -> dict[str, Any]:
    """The OCI runtime spec of a container, as a JSON-able dict.

    Callbacks (all I/O the shell does for us): `localhost_profile(path)` -> parsed seccomp JSON;
    `device_info(host_path)` -> (type, major, minor, mode); `host_devices()` -> the host's
    device node paths, given to privileged containers; `resolve_host_path` -> realpath of a
    volume's host path; `image_volume_path(mount)` -> where an image volume is mounted;
    `apparmor_loaded(name)` -> whether a profile is loaded. Raises SpecError for requests that
    cannot be honoured.
    """
    linux = config.linux
    sc = linux.security_context
    privileged = bool(sc.privileged)
    pod_sc = sandbox_config.linux.security_context
    if privileged and not pod_sc.privileged:
        raise SpecError("privileged container in a non-privileged pod sandbox")

    user = container_user(config, image, passwd, group)
    caps = security.capabilities(
        list(sc.capabilities.add_capabilities),
        list(sc.capabilities.drop_capabilities),
        list(sc.capabilities.add_ambient_capabilities),
        privileged=privileged,
        available=options.available_capabilities,
    )
    hostname_env = [f"HOSTNAME={pod.hostname}"] if pod.hostname else []
    process: dict[str, Any] = {
        "terminal": bool(config.tty),
        "user": {
            "uid": user.uid,
            "gid": user.gid,
            "additionalGids": list(user.additional_gids),
        },
        "args": process_args(config, image),
        # HOSTNAME first, as Docker sets it, so that the image or the request can override it.
        "env": _merge_env([*hostname_env, *process_env(config, image)]),
        "cwd": config.working_dir or image.working_dir or "/",
        "capabilities": caps,
        # Per request, as the CRI defines it: critest checks that a setuid binary escalates
        # when no_new_privs is false. The kubelet sets it for allowPrivilegeEscalation: false.
        "noNewPrivileges": bool(sc.no_new_privs),
        "oomScoreAdj": res.oom_score_adj(
            int(linux.resources.oom_score_adj),
            restrict=options.restrict_oom_score_adj,
            daemon_score=options.daemon_oom_score_adj,
        ),
    }
    if not process["cwd"].startswith("/"):
        raise SpecError(f"working directory {process['cwd']!r} must be absolute")
    apparmor = _apparmor(sc, options, privileged, apparmor_loaded)
    if apparmor:
        process["apparmorProfile"] = apparmor
    if options.default_ulimits:
        process["rlimits"] = _rlimits(options.default_ulimits)

    requested = mnt.cri_mounts(
        list(config.mounts),
        resolve_host_path=resolve_host_path,
        image_volume_path=image_volume_path,
    )
    mounts = mnt.merge_mounts(
        mnt.default_mounts(privileged=privileged),
        mnt.pod_mounts(
            hosts_path=pod.hosts_path,
            resolv_path=pod.resolv_path,
            hostname_path=pod.hostname_path,
            shm_path=pod.shm_path,
            readonly=bool(sc.readonly_rootfs),
        ),
        requested,
    )

    ns_options = pod_sc.namespace_options if pod_sc.HasField("namespace_options") else None
    id_maps = userns_mappings(ns_options)
    linux_spec: dict[str, Any] = {
        "namespaces": namespace_list(
            pod,
            pid_mode=_pid_mode(config, sandbox_config),
            target_pid_ns_path=target_pid_ns_path,
            userns=id_maps is not None,
            cgroup_ns=options.cgroup_namespace and not privileged,
        ),
        "cgroupsPath": res.cgroup_parent_path(pod.cgroup_parent, pod.cgroup_driver, container_id),
    }
    if id_maps is not None:
        linux_spec["uidMappings"], linux_spec["gidMappings"] = id_maps

    requested_devices = [(d.host_path, d.container_path, d.permissions) for d in config.devices]
    if privileged and host_devices is not None:
        taken = {container for _, container, _ in requested_devices}
        requested_devices += [(p, p, "rwm") for p in host_devices() if p not in taken]
    device_nodes, device_allow = security.devices(requested_devices, device_info)
    resources = res.linux_resources(
        linux.resources if linux.HasField("resources") else None,
        pids_limit=options.pids_limit,
        hugetlb=options.hugetlb,
    )
    resources["devices"] = security.device_rules(device_allow, privileged=privileged)
    linux_spec["resources"] = resources
    if device_nodes:
        linux_spec["devices"] = device_nodes

    if pod.apply_sysctls and sandbox_config.linux.sysctls:
        linux_spec["sysctl"] = sysctls_for(
            sandbox_config.linux.sysctls,
            own_net=pod.netns_path is not None,
            own_ipc=pod.ipc_ns_path is not None,
            own_uts=pod.uts_ns_path is not None,
        )
    masked, readonly = security.masked_and_readonly_paths(
        list(sc.masked_paths), list(sc.readonly_paths), privileged=privileged
    )
    if masked:
        linux_spec["maskedPaths"] = masked
    if readonly:
        linux_spec["readonlyPaths"] = readonly
    has, ptype, ref = _security_profile(sc, "seccomp")
    kind, path = sec.select_profile(
        has, ptype, ref, sc.seccomp_profile_path, profile_root=options.seccomp_profile_root
    )
    seccomp = sec.seccomp_for(
        kind,
        path,
        caps=caps["bounding"],
        arch=options.arch,
        privileged=privileged,
        load=localhost_profile,
    )
    if seccomp is not None:
        linux_spec["seccomp"] = seccomp
    propagation = mnt.rootfs_propagation(mounts)
    if propagation:
        linux_spec["rootfsPropagation"] = propagation

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": bool(sc.readonly_rootfs)},
        "mounts": mounts,
        "annotations": container_annotations(config, sandbox_config, pod.sandbox_id),
        "linux": linux_spec,
    }
    if pod.uts_ns_path is not None and pod.hostname:
        spec["hostname"] = pod.hostname
    return spec
