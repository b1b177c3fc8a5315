from __future__ import annotations

import json
from typing import Any

import pytest

from cri_shim.spec import SpecError
from cri_shim.spec import seccomp as sec
from cri_shim.spec.security import ALL_CAPABILITIES, DEFAULT_CAPABILITIES

# Calls a default container must not reach: kernel code loading, host-global state, the
# keyring, namespace and mount manipulation, tracing other processes.


def _words(text: str) -> list[str]:
    return text.split()


NEVER_BY_DEFAULT = _words(
    "add_key bpf clock_settime delete_module finit_module init_module io_uring_setup kexec_load "
    "kexec_file_load keyctl mount move_mount open_by_handle_at perf_event_open pivot_root ptrace "
    "process_vm_readv quotactl reboot request_key setns settimeofday swapon syslog umount2 "
    "unshare userfaultfd sethostname fsopen open_tree acct iopl ioperm vhangup mbind"
)

ESSENTIAL = _words(
    "read write openat close execve exit_group futex mmap mprotect brk rt_sigaction rt_sigreturn "
    "clone wait4 getpid socket connect epoll_wait pipe2 dup3 fcntl fstat newfstatat statx "
    "getdents64 prctl setuid setgid setgroups capset set_tid_address set_robust_list rseq "
    "prlimit64 getrandom chdir fchown"
)


def _entries(profile: dict[str, Any]) -> list[dict[str, Any]]:
    entries = profile["syscalls"]
    assert isinstance(entries, list)
    return entries


def _allowed_unconditionally(profile: dict[str, Any]) -> set[str]:
    return {
        n
        for e in _entries(profile)
        if e["action"] == "SCMP_ACT_ALLOW" and "args" not in e
        for n in e["names"]
    }


def _restricted(profile: dict[str, Any]) -> set[str]:
    return {n for e in _entries(profile) if "args" in e for n in e["names"]}


def _errno(profile: dict[str, Any]) -> dict[str, int]:
    return {
        n: e["errnoRet"]
        for e in _entries(profile)
        if e["action"] == "SCMP_ACT_ERRNO"
        for n in e["names"]
    }


@pytest.fixture
def default() -> dict[str, Any]:
    return sec.render_default(DEFAULT_CAPABILITIES, "amd64")


