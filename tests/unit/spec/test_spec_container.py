from __future__ import annotations

import json
from typing import Any

import pytest

from cri_shim._pb import api_pb2 as pb
from cri_shim.spec import (
    PodContext,
    RuntimeOptions,
    SpecError,
    Ulimit,
    build_container_spec,
    process_args,
    process_env,
)
from cri_shim.spec.security import ALL_CAPABILITIES, DEFAULT_CAPABILITIES, DEFAULT_MASKED_PATHS
from tests.unit.spec._factories import (
    GROUP,
    PASSWD,
    container_config,
    image,
    pod,
    privileged_sandbox,
    sandbox_config,
)

ROOTFS = "/var/lib/stowage/containers/c1/rootfs"


def _build(
    config: Any = None,
    sandbox: Any = None,
    img: Any = None,
    ctx: PodContext | None = None,
    options: RuntimeOptions | None = None,
    **kw: Any,
) -> dict[str, Any]:
    spec = build_container_spec(
        config if config is not None else container_config(),
        sandbox if sandbox is not None else sandbox_config(),
        img if img is not None else image(),
        ctx if ctx is not None else pod(),
        ROOTFS,
        kw.pop("passwd", PASSWD),
        kw.pop("group", GROUP),
        "c1",
        options if options is not None else RuntimeOptions(),
        **kw,
    )
    json.dumps(spec)  # every spec must be writable as config.json as is
    return spec


def _mounts(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["destination"]: m for m in spec["mounts"]}


def _ns(spec: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {n["type"]: n for n in spec["linux"]["namespaces"]}


def _sc(**kw: Any) -> Any:
    return pb.LinuxContainerSecurityContext(**kw)


# ---------------------------------------------------------------------------------------------
# process


@pytest.mark.parametrize(
    ("command", "args", "entrypoint", "cmd", "expected"),
    [
        ([], [], ("/ep",), ("c1", "c2"), ["/ep", "c1", "c2"]),
        ([], [], (), ("sh", "-c", "x"), ["sh", "-c", "x"]),
        ([], ["a1"], ("/ep",), ("c1",), ["/ep", "a1"]),
        ([], ["a1"], (), ("c1",), ["a1"]),
        (["/bin/x"], [], ("/ep",), ("c1",), ["/bin/x"]),
        (["/bin/x"], ["a1", "a2"], ("/ep",), ("c1",), ["/bin/x", "a1", "a2"]),
    ],
)
def test_process_args(
    command: list[str],
    args: list[str],
    entrypoint: tuple[str, ...],
    cmd: tuple[str, ...],
    expected: list[str],
) -> None:
    config = container_config(command=command, args=args)
    assert process_args(config, image(entrypoint=entrypoint, cmd=cmd)) == expected


def test_process_args_none_is_an_error() -> None:
    with pytest.raises(SpecError, match="no command specified"):
        process_args(container_config(), image(cmd=()))


def test_process_env_request_wins_in_place() -> None:
    config = container_config(
        envs=[pb.KeyValue(key="LANG", value=b"en_US.UTF-8"), pb.KeyValue(key="NEW", value=b"1")]
    )
    assert process_env(config, image()) == ["PATH=/usr/bin:/bin", "LANG=en_US.UTF-8", "NEW=1"]


def test_process_env_default_path_and_odd_values() -> None:
    config = container_config(
        envs=[
            pb.KeyValue(key="EMPTY", value=b""),
            pb.KeyValue(key="EQ", value=b"a=b"),
            pb.KeyValue(key="BAD", value=b"\xff"),
            pb.KeyValue(key="", value=b"ignored"),
        ]
    )
    env = process_env(config, image(env=()))
    assert env == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "EMPTY=",
        "EQ=a=b",
        "BAD=\ufffd",
    ]


