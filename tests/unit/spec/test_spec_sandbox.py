from __future__ import annotations

import json
from typing import Any

import pytest

from cri_shim._pb import api_pb2 as pb
from cri_shim.spec import PodContext, RuntimeOptions, SpecError, build_sandbox_spec
from tests.unit.spec._factories import pod, sandbox_config

ROOTFS = "/var/lib/stowage/pause/rootfs"


def _build(
    sandbox: Any = None,
    ctx: PodContext | None = None,
    options: RuntimeOptions | None = None,
    args: list[str] | None = None,
) -> dict[str, Any]:
    spec = build_sandbox_spec(
        sandbox if sandbox is not None else sandbox_config(),
        ctx if ctx is not None else pod(ipc_ns_path=None, uts_ns_path=None),
        ROOTFS,
        ["/pause"] if args is None else args,
        options if options is not None else RuntimeOptions(),
    )
    json.dumps(spec)
    return spec


def _ns(spec: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {n["type"]: n for n in spec["linux"]["namespaces"]}


def _sandbox(**sc: Any) -> Any:
    return sandbox_config(sc=pb.LinuxSandboxSecurityContext(**sc))


def test_default() -> None:
    spec = _build()
    assert spec["root"] == {"path": ROOTFS, "readonly": True}
    assert spec["hostname"] == "web-0"
    process = spec["process"]
    assert process["args"] == ["/pause"]
    assert process["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}
    assert process["capabilities"] == {"bounding": [], "effective": [], "permitted": []}
    assert process["noNewPrivileges"] is True
    assert process["oomScoreAdj"] == -998
    linux = spec["linux"]
    assert linux["cgroupsPath"] == "/kubepods/besteffort/pod-uid-1/sb1"
    assert linux["resources"]["cpu"] == {"shares": 2}
    assert linux["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert "/proc/kcore" in linux["maskedPaths"]
    assert spec["annotations"] == {
        "pod.annotation": "yes",
        "io.kubernetes.cri.container-type": "sandbox",
        "io.kubernetes.cri.sandbox-id": "sb1",
        "io.kubernetes.cri.sandbox-name": "web-0",
        "io.kubernetes.cri.sandbox-namespace": "default",
        "io.kubernetes.cri.sandbox-uid": "uid-1",
        "io.kubernetes.cri.sandbox-log-directory": "/var/log/pods/default_web-0_uid-1",
    }


def test_namespaces_created_or_joined() -> None:
    ns = _ns(_build())
    assert ns["network"] == {"type": "network", "path": "/run/netns/sb1"}
    assert ns["ipc"] == {"type": "ipc"}
    assert ns["uts"] == {"type": "uts"}
    assert ns["pid"] == {"type": "pid"}
    assert ns["mount"] == {"type": "mount"}
    assert "user" not in ns


def test_pinned_namespaces_are_joined() -> None:
    ns = _ns(_build(ctx=pod()))
    assert ns["ipc"]["path"] == "/run/stowage/ns/sb1/ipc"
    assert ns["uts"]["path"] == "/run/stowage/ns/sb1/uts"


def test_host_network_keeps_host_uts_and_hostname() -> None:
    sandbox = _sandbox(namespace_options=pb.NamespaceOption(network=pb.NODE))
    spec = _build(sandbox=sandbox, ctx=pod(netns_path=None, ipc_ns_path=None, uts_ns_path=None))
    ns = _ns(spec)
    assert "network" not in ns
    assert "uts" not in ns
    assert "hostname" not in spec


def test_host_ipc_and_pid() -> None:
    sandbox = _sandbox(namespace_options=pb.NamespaceOption(ipc=pb.NODE, pid=pb.NODE))
    ns = _ns(_build(sandbox=sandbox))
    assert "ipc" not in ns
    assert "pid" not in ns


def test_user_namespace() -> None:
    mapping = pb.IDMapping(container_id=0, host_id=1000, length=100000)
    userns = pb.UserNamespace(mode=pb.POD, uids=[mapping], gids=[mapping])
    sandbox = _sandbox(namespace_options=pb.NamespaceOption(userns_options=userns))
    spec = _build(sandbox=sandbox)
    assert _ns(spec)["user"] == {"type": "user"}
    assert spec["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 1000, "size": 100000}]


def test_user_namespace_invalid() -> None:
    userns = pb.UserNamespace(mode=pb.CONTAINER)
    sandbox = _sandbox(namespace_options=pb.NamespaceOption(userns_options=userns))
    with pytest.raises(SpecError, match="POD or NODE"):
        _build(sandbox=sandbox)


def test_run_as_user_and_group() -> None:
    sandbox = _sandbox(
        run_as_user=pb.Int64Value(value=65535), run_as_group=pb.Int64Value(value=65535)
    )
    assert _build(sandbox=sandbox)["process"]["user"] == {
        "uid": 65535,
        "gid": 65535,
        "additionalGids": [65535],
    }


def test_run_as_group_without_user() -> None:
    with pytest.raises(SpecError, match="run_as_group requires"):
        _build(sandbox=_sandbox(run_as_group=pb.Int64Value(value=1)))


def test_negative_user() -> None:
    with pytest.raises(SpecError, match="out of range"):
        _build(sandbox=_sandbox(run_as_user=pb.Int64Value(value=-1)))


def test_privileged_pod() -> None:
    spec = _build(sandbox=_sandbox(privileged=True))
    assert "seccomp" not in spec["linux"]
    assert "maskedPaths" not in spec["linux"]


def test_sysctls() -> None:
    sandbox = sandbox_config(sysctls={"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1"})
    assert _build(sandbox=sandbox)["linux"]["sysctl"] == {
        "kernel.shm_rmid_forced": "1",
        "net.ipv4.ip_forward": "1",
    }


def test_net_sysctl_with_host_network() -> None:
    sandbox = sandbox_config(
        sc=pb.LinuxSandboxSecurityContext(namespace_options=pb.NamespaceOption(network=pb.NODE)),
        sysctls={"net.ipv4.ip_forward": "1"},
    )
    with pytest.raises(SpecError, match="network namespace"):
        _build(sandbox=sandbox)


def test_oom_score_restricted() -> None:
    options = RuntimeOptions(restrict_oom_score_adj=True, daemon_oom_score_adj=0)
    assert _build(options=options)["process"]["oomScoreAdj"] == 0


def test_options() -> None:
    options = RuntimeOptions(
        apparmor_enabled=True,
        apparmor_default_profile="stowage-default",
        pids_limit=16,
        cgroup_namespace=True,
    )
    spec = _build(options=options, ctx=pod(cgroup_parent="/test.slice", cgroup_driver="systemd"))
    assert spec["process"]["apparmorProfile"] == "stowage-default"
    assert spec["linux"]["resources"]["pids"] == {"limit": 16}
    assert "cgroup" in _ns(spec)
    assert spec["linux"]["cgroupsPath"] == "test.slice:stowage:sb1"


def test_no_pause_args() -> None:
    with pytest.raises(SpecError, match="no command"):
        _build(args=[])