def test_shape(default: dict[str, Any]) -> None:
    assert default["defaultAction"] == "SCMP_ACT_ERRNO"
    assert default["defaultErrnoRet"] == 1
    assert default["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    json.dumps(default)  # must be JSON-able as is


def test_size_is_a_real_allow_list(default: dict[str, Any]) -> None:
    assert len(_allowed_unconditionally(default)) > 330


@pytest.mark.parametrize("name", ESSENTIAL)
def test_essentials_allowed(default: dict[str, Any], name: str) -> None:
    assert name in _allowed_unconditionally(default) | _restricted(default)


@pytest.mark.parametrize("name", NEVER_BY_DEFAULT)
def test_dangerous_calls_denied_by_default(default: dict[str, Any], name: str) -> None:
    assert name not in _allowed_unconditionally(default)


def test_clone_restricted_to_no_new_namespaces(default: dict[str, Any]) -> None:
    (clone,) = [e for e in _entries(default) if "clone" in e["names"]]
    assert clone["args"] == [
        {"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    ]
    (unshare,) = [e for e in _entries(default) if "unshare" in e["names"]]
    assert unshare["args"][0]["value"] == 0x7E020080


def test_clone3_answers_enosys_so_libc_falls_back(default: dict[str, Any]) -> None:
    assert _errno(default) == {"clone3": 38}


def test_personality_only_known_values(default: dict[str, Any]) -> None:
    values = sorted(
        e["args"][0]["value"] for e in _entries(default) if e["names"] == ["personality"]
    )
    assert values == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert "personality" not in _allowed_unconditionally(default)


def test_chroot_follows_sys_chroot(default: dict[str, Any]) -> None:
    assert "chroot" in _allowed_unconditionally(default)
    without = sec.render_default(
        [c for c in DEFAULT_CAPABILITIES if c != "CAP_SYS_CHROOT"], "amd64"
    )
    assert "chroot" not in _allowed_unconditionally(without)


def test_sys_admin_unlocks_namespaces_and_mounts() -> None:
    profile = sec.render_default([*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"], "amd64")
    allowed = _allowed_unconditionally(profile)
    assert {"mount", "umount2", "unshare", "setns", "clone", "clone3", "sethostname"} <= allowed
    assert "clone" not in _restricted(profile)
    assert "clone3" not in _errno(profile)


@pytest.mark.parametrize(
    ("cap", "names"),
    [
        ("CAP_SYS_PTRACE", {"ptrace", "process_vm_readv", "process_vm_writev", "kcmp"}),
        ("CAP_SYS_MODULE", {"init_module", "finit_module", "delete_module"}),
        ("CAP_SYS_TIME", {"settimeofday", "clock_settime", "clock_adjtime"}),
        ("CAP_SYS_BOOT", {"reboot"}),
        ("CAP_SYS_PACCT", {"acct"}),
        ("CAP_SYSLOG", {"syslog"}),
        ("CAP_SYS_NICE", {"mbind", "set_mempolicy"}),
        ("CAP_DAC_READ_SEARCH", {"open_by_handle_at"}),
        ("CAP_BPF", {"bpf"}),
        ("CAP_PERFMON", {"perf_event_open"}),
        ("CAP_SYS_RAWIO", {"iopl", "ioperm"}),
        ("CAP_SYS_TTY_CONFIG", {"vhangup"}),
    ],
)
def test_capability_gated(cap: str, names: set[str]) -> None:
    profile = sec.render_default([*DEFAULT_CAPABILITIES, cap], "amd64")
    assert names <= _allowed_unconditionally(profile)


def test_no_name_twice_in_one_entry_and_no_empty_entry() -> None:
    profile = sec.render_default(ALL_CAPABILITIES, "amd64")
    for entry in _entries(profile):
        assert entry["names"]
        assert len(entry["names"]) == len(set(entry["names"]))


def test_unconditional_allow_is_one_entry(default: dict[str, Any]) -> None:
    plain = [e for e in _entries(default) if e["action"] == "SCMP_ACT_ALLOW" and "args" not in e]
    assert len(plain) == 1


def test_arm64() -> None:
    profile = sec.render_default(DEFAULT_CAPABILITIES, "aarch64")
    assert profile["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    allowed = _allowed_unconditionally(profile)
    assert {"set_tls", "cacheflush", "arm_fadvise64_64"} <= allowed
    assert "arch_prctl" not in allowed
    rawio = sec.render_default([*DEFAULT_CAPABILITIES, "CAP_SYS_RAWIO"], "arm64")
    assert "iopl" not in _allowed_unconditionally(rawio)


def test_amd64_has_arch_prctl(default: dict[str, Any]) -> None:
    allowed = _allowed_unconditionally(default)
    assert "arch_prctl" in allowed
    assert "set_tls" not in allowed


def test_unknown_arch() -> None:
    with pytest.raises(SpecError, match="architecture 's390x'"):
        sec.render_default([], "s390x")


class TestSelect:
    ROOT = "/var/lib/kubelet/seccomp"

    def _select(self, *args: Any) -> tuple[str, str]:
        return sec.select_profile(*args, profile_root=self.ROOT)

    def test_field_runtime_default(self) -> None:
        assert self._select(True, 0, "", "") == ("RuntimeDefault", "")

    def test_field_unconfined(self) -> None:
        assert self._select(True, 1, "", "runtime/default") == ("Unconfined", "")

    def test_field_wins_over_deprecated(self) -> None:
        assert self._select(True, 2, "/p/x.json", "unconfined") == ("Localhost", "/p/x.json")

    def test_field_localhost_relative_is_under_root(self) -> None:
        assert self._select(True, 2, "profiles/x.json", "") == (
            "Localhost",
            "/var/lib/kubelet/seccomp/profiles/x.json",
        )

    def test_field_localhost_with_prefix(self) -> None:
        assert self._select(True, 2, "localhost//tmp/a.json", "") == ("Localhost", "/tmp/a.json")

    def test_field_localhost_empty(self) -> None:
        with pytest.raises(SpecError, match="without a path"):
            self._select(True, 2, "", "")

    def test_field_unknown_type(self) -> None:
        with pytest.raises(SpecError, match="unknown seccomp profile type 7"):
            self._select(True, 7, "", "")

    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("", ("Unconfined", "")),
            ("unconfined", ("Unconfined", "")),
            ("runtime/default", ("RuntimeDefault", "")),
            ("docker/default", ("RuntimeDefault", "")),
            ("localhost//etc/p.json", ("Localhost", "/etc/p.json")),
            ("localhost/p.json", ("Localhost", "/var/lib/kubelet/seccomp/p.json")),
        ],
    )
    def test_deprecated(self, path: str, expected: tuple[str, str]) -> None:
        assert self._select(False, 0, "", path) == expected

    def test_deprecated_invalid(self) -> None:
        with pytest.raises(SpecError, match="invalid seccomp_profile_path"):
            self._select(False, 0, "", "/etc/p.json")


CRITEST_BLOCK_CHMOD = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO"}],
}


class TestLocalhost:
    def test_critest_profile(self) -> None:
        assert sec.localhost_to_oci(CRITEST_BLOCK_CHMOD, [], "amd64") == CRITEST_BLOCK_CHMOD

    def test_passthrough_fields(self) -> None:
        profile = {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "comment": "dropped",
            "syscalls": [
                {
                    "names": ["personality"],
                    "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}],
                    "errnoRet": None,
                    "comment": "x",
                }
            ],
        }
        out = sec.localhost_to_oci(profile, [], "amd64")
        assert out == {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                {
                    "names": ["personality"],
                    "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}],
                }
            ],
        }

    def test_docker_dialect(self) -> None:
        profile = {
            "defaultAction": "SCMP_ACT_ERRNO",
            "archMap": [
                {
                    "architecture": "SCMP_ARCH_AARCH64",
                    "subArchitectures": ["SCMP_ARCH_ARM"],
                },
                {
                    "architecture": "SCMP_ARCH_X86_64",
                    "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                },
            ],
            "syscalls": [
                {"name": "read", "action": "SCMP_ACT_ALLOW"},
                {
                    "names": ["mount"],
                    "action": "SCMP_ACT_ALLOW",
                    "includes": {"caps": ["CAP_SYS_ADMIN"]},
                },
                {
                    "names": ["ptrace"],
                    "action": "SCMP_ACT_ALLOW",
                    "includes": {"caps": ["SYS_PTRACE"]},
                },
                {
                    "names": ["arch_prctl"],
                    "action": "SCMP_ACT_ALLOW",
                    "includes": {"arches": ["amd64"]},
                },
                {
                    "names": ["set_tls"],
                    "action": "SCMP_ACT_ALLOW",
                    "includes": {"arches": ["arm64"]},
                },
                {
                    "names": ["clone"],
                    "action": "SCMP_ACT_ALLOW",
                    "excludes": {"caps": ["CAP_SYS_ADMIN"]},
                },
                {
                    "names": ["chmod"],
                    "action": "SCMP_ACT_ALLOW",
                    "excludes": {"arches": ["x86_64"]},
                },
            ],
        }
        out = sec.localhost_to_oci(profile, ["CAP_SYS_ADMIN"], "x86_64")
        assert out["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        assert [e["names"] for e in out["syscalls"]] == [["read"], ["mount"], ["arch_prctl"]]

    def test_archmap_without_host_arch(self) -> None:
        profile = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_PPC"}],
        }
        assert "architectures" not in sec.localhost_to_oci(profile, [], "amd64")

    @pytest.mark.parametrize(
        ("profile", "message"),
        [
            ([], "must be a JSON object"),
            ({}, "no defaultAction"),
            ({"defaultAction": ""}, "no defaultAction"),
            ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}}, "must be a list"),
            ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": ["read"]}, "must be an object"),
            (
                {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]},
                "non-empty list of names",
            ),
            (
                {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]},
                "no action",
            ),
            (
                {"defaultAction": "SCMP_ACT_ALLOW", "architectures": "SCMP_ARCH_X86_64"},
                "architectures must be a list",
            ),
            ({"defaultAction": "SCMP_ACT_ALLOW", "archMap": {}}, "archMap must be a list"),
            (
                {
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["read"], "action": "x", "includes": ["caps"]}],
                },
                "includes/excludes must be objects",
            ),
        ],
    )
    def test_invalid(self, profile: Any, message: str) -> None:
        with pytest.raises(SpecError, match=message):
            sec.localhost_to_oci(profile, [], "amd64")