def test_minimal_spec() -> None:
    spec = _build(config=container_config(command=["/pause"], tty=True))
    assert spec["ociVersion"] == "1.0.2"
    assert spec["root"] == {"path": ROOTFS, "readonly": False}
    assert spec["hostname"] == "web-0"
    process = spec["process"]
    assert process["terminal"] is True
    assert process["args"] == ["/pause"]
    assert process["env"] == ["HOSTNAME=web-0", "PATH=/usr/bin:/bin", "LANG=C"]
    assert process["cwd"] == "/"
    assert process["user"] == {"uid": 0, "gid": 0, "additionalGids": [0, 10]}
    assert set(process["capabilities"]["bounding"]) == set(DEFAULT_CAPABILITIES)
    assert process["noNewPrivileges"] is False
    assert process["oomScoreAdj"] == 0
    assert "apparmorProfile" not in process
    assert "rlimits" not in process
    linux = spec["linux"]
    assert linux["cgroupsPath"] == "/kubepods/besteffort/pod-uid-1/c1"
    assert linux["maskedPaths"] == list(DEFAULT_MASKED_PATHS)
    assert "/proc/sys" in linux["readonlyPaths"]
    assert "seccomp" not in linux  # nothing asked: unconfined, as the CRI says
    assert "sysctl" not in linux
    assert "devices" not in linux
    assert "rootfsPropagation" not in linux
    assert linux["resources"]["devices"][0] == {"allow": False, "access": "rwm"}


def test_annotations() -> None:
    config = container_config(annotations={"io.kubernetes.cri.sandbox-id": "spoofed", "x": "1"})
    annotations = _build(config=config)["annotations"]
    assert annotations == {
        "x": "1",
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.sandbox-id": "sb1",
        "io.kubernetes.cri.container-name": "app",
        "io.kubernetes.cri.image-name": "busybox:1.36",
        "io.kubernetes.cri.sandbox-name": "web-0",
        "io.kubernetes.cri.sandbox-namespace": "default",
        "io.kubernetes.cri.sandbox-uid": "uid-1",
    }


def test_image_name_falls_back_to_image() -> None:
    config = container_config()
    config.image.user_specified_image = ""
    assert _build(config=config)["annotations"]["io.kubernetes.cri.image-name"] == "sha256:abc"


def test_working_dir_precedence() -> None:
    assert _build(img=image(working_dir="/app"))["process"]["cwd"] == "/app"
    config = container_config(working_dir="/override")
    assert _build(config=config, img=image(working_dir="/app"))["process"]["cwd"] == "/override"


def test_relative_working_dir_is_an_error() -> None:
    with pytest.raises(SpecError, match="must be absolute"):
        _build(img=image(working_dir="app"))


def test_env_hostname_can_be_overridden() -> None:
    config = container_config(envs=[pb.KeyValue(key="HOSTNAME", value=b"mine")])
    assert _build(config=config)["process"]["env"][0] == "HOSTNAME=mine"


def test_no_hostname_no_env() -> None:
    spec = _build(ctx=pod(hostname=""))
    assert "hostname" not in spec
    assert not any(e.startswith("HOSTNAME=") for e in spec["process"]["env"])


