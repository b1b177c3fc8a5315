"""Security policy of a container spec: capabilities, masked and read-only paths, AppArmor,
devices, and what `privileged` switches off. Pure; host facts arrive as arguments.

SELinux options are accepted and ignored: Stowage targets Debian hosts, which run without an
SELinux policy, and labels that nothing enforces would only be misleading.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = [
    "ALL_CAPABILITIES",
    "DEFAULT_CAPABILITIES",
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_READONLY_PATHS",
    "DeviceInfo",
    "SpecError",
    "apparmor_profile",
    "capabilities",
    "capabilities_from_mask",
    "deprecated_apparmor",
    "device_rules",
    "devices",
    "masked_and_readonly_paths",
    "normalize_capability",
]


class SpecError(ValueError):
    """The CRI request cannot become a valid runtime spec (the edge maps it to INVALID_ARGUMENT).

    Lives here because every spec module needs it and this one has no dependencies of its own.
    """


# Every capability Linux defines (0 .. CAP_CHECKPOINT_RESTORE = 40), in number order. runc and
# crun skip names the running kernel does not know, so listing all of them is safe.
ALL_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

# The set containerd and Docker give a container, so images behave as they do elsewhere.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

# Kernel interfaces that leak host information or let a process poke the host; masked (a
# bind of /dev/null, or an empty read-only tmpfs for directories) unless privileged.
DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

_ALL_SET = frozenset(ALL_CAPABILITIES)


def normalize_capability(name: str) -> str:
    """ "net_admin", "NET_ADMIN" and "CAP_NET_ADMIN" all name CAP_NET_ADMIN (the kubelet sends
    the bare form, other clients the prefixed one)."""
    upper = name.strip().upper()
    full = upper if upper.startswith("CAP_") else "CAP_" + upper
    if full not in _ALL_SET:
        raise SpecError(f"unknown capability {name!r}")
    return full


def _is_all(name: str) -> bool:
    return name.strip().upper() in ("ALL", "CAP_ALL")


def capabilities_from_mask(mask: int) -> tuple[str, ...]:
    """The capabilities set in a /proc status mask (``CapBnd``): bit n is capability n."""
    return tuple(c for bit, c in enumerate(ALL_CAPABILITIES) if mask >> bit & 1)


def capabilities(
    add: Sequence[str],
    drop: Sequence[str],
    ambient: Sequence[str],
    *,
    privileged: bool,
    available: Sequence[str] = (),
) -> dict[str, list[str]]:
    """OCI `process.capabilities` for a container.

    Order follows the kubelet's expectation: "ALL" in add starts from every capability, "ALL"
    in drop starts from none, then single adds, then single drops (so drop ALL + add X = {X}).
    Inheritable stays empty (a setuid-less exec must not regain capabilities) unless ambient
    capabilities are asked for, which the kernel only honours when also inheritable.

    "Every capability" (privileged, or "ALL" in add) means every one the runtime itself holds
    (``available``, its bounding set; empty = all known): a container cannot be given more, and
    asking runc for it fails the whole create.
    """
    every = list(available) if available else list(ALL_CAPABILITIES)
    if privileged:
        caps = every
    else:
        chosen = set(DEFAULT_CAPABILITIES)
        if any(_is_all(c) for c in add):
            chosen = set(every)
        if any(_is_all(c) for c in drop):
            chosen = set()
        chosen |= {normalize_capability(c) for c in add if not _is_all(c)}
        chosen -= {normalize_capability(c) for c in drop if not _is_all(c)}
        caps = [c for c in ALL_CAPABILITIES if c in chosen]
    amb = sorted({normalize_capability(c) for c in ambient}, key=ALL_CAPABILITIES.index)
    # An ambient capability outside the bounding set cannot be raised; add it rather than
    # fail late inside runc with a message that names no field.
    caps = [c for c in ALL_CAPABILITIES if c in set(caps) | set(amb)]
    result = {
        "bounding": list(caps),
        "effective": list(caps),
        "permitted": list(caps),
    }
    if amb:
        result["inheritable"] = list(amb)
        result["ambient"] = list(amb)
    return result


def masked_and_readonly_paths(
    masked: Sequence[str], readonly: Sequence[str], *, privileged: bool
) -> tuple[list[str], list[str]]:
    """The kubelet sends both lists for a default ProcMount; an empty list means our defaults
    (protobuf cannot tell "absent" from "empty"). Privileged containers see everything."""
    if privileged:
        return [], []
    return (
        list(masked) if masked else list(DEFAULT_MASKED_PATHS),
        list(readonly) if readonly else list(DEFAULT_READONLY_PATHS),
    )


# ---------------------------------------------------------------------------------------------
# AppArmor

_LOCALHOST_PREFIX = "localhost/"


def apparmor_profile(
    profile_type: str | None,
    localhost_ref: str,
    *,
    privileged: bool,
    enabled: bool,
    default_profile: str,
    is_loaded: Callable[[str], bool] | None,
) -> str | None:
    """The profile name for `process.apparmorProfile`, or None for none.

    `profile_type` is "RuntimeDefault", "Unconfined" or "Localhost" (callers translate the
    deprecated string field first). A Localhost profile must already be loaded in the kernel:
    the CRI asks us to fail at creation rather than let runc fail at start.
    """
    if privileged or profile_type in (None, "Unconfined"):
        return None
    if profile_type == "RuntimeDefault":
        return default_profile if (enabled and default_profile) else None
    if profile_type != "Localhost":
        raise SpecError(f"unknown AppArmor profile type {profile_type!r}")
    name = localhost_ref.removeprefix(_LOCALHOST_PREFIX)
    if not name:
        raise SpecError("AppArmor Localhost profile without a profile name")
    if not enabled:
        raise SpecError(f"AppArmor profile {name!r} requested but AppArmor is not enabled")
    if is_loaded is not None and not is_loaded(name):
        raise SpecError(f"AppArmor profile {name!r} is not loaded")
    return name


def deprecated_apparmor(value: str) -> tuple[str | None, str]:
    """The deprecated `apparmor_profile` string as (profile_type, localhost_ref)."""
    if value in ("", "runtime/default"):
        return "RuntimeDefault", ""
    if value == "unconfined":
        return "Unconfined", ""
    if value.startswith(_LOCALHOST_PREFIX):
        return "Localhost", value
    raise SpecError(f"invalid apparmor_profile {value!r}")


# ---------------------------------------------------------------------------------------------
# Devices

DeviceInfo = tuple[str, int, int, int]
"""(type "c" or "b", major, minor, mode) of a host device node, as the shell's stat sees it."""