class TestSeccompFor:
    def test_privileged_has_none(self) -> None:
        assert (
            sec.seccomp_for("Localhost", "/x", caps=[], arch="amd64", privileged=True, load=None)
            is None
        )

    def test_unconfined_has_none(self) -> None:
        assert (
            sec.seccomp_for("Unconfined", "", caps=[], arch="amd64", privileged=False, load=None)
            is None
        )

    def test_runtime_default(self) -> None:
        out = sec.seccomp_for(
            "RuntimeDefault", "", caps=[], arch="amd64", privileged=False, load=None
        )
        assert out is not None
        assert out["defaultAction"] == "SCMP_ACT_ERRNO"

    def test_localhost_loaded_through_callback(self) -> None:
        seen: list[str] = []

        def load(path: str) -> Any:
            seen.append(path)
            return CRITEST_BLOCK_CHMOD

        out = sec.seccomp_for(
            "Localhost", "/p.json", caps=[], arch="amd64", privileged=False, load=load
        )
        assert out == CRITEST_BLOCK_CHMOD
        assert seen == ["/p.json"]

    def test_localhost_without_loader(self) -> None:
        with pytest.raises(SpecError, match="cannot be loaded"):
            sec.seccomp_for("Localhost", "/p", caps=[], arch="amd64", privileged=False, load=None)

    @pytest.mark.parametrize("exc", [FileNotFoundError("no such file"), ValueError("bad json")])
    def test_localhost_load_failure_is_a_spec_error(self, exc: Exception) -> None:
        def load(path: str) -> Any:
            raise exc

        with pytest.raises(SpecError, match="cannot load seccomp profile '/p'"):
            sec.seccomp_for("Localhost", "/p", caps=[], arch="amd64", privileged=False, load=load)
