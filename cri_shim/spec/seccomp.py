"""Seccomp for a container: which profile the CRI request selects, and its OCI form.

Three sources: our RuntimeDefault policy (seccomp_default.py, rendered per container because
some rules depend on its capabilities), a Localhost profile file that the shell reads and hands
in as parsed JSON, and Unconfined (no filter). Localhost files may be written in the Docker
profile dialect (`archMap`, `includes`/`excludes`, singular `name`), which this module reduces to
plain OCI `linux.seccomp`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Collection, Mapping
from typing import Any

from cri_shim.spec import seccomp_default as sd
from cri_shim.spec.security import SpecError

__all__ = [
    "LOCALHOST",
    "RUNTIME_DEFAULT",
    "UNCONFINED",
    "localhost_to_oci",
    "normalize_arch",
    "render_default",
    "seccomp_for",
    "select_profile",
]

RUNTIME_DEFAULT = "RuntimeDefault"
UNCONFINED = "Unconfined"
LOCALHOST = "Localhost"

_PROFILE_TYPES = {0: RUNTIME_DEFAULT, 1: UNCONFINED, 2: LOCALHOST}
_LOCALHOST_PREFIX = "localhost/"

_ARCH_ALIASES = {"amd64": "amd64", "x86_64": "amd64", "arm64": "arm64", "aarch64": "arm64"}
# Native seccomp architecture per host architecture, used to pick from a Docker `archMap`.
_NATIVE = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64"}


def normalize_arch(arch: str) -> str:
    """Go ("amd64") or uname ("x86_64") architecture names to the Go form."""
    try:
        return _ARCH_ALIASES[arch]
    except KeyError:
        raise SpecError(f"no seccomp support for architecture {arch!r}") from None


def select_profile(
    has_field: bool,
    profile_type: int,
    localhost_ref: str,
    deprecated_path: str,
    *,
    profile_root: str,
) -> tuple[str, str]:
    """(kind, path) chosen by a security context.

    The structured `seccomp` field wins over the deprecated `seccomp_profile_path`. When
    neither is given the container is unconfined: the CRI v1 contract (the kubelet sends
    RuntimeDefault explicitly when the pod asks for it).
    """
    if has_field:
        kind = _PROFILE_TYPES.get(profile_type)
        if kind is None:
            raise SpecError(f"unknown seccomp profile type {profile_type}")
        if kind != LOCALHOST:
            return kind, ""
        return LOCALHOST, _localhost_path(localhost_ref, profile_root)
    if deprecated_path in ("", "unconfined"):
        return UNCONFINED, ""
    if deprecated_path in ("runtime/default", "docker/default"):
        return RUNTIME_DEFAULT, ""
    if deprecated_path.startswith(_LOCALHOST_PREFIX):
        return LOCALHOST, _localhost_path(deprecated_path, profile_root)
    raise SpecError(f"invalid seccomp_profile_path {deprecated_path!r}")


def _localhost_path(ref: str, root: str) -> str:
    path = ref.removeprefix(_LOCALHOST_PREFIX)
    if not path:
        raise SpecError("seccomp Localhost profile without a path")
    # The kubelet sends absolute paths; relative ones are relative to the profile root, the
    # way the deprecated "localhost/<name>" form was always meant.
    joined = path if path.startswith("/") else posixpath.join(root, path)
    return posixpath.normpath(joined)


def render_default(caps: Collection[str], arch: str) -> dict[str, Any]:
    """Our RuntimeDefault profile for a container with these capabilities on `arch`."""
    host = normalize_arch(arch)
    capset = set(caps)
    # Rules with the same action, errno and argument conditions merge into one entry.
    merged: dict[tuple[str, int | None, tuple[sd.Arg, ...]], set[str]] = {}
    for rule in sd.RULES:
        if rule.arches and host not in rule.arches:
            continue
        if rule.if_cap is not None and rule.if_cap not in capset:
            continue
        if rule.unless_cap is not None and rule.unless_cap in capset:
            continue
        merged.setdefault((rule.action, rule.errno, rule.args), set()).update(rule.names)
    syscalls: list[dict[str, Any]] = []
    for (action, errno, args), names in merged.items():
        entry: dict[str, Any] = {"names": sorted(names), "action": action}
        if errno is not None:
            entry["errnoRet"] = errno
        if args:
            entry["args"] = [
                {"index": a.index, "value": a.value, "valueTwo": a.value_two, "op": a.op}
                for a in args
            ]
        syscalls.append(entry)
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": sd.DEFAULT_ERRNO,
        "architectures": list(sd.ARCH_FAMILIES[host]),
        "syscalls": syscalls,
    }


# ---------------------------------------------------------------------------------------------
# Localhost profiles

_PASSTHROUGH = ("defaultErrnoRet", "flags", "listenerPath", "listenerMetadata")


def localhost_to_oci(profile: Any, caps: Collection[str], arch: str) -> dict[str, Any]:
    """A Localhost profile (OCI or Docker dialect) as OCI `linux.seccomp` for this container."""
    if not isinstance(profile, Mapping):
        raise SpecError("seccomp profile must be a JSON object")
    default_action = profile.get("defaultAction")
    if not isinstance(default_action, str) or not default_action:
        raise SpecError("seccomp profile has no defaultAction")
    host = normalize_arch(arch)
    out: dict[str, Any] = {"defaultAction": default_action}
    for key in _PASSTHROUGH:
        if key in profile:
            out[key] = profile[key]
    arches = _profile_arches(profile, host)
    if arches:
        out["architectures"] = arches
    syscalls = profile.get("syscalls")
    if syscalls is None:
        syscalls = []
    if not isinstance(syscalls, list):
        raise SpecError("seccomp profile: syscalls must be a list")
    capset = set(caps)
    converted = [
        entry for raw in syscalls if (entry := _syscall_entry(raw, capset, host)) is not None
    ]
    if converted:
        out["syscalls"] = converted
    return out


def _profile_arches(profile: Mapping[str, Any], host: str) -> list[str]:
    arches = profile.get("architectures")
    if arches:
        if not isinstance(arches, list) or not all(isinstance(a, str) for a in arches):
            raise SpecError("seccomp profile: architectures must be a list of strings")
        return list(arches)
    arch_map = profile.get("archMap")
    if arch_map is None:
        return []
    if not isinstance(arch_map, list):
        raise SpecError("seccomp profile: archMap must be a list")
    for item in arch_map:
        if isinstance(item, Mapping) and item.get("architecture") == _NATIVE[host]:
            subs = item.get("subArchitectures") or []
            return [_NATIVE[host], *[str(s) for s in subs]]
    return []


def _condition_holds(cond: Any, capset: set[str], host: str, *, include: bool) -> bool:
    """Docker `includes` (all listed caps held, host arch listed) or `excludes` (any held or
    listed). `minKernel` is not checked: a pure function does not know the kernel, and the
    kernel refuses unknown syscalls by itself."""
    if not cond:
        return include
    if not isinstance(cond, Mapping):
        raise SpecError("seccomp profile: includes/excludes must be objects")
    caps = [c if str(c).startswith("CAP_") else f"CAP_{c}" for c in cond.get("caps") or []]
    arches = [_ARCH_ALIASES.get(str(a), str(a)) for a in cond.get("arches") or []]
    if include:
        return all(c in capset for c in caps) and (not arches or host in arches)
    return any(c in capset for c in caps) or host in arches


def _syscall_entry(raw: Any, capset: set[str], host: str) -> dict[str, Any] | None:
    if not isinstance(raw, Mapping):
        raise SpecError("seccomp profile: each syscalls entry must be an object")
    if not _condition_holds(raw.get("includes"), capset, host, include=True):
        return None
    if raw.get("excludes") and _condition_holds(raw["excludes"], capset, host, include=False):
        return None
    names = raw.get("names")
    if names is None and isinstance(raw.get("name"), str):
        names = [raw["name"]]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise SpecError("seccomp profile: a syscalls entry needs a non-empty list of names")
    action = raw.get("action")
    if not isinstance(action, str) or not action:
        raise SpecError(f"seccomp profile: no action for {names}")
    entry: dict[str, Any] = {"names": list(names), "action": action}
    for key in ("errnoRet", "args"):
        if raw.get(key) is not None:
            entry[key] = raw[key]
    return entry


def seccomp_for(
    kind: str,
    path: str,
    *,
    caps: Collection[str],
    arch: str,
    privileged: bool,
    load: Callable[[str], Any] | None,
) -> dict[str, Any] | None:
    """`linux.seccomp` for a selected profile, or None for no filter (privileged included)."""
    if privileged or kind == UNCONFINED:
        return None
    if kind == RUNTIME_DEFAULT:
        return render_default(caps, arch)
    if load is None:
        raise SpecError(f"seccomp profile {path!r} requested but profiles cannot be loaded")
    try:
        profile = load(path)
    except (OSError, ValueError) as exc:
        # A missing or malformed file is the request's fault (it names the file), not ours.
        raise SpecError(f"cannot load seccomp profile {path!r}: {exc}") from exc
    return localhost_to_oci(profile, caps, arch)