def test_rlimits_from_options() -> None:
    options = RuntimeOptions(default_ulimits=(Ulimit("RLIMIT_NOFILE", 1024, 4096),))
    spec = _build(options=options)
    assert spec["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}]


# ---------------------------------------------------------------------------------------------
# users


def test_run_as_username() -> None:
    spec = _build(config=container_config(sc=_sc(run_as_username="nobody")))
    assert spec["process"]["user"] == {"uid": 65534, "gid": 65534, "additionalGids": [65534]}


def test_run_as_user_and_group_critest() -> None:
    sc = _sc(run_as_user=pb.Int64Value(value=1001), run_as_group=pb.Int64Value(value=1002))
    spec = _build(config=container_config(sc=sc))
    assert spec["process"]["user"] == {"uid": 1001, "gid": 1002, "additionalGids": [1002]}


def test_run_as_user_zero_is_set_not_absent() -> None:
    sc = _sc(run_as_user=pb.Int64Value(value=0))
    spec = _build(config=container_config(sc=sc), img=image(user="nobody"))
    assert spec["process"]["user"]["uid"] == 0


def test_run_as_group_without_user_is_an_error() -> None:
    with pytest.raises(SpecError, match="run_as_group requires"):
        _build(config=container_config(sc=_sc(run_as_group=pb.Int64Value(value=1002))))


def test_supplemental_groups_strict() -> None:
    sc = _sc(
        run_as_user=pb.Int64Value(value=1000),
        supplemental_groups=[1234],
        supplemental_groups_policy=pb.Strict,
    )
    assert _build(config=container_config(sc=sc))["process"]["user"]["additionalGids"] == [
        1000,
        1234,
    ]


def test_supplemental_groups_merge() -> None:
    sc = _sc(run_as_user=pb.Int64Value(value=1000), supplemental_groups=[1234])
    groups = _build(config=container_config(sc=sc))["process"]["user"]["additionalGids"]
    assert sorted(groups) == [1000, 1234, 50000, 50001]


def test_image_user() -> None:
    spec = _build(img=image(user="default-user"))
    assert spec["process"]["user"]["uid"] == 1000


def test_image_user_missing_from_passwd() -> None:
    with pytest.raises(SpecError, match="unable to find user 'app'"):
        _build(img=image(user="app"))


# ---------------------------------------------------------------------------------------------
# security


def test_no_new_privs_per_request() -> None:
    spec = _build(config=container_config(sc=_sc(no_new_privs=True)))
    assert spec["process"]["noNewPrivileges"] is True


def test_capabilities_add_drop() -> None:
    caps = pb.Capability(add_capabilities=["NET_ADMIN"], drop_capabilities=["NET_RAW"])
    spec = _build(config=container_config(sc=_sc(capabilities=caps)))
    bounding = spec["process"]["capabilities"]["bounding"]
    assert "CAP_NET_ADMIN" in bounding
    assert "CAP_NET_RAW" not in bounding


def test_drop_all_gives_an_empty_bounding_set() -> None:
    caps = pb.Capability(drop_capabilities=["ALL"])
    spec = _build(config=container_config(sc=_sc(capabilities=caps)))
    assert spec["process"]["capabilities"]["bounding"] == []


def test_masked_and_readonly_paths_from_request() -> None:
    sc = _sc(masked_paths=["/bin/ls"], readonly_paths=["/tmp"])
    linux = _build(config=container_config(sc=sc))["linux"]
    assert linux["maskedPaths"] == ["/bin/ls"]
    assert linux["readonlyPaths"] == ["/tmp"]


def test_readonly_rootfs() -> None:
    spec = _build(config=container_config(sc=_sc(readonly_rootfs=True)))
    assert spec["root"]["readonly"] is True
    assert _mounts(spec)["/etc/resolv.conf"]["options"][-1] == "ro"


class TestPrivileged:
    def _spec(self, **kw: Any) -> dict[str, Any]:
        sc = _sc(
            privileged=True,
            seccomp=pb.SecurityProfile(
                profile_type=pb.SecurityProfile.Localhost, localhost_ref="/p"
            ),
            masked_paths=["/x"],
        )
        return _build(config=container_config(sc=sc), sandbox=privileged_sandbox(), **kw)

    def test_everything_is_open(self) -> None:
        spec = self._spec()
        assert spec["process"]["capabilities"]["bounding"] == list(ALL_CAPABILITIES)
        linux = spec["linux"]
        assert "seccomp" not in linux
        assert "maskedPaths" not in linux
        assert "readonlyPaths" not in linux
        assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
        assert "ro" not in _mounts(spec)["/sys"]["options"]

    def test_host_devices_are_added(self) -> None:
        table = {"/dev/null": ("c", 1, 3, 0o20666), "/dev/sda": ("b", 8, 0, 0o60660)}
        spec = self._spec(
            host_devices=lambda: ["/dev/null", "/dev/sda"], device_info=lambda p: table[p]
        )
        assert [(d["path"], d["major"], d["minor"]) for d in spec["linux"]["devices"]] == [
            ("/dev/null", 1, 3),
            ("/dev/sda", 8, 0),
        ]

    def test_needs_a_privileged_pod(self) -> None:
        with pytest.raises(SpecError, match="non-privileged pod"):
            _build(config=container_config(sc=_sc(privileged=True)))


class TestSeccomp:
    def test_runtime_default_field(self) -> None:
        sc = _sc(seccomp=pb.SecurityProfile())
        seccomp = _build(config=container_config(sc=sc))["linux"]["seccomp"]
        assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO"

    def test_runtime_default_follows_capabilities(self) -> None:
        sc = _sc(
            seccomp=pb.SecurityProfile(),
            capabilities=pb.Capability(add_capabilities=["SYS_ADMIN"]),
        )
        seccomp = _build(config=container_config(sc=sc))["linux"]["seccomp"]
        allowed = {n for e in seccomp["syscalls"] if "args" not in e for n in e["names"]}
        assert "mount" in allowed

    def test_deprecated_path(self) -> None:
        sc = _sc(seccomp_profile_path="runtime/default")
        assert "seccomp" in _build(config=container_config(sc=sc))["linux"]

    def test_arch_from_options(self) -> None:
        sc = _sc(seccomp=pb.SecurityProfile())
        spec = _build(config=container_config(sc=sc), options=RuntimeOptions(arch="arm64"))
        assert spec["linux"]["seccomp"]["architectures"][0] == "SCMP_ARCH_AARCH64"

    def test_unconfined(self) -> None:
        sc = _sc(seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.Unconfined))
        assert "seccomp" not in _build(config=container_config(sc=sc))["linux"]

    def test_localhost(self) -> None:
        profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}
        sc = _sc(
            seccomp=pb.SecurityProfile(
                profile_type=pb.SecurityProfile.Localhost, localhost_ref="/tmp/p.json"
            )
        )
        loaded: list[str] = []

        def load(path: str) -> Any:
            loaded.append(path)
            return profile

        spec = _build(config=container_config(sc=sc), localhost_profile=load)
        assert spec["linux"]["seccomp"] == {"defaultAction": "SCMP_ACT_ALLOW"}
        assert loaded == ["/tmp/p.json"]

    def test_localhost_relative_to_root(self) -> None:
        sc = _sc(seccomp_profile_path="localhost/audit.json")
        loaded: list[str] = []

        def load(path: str) -> Any:
            loaded.append(path)
            return {"defaultAction": "SCMP_ACT_LOG"}

        _build(
            config=container_config(sc=sc),
            options=RuntimeOptions(seccomp_profile_root="/etc/stowage/seccomp"),
            localhost_profile=load,
        )
        assert loaded == ["/etc/stowage/seccomp/audit.json"]


