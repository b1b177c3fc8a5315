"""Builders of CRI requests and pod contexts for the spec tests."""

from __future__ import annotations

from typing import Any

from cri_shim._pb import api_pb2 as pb
from cri_shim.spec import PodContext
from images.manifest import ImageConfig

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
default-user:x:1000:1000::/home/default-user:/bin/sh
"""

GROUP = """\
root:x:0:
daemon:x:1:
wheel:x:10:root
nogroup:x:65534:
default-user:x:1000:
group-defined-in-image:x:50000:default-user
other:x:50001:someone,default-user
"""


def image(**over: Any) -> ImageConfig:
    fields: dict[str, Any] = {
        "os": "linux",
        "architecture": "amd64",
        "env": ("PATH=/usr/bin:/bin", "LANG=C"),
        "cmd": ("sh",),
    }
    fields.update(over)
    return ImageConfig(**fields)


def pod(**over: Any) -> PodContext:
    fields: dict[str, Any] = {
        "sandbox_id": "sb1",
        "netns_path": "/run/netns/sb1",
        "ipc_ns_path": "/run/stowage/ns/sb1/ipc",
        "uts_ns_path": "/run/stowage/ns/sb1/uts",
        "pid_ns_path": None,
        "host_pid": False,
        "hostname": "web-0",
        "hosts_path": "/var/lib/stowage/pods/sb1/hosts",
        "resolv_path": "/var/lib/stowage/pods/sb1/resolv.conf",
        "hostname_path": "/var/lib/stowage/pods/sb1/hostname",
        "shm_path": "/run/stowage/pods/sb1/shm",
        "cgroup_parent": "/kubepods/besteffort/pod-uid-1",
        "cgroup_driver": "cgroupfs",
    }
    fields.update(over)
    return PodContext(**fields)


def sandbox_config(**over: Any) -> Any:
    cfg = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="web-0", uid="uid-1", namespace="default", attempt=0),
        hostname="web-0",
        log_directory="/var/log/pods/default_web-0_uid-1",
        annotations={"pod.annotation": "yes"},
    )
    for key, value in over.items():
        if key == "sc":
            cfg.linux.security_context.CopyFrom(value)
        elif key == "sysctls":
            cfg.linux.sysctls.update(value)
        else:
            setattr(cfg, key, value)
    return cfg


def container_config(**over: Any) -> Any:
    cfg = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="app", attempt=1),
        image=pb.ImageSpec(image="sha256:abc", user_specified_image="busybox:1.36"),
        annotations={"team": "infra"},
        log_path="app/0.log",
    )
    for key, value in over.items():
        if key == "sc":
            cfg.linux.security_context.CopyFrom(value)
        elif key == "resources":
            cfg.linux.resources.CopyFrom(value)
        elif key in ("command", "args", "mounts", "devices", "envs"):
            getattr(cfg, key).extend(value)
        elif key == "annotations":
            cfg.annotations.clear()
            cfg.annotations.update(value)
        else:
            setattr(cfg, key, value)
    return cfg


def privileged_sandbox() -> Any:
    return sandbox_config(sc=pb.LinuxSandboxSecurityContext(privileged=True))