_VALID_ACCESS = frozenset("rwm")

# Character devices every container may use: null, zero, full, random, urandom, tty, console,
# ptmx and the pty slaves. runc adds the same rules itself; crun does not, so we say so.
_DEFAULT_ALLOWED: tuple[tuple[int, int | None], ...] = (
    (1, 3),
    (1, 5),
    (1, 7),
    (1, 8),
    (1, 9),
    (5, 0),
    (5, 1),
    (5, 2),
    (136, None),
)


def _access(permissions: str) -> str:
    access = permissions or "rwm"
    if not set(access) <= _VALID_ACCESS:
        raise SpecError(f"invalid device permissions {permissions!r}: only r, w and m are allowed")
    return "".join(c for c in "rwm" if c in access)


def devices(
    requested: Iterable[tuple[str, str, str]],
    device_info: Callable[[str], DeviceInfo] | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(linux.devices, cgroup allow rules) for CRI devices given as (host, container, perms)."""
    nodes: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    for host_path, container_path, permissions in requested:
        if not host_path or not container_path.startswith("/"):
            raise SpecError(
                f"device needs a host path and an absolute container path, got "
                f"{host_path!r} -> {container_path!r}"
            )
        access = _access(permissions)
        if device_info is None:
            raise SpecError(f"device {host_path!r} requested but device lookup is unavailable")
        kind, major, minor, mode = device_info(host_path)
        if kind not in ("c", "b"):
            raise SpecError(f"{host_path!r} is not a character or block device")
        nodes.append(
            {
                "path": container_path,
                "type": kind,
                "major": major,
                "minor": minor,
                "fileMode": mode & 0o777,
                "uid": 0,
                "gid": 0,
            }
        )
        rules.append(
            {"allow": True, "type": kind, "major": major, "minor": minor, "access": access}
        )
    return nodes, rules


def device_rules(extra: Sequence[dict[str, Any]], *, privileged: bool) -> list[dict[str, Any]]:
    """linux.resources.devices: deny all, then the defaults, then the requested devices."""
    if privileged:
        return [{"allow": True, "access": "rwm"}]
    rules: list[dict[str, Any]] = [
        {"allow": False, "access": "rwm"},
        # mknod of any node is harmless without read/write access to it (images ship nodes).
        {"allow": True, "type": "c", "access": "m"},
        {"allow": True, "type": "b", "access": "m"},
    ]
    for major, minor in _DEFAULT_ALLOWED:
        rule: dict[str, Any] = {"allow": True, "type": "c", "major": major, "access": "rwm"}
        if minor is not None:
            rule["minor"] = minor
        rules.append(rule)
    rules.extend(extra)
    return rules