class TestAppArmor:
    OPTIONS = RuntimeOptions(apparmor_enabled=True, apparmor_default_profile="stowage-default")

    def test_default_profile(self) -> None:
        spec = _build(options=self.OPTIONS)
        assert spec["process"]["apparmorProfile"] == "stowage-default"

    def test_field_localhost_must_be_loaded(self) -> None:
        sc = _sc(
            apparmor=pb.SecurityProfile(
                profile_type=pb.SecurityProfile.Localhost, localhost_ref="localhost/deny-write"
            ),
            apparmor_profile="localhost/non-existent-profile",
        )
        spec = _build(
            config=container_config(sc=sc),
            options=self.OPTIONS,
            apparmor_loaded=lambda name: name == "deny-write",
        )
        assert spec["process"]["apparmorProfile"] == "deny-write"

    def test_deprecated_unloaded_fails(self) -> None:
        sc = _sc(apparmor_profile="localhost/non-existent-profile")
        with pytest.raises(SpecError, match="not loaded"):
            _build(
                config=container_config(sc=sc),
                options=self.OPTIONS,
                apparmor_loaded=lambda name: False,
            )

    def test_unknown_type(self) -> None:
        sc = _sc(apparmor=pb.SecurityProfile(profile_type=9))
        with pytest.raises(SpecError, match="unknown AppArmor profile type"):
            _build(config=container_config(sc=sc), options=self.OPTIONS)


# ---------------------------------------------------------------------------------------------
# mounts, devices, resources


def test_pod_files_and_kernel_mounts() -> None:
    mounts = _mounts(_build())
    for dest in ("/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup"):
        assert dest in mounts
    assert mounts["/etc/hosts"]["source"] == "/var/lib/stowage/pods/sb1/hosts"
    assert mounts["/etc/resolv.conf"]["source"] == "/var/lib/stowage/pods/sb1/resolv.conf"
    assert mounts["/etc/hostname"]["source"] == "/var/lib/stowage/pods/sb1/hostname"
    assert mounts["/dev/shm"]["source"] == "/run/stowage/pods/sb1/shm"


def test_kubelet_hosts_mount_replaces_ours() -> None:
    config = container_config(
        mounts=[
            pb.Mount(container_path="/etc/hosts", host_path="/var/lib/kubelet/pods/x/etc-hosts")
        ]
    )
    spec = _build(config=config)
    hosts = [m for m in spec["mounts"] if m["destination"] == "/etc/hosts"]
    assert [m["source"] for m in hosts] == ["/var/lib/kubelet/pods/x/etc-hosts"]


def test_bidirectional_mount_makes_root_shared() -> None:
    config = container_config(
        mounts=[
            pb.Mount(
                container_path="/a", host_path="/a", propagation=pb.PROPAGATION_HOST_TO_CONTAINER
            ),
            pb.Mount(container_path="/b", host_path="/b", propagation=pb.PROPAGATION_BIDIRECTIONAL),
        ]
    )
    spec = _build(config=config)
    assert spec["linux"]["rootfsPropagation"] == "rshared"
    assert _mounts(spec)["/b"]["options"] == ["rbind", "rshared", "rw"]


def test_symlinked_host_path_resolved() -> None:
    config = container_config(mounts=[pb.Mount(container_path="/v", host_path="/tmp/link")])
    spec = _build(config=config, resolve_host_path=lambda p: "/tmp/real")
    assert _mounts(spec)["/v"]["source"] == "/tmp/real"


def test_devices() -> None:
    config = container_config(
        devices=[pb.Device(host_path="/dev/fuse", container_path="/dev/fuse", permissions="rw")]
    )
    spec = _build(config=config, device_info=lambda p: ("c", 10, 229, 0o20666))
    assert spec["linux"]["devices"][0]["path"] == "/dev/fuse"
    assert spec["linux"]["resources"]["devices"][-1] == {
        "allow": True,
        "type": "c",
        "major": 10,
        "minor": 229,
        "access": "rw",
    }


def test_resources_and_oom_score() -> None:
    resources = pb.LinuxContainerResources(
        cpu_shares=256, memory_limit_in_bytes=1 << 30, oom_score_adj=-997
    )
    spec = _build(
        config=container_config(resources=resources), options=RuntimeOptions(pids_limit=512)
    )
    res = spec["linux"]["resources"]
    assert res["cpu"] == {"shares": 256}
    assert res["memory"] == {"limit": 1 << 30}
    assert res["pids"] == {"limit": 512}
    assert spec["process"]["oomScoreAdj"] == -997


def test_oom_score_restricted() -> None:
    resources = pb.LinuxContainerResources(oom_score_adj=-997)
    options = RuntimeOptions(restrict_oom_score_adj=True, daemon_oom_score_adj=-500)
    spec = _build(config=container_config(resources=resources), options=options)
    assert spec["process"]["oomScoreAdj"] == -500


def test_systemd_cgroup_path() -> None:
    spec = _build(ctx=pod(cgroup_parent="/test.slice", cgroup_driver="systemd"))
    assert spec["linux"]["cgroupsPath"] == "test.slice:stowage:c1"


# ---------------------------------------------------------------------------------------------
# namespaces


def test_pod_namespaces_are_joined() -> None:
    ns = _ns(_build())
    assert ns["mount"] == {"type": "mount"}
    assert ns["network"] == {"type": "network", "path": "/run/netns/sb1"}
    assert ns["ipc"] == {"type": "ipc", "path": "/run/stowage/ns/sb1/ipc"}
    assert ns["uts"] == {"type": "uts", "path": "/run/stowage/ns/sb1/uts"}
    assert ns["pid"] == {"type": "pid"}  # container-level: its own
    assert "user" not in ns
    assert "cgroup" not in ns


def test_host_namespaces_are_left_out() -> None:
    ctx = pod(netns_path=None, ipc_ns_path=None, uts_ns_path=None, host_pid=True, shm_path=None)
    spec = _build(ctx=ctx)
    assert set(_ns(spec)) == {"mount"}
    assert "hostname" not in spec
    assert _mounts(spec)["/dev/shm"]["source"] == "/dev/shm"


def _pid_config(mode: int) -> Any:
    return container_config(sc=_sc(namespace_options=pb.NamespaceOption(pid=mode)))


def test_pod_pid_namespace() -> None:
    ctx = pod(pid_ns_path="/proc/42/ns/pid")
    assert _ns(_build(config=_pid_config(pb.POD), ctx=ctx))["pid"]["path"] == "/proc/42/ns/pid"


def test_container_pid_namespace_even_when_pod_has_one() -> None:
    ctx = pod(pid_ns_path="/proc/42/ns/pid")
    assert _ns(_build(config=_pid_config(pb.CONTAINER), ctx=ctx))["pid"] == {"type": "pid"}


def test_pid_mode_from_sandbox_when_container_has_none() -> None:
    sandbox = sandbox_config(
        sc=pb.LinuxSandboxSecurityContext(namespace_options=pb.NamespaceOption(pid=pb.NODE))
    )
    assert "pid" not in _ns(_build(sandbox=sandbox))


def test_target_pid_namespace() -> None:
    spec = _build(config=_pid_config(pb.TARGET), target_pid_ns_path="/proc/77/ns/pid")
    assert _ns(spec)["pid"]["path"] == "/proc/77/ns/pid"
    with pytest.raises(SpecError, match="TARGET"):
        _build(config=_pid_config(pb.TARGET))


def test_cgroup_namespace_option() -> None:
    options = RuntimeOptions(cgroup_namespace=True)
    assert "cgroup" in _ns(_build(options=options))
    privileged = container_config(sc=_sc(privileged=True))
    assert "cgroup" not in _ns(
        _build(config=privileged, sandbox=privileged_sandbox(), options=options)
    )


def _userns_sandbox(mode: int, uids: list[Any], gids: list[Any] | None = None) -> Any:
    userns = pb.UserNamespace(mode=mode, uids=uids, gids=uids if gids is None else gids)
    return sandbox_config(
        sc=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(userns_options=userns)
        )
    )


MAPPING = pb.IDMapping(container_id=0, host_id=1000, length=100000)


def test_user_namespace_joined_with_mappings() -> None:
    spec = _build(
        sandbox=_userns_sandbox(pb.POD, [MAPPING]), ctx=pod(user_ns_path="/proc/9/ns/user")
    )
    assert _ns(spec)["user"] == {"type": "user", "path": "/proc/9/ns/user"}
    expected = [{"containerID": 0, "hostID": 1000, "size": 100000}]
    assert spec["linux"]["uidMappings"] == expected
    assert spec["linux"]["gidMappings"] == expected


def test_user_namespace_created_without_path() -> None:
    spec = _build(sandbox=_userns_sandbox(pb.POD, [MAPPING]))
    assert _ns(spec)["user"] == {"type": "user"}


def test_user_namespace_node_mode_is_the_host() -> None:
    spec = _build(sandbox=_userns_sandbox(pb.NODE, []))
    assert "user" not in _ns(spec)
    assert "uidMappings" not in spec["linux"]


@pytest.mark.parametrize(
    ("mode", "uids", "message"),
    [
        (
            pb.POD,
            [MAPPING, pb.IDMapping(container_id=0, host_id=2000, length=100000)],
            "exactly one",
        ),
        (pb.POD, [pb.IDMapping(container_id=1, host_id=1000, length=100000)], "container id 0"),
        (pb.POD, [pb.IDMapping(container_id=0, host_id=1000, length=0)], "length 0"),
        (pb.POD, [], "exactly one uid"),
        (pb.CONTAINER, [], "POD or NODE"),
        (pb.TARGET, [], "POD or NODE"),
        (pb.NODE, [MAPPING], "NODE takes no id mappings"),
    ],
)
def test_user_namespace_invalid(mode: int, uids: list[Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        _build(sandbox=_userns_sandbox(mode, uids))


# ---------------------------------------------------------------------------------------------
# sysctls


def test_sysctls() -> None:
    sandbox = sandbox_config(
        sysctls={
            "kernel.shm_rmid_forced": "1",
            "fs.mqueue.msg_max": "100",
            "net/ipv4/ip_forward": "1",
        }
    )
    assert _build(sandbox=sandbox)["linux"]["sysctl"] == {
        "fs.mqueue.msg_max": "100",
        "kernel.shm_rmid_forced": "1",
        "net.ipv4.ip_forward": "1",
    }


def test_sysctls_not_applied_when_infra_did() -> None:
    sandbox = sandbox_config(sysctls={"kernel.shm_rmid_forced": "1"})
    assert "sysctl" not in _build(sandbox=sandbox, ctx=pod(apply_sysctls=False))["linux"]


@pytest.mark.parametrize(
    ("sysctl", "ctx_over", "message"),
    [
        ("net.ipv4.ip_forward", {"netns_path": None}, "network namespace"),
        ("kernel.shm_rmid_forced", {"ipc_ns_path": None}, "IPC namespace"),
        ("fs.mqueue.msg_max", {"ipc_ns_path": None}, "IPC namespace"),
        ("kernel.domainname", {"uts_ns_path": None}, "UTS namespace"),
        ("vm.swappiness", {}, "not namespaced"),
        ("kernel.pid_max", {}, "not namespaced"),
    ],
)
def test_sysctls_that_would_touch_the_host(
    sysctl: str, ctx_over: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        _build(sandbox=sandbox_config(sysctls={sysctl: "1"}), ctx=pod(**ctx_over))
