from __future__ import annotations

import pytest

from cri_shim.spec import SpecError
from cri_shim.spec import security as s


def _caps(add: list[str] | None = None, drop: list[str] | None = None, **kw: object) -> list[str]:
    ambient = kw.pop("ambient", [])
    assert isinstance(ambient, list)
    result = s.capabilities(add or [], drop or [], ambient, privileged=bool(kw.get("privileged")))
    assert result["bounding"] == result["effective"] == result["permitted"]
    return result["bounding"]


def test_all_capabilities_are_the_41_linux_defines() -> None:
    assert len(s.ALL_CAPABILITIES) == 41
    assert len(set(s.ALL_CAPABILITIES)) == 41
    assert set(s.DEFAULT_CAPABILITIES) <= set(s.ALL_CAPABILITIES)


def test_default_set() -> None:
    assert set(_caps()) == set(s.DEFAULT_CAPABILITIES)
    assert len(s.DEFAULT_CAPABILITIES) == 14


def test_default_has_no_inheritable_or_ambient() -> None:
    result = s.capabilities([], [], [], privileged=False)
    assert "inheritable" not in result
    assert "ambient" not in result


@pytest.mark.parametrize("name", ["NET_ADMIN", "net_admin", "CAP_NET_ADMIN", " cap_net_admin "])
def test_add_accepts_every_spelling(name: str) -> None:
    assert "CAP_NET_ADMIN" in _caps(add=[name])


def test_drop_one() -> None:
    caps = _caps(drop=["NET_RAW"])
    assert "CAP_NET_RAW" not in caps
    assert "CAP_CHOWN" in caps


def test_add_all() -> None:
    assert _caps(add=["ALL"]) == list(s.ALL_CAPABILITIES)


def test_drop_all() -> None:
    assert _caps(drop=["ALL"]) == []


def test_drop_all_then_add_one() -> None:
    assert _caps(add=["NET_BIND_SERVICE"], drop=["ALL"]) == ["CAP_NET_BIND_SERVICE"]


def test_add_all_then_drop_one() -> None:
    caps = _caps(add=["ALL"], drop=["SYS_ADMIN"])
    assert "CAP_SYS_ADMIN" not in caps
    assert len(caps) == 40


def test_drop_wins_over_add_of_same() -> None:
    assert "CAP_NET_ADMIN" not in _caps(add=["NET_ADMIN"], drop=["NET_ADMIN"])


def test_caps_are_in_kernel_order() -> None:
    caps = _caps(add=["SYS_ADMIN", "NET_ADMIN"])
    assert caps == sorted(caps, key=s.ALL_CAPABILITIES.index)


def test_unknown_capability_is_an_error() -> None:
    with pytest.raises(SpecError, match="unknown capability 'NET_FOO'"):
        _caps(add=["NET_FOO"])
    with pytest.raises(SpecError, match="unknown capability"):
        _caps(drop=["CAP_"])


def test_privileged_gets_all_regardless_of_drop() -> None:
    assert _caps(drop=["ALL"], privileged=True) == list(s.ALL_CAPABILITIES)


def test_ambient_capabilities_become_inheritable_and_bounding() -> None:
    result = s.capabilities([], ["ALL"], ["NET_BIND_SERVICE"], privileged=False)
    assert result["ambient"] == ["CAP_NET_BIND_SERVICE"]
    assert result["inheritable"] == ["CAP_NET_BIND_SERVICE"]
    assert result["bounding"] == ["CAP_NET_BIND_SERVICE"]


def test_masked_and_readonly_defaults() -> None:
    masked, readonly = s.masked_and_readonly_paths([], [], privileged=False)
    assert masked == list(s.DEFAULT_MASKED_PATHS)
    assert readonly == list(s.DEFAULT_READONLY_PATHS)
    assert "/proc/kcore" in masked
    assert "/proc/interrupts" in masked
    assert "/sys/devices/virtual/powercap" in masked
    assert "/proc/sys" in readonly


def test_masked_and_readonly_from_request_replace_defaults() -> None:
    masked, readonly = s.masked_and_readonly_paths(["/bin/ls"], ["/tmp"], privileged=False)
    assert (masked, readonly) == (["/bin/ls"], ["/tmp"])


def test_privileged_masks_nothing() -> None:
    assert s.masked_and_readonly_paths(["/x"], ["/y"], privileged=True) == ([], [])


class TestAppArmor:
    def _profile(self, kind: str | None, ref: str = "", **kw: object) -> str | None:
        args: dict[str, object] = {
            "privileged": False,
            "enabled": True,
            "default_profile": "stowage-default",
            "is_loaded": lambda name: name in {"deny-write", "stowage-default"},
        }
        args.update(kw)
        return s.apparmor_profile(kind, ref, **args)  # type: ignore[arg-type]

    def test_runtime_default(self) -> None:
        assert self._profile("RuntimeDefault") == "stowage-default"

    def test_runtime_default_without_a_default_profile(self) -> None:
        assert self._profile("RuntimeDefault", default_profile="") is None

    def test_runtime_default_when_disabled(self) -> None:
        assert self._profile("RuntimeDefault", enabled=False) is None

    def test_unconfined(self) -> None:
        assert self._profile("Unconfined") is None

    def test_localhost_strips_prefix(self) -> None:
        assert self._profile("Localhost", "localhost/deny-write") == "deny-write"
        assert self._profile("Localhost", "deny-write") == "deny-write"

    def test_localhost_not_loaded(self) -> None:
        with pytest.raises(SpecError, match="'non-existent-profile' is not loaded"):
            self._profile("Localhost", "localhost/non-existent-profile")

    def test_localhost_when_disabled(self) -> None:
        with pytest.raises(SpecError, match="AppArmor is not enabled"):
            self._profile("Localhost", "localhost/deny-write", enabled=False)

    def test_localhost_without_name(self) -> None:
        with pytest.raises(SpecError, match="without a profile name"):
            self._profile("Localhost", "localhost/")

    def test_privileged_is_never_confined(self) -> None:
        assert self._profile("Localhost", "localhost/missing", privileged=True) is None

    def test_unknown_type(self) -> None:
        with pytest.raises(SpecError, match="unknown AppArmor"):
            self._profile("Bogus")

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("", ("RuntimeDefault", "")),
            ("runtime/default", ("RuntimeDefault", "")),
            ("unconfined", ("Unconfined", "")),
            ("localhost/p", ("Localhost", "localhost/p")),
        ],
    )
    def test_deprecated_field(self, value: str, expected: tuple[str, str]) -> None:
        assert s.deprecated_apparmor(value) == expected

    def test_deprecated_field_invalid(self) -> None:
        with pytest.raises(SpecError, match="invalid apparmor_profile"):
            s.deprecated_apparmor("docker-default")


class TestDevices:
    @staticmethod
    def _info(path: str) -> s.DeviceInfo:
        table = {
            "/dev/fuse": ("c", 10, 229, 0o20666),
            "/dev/loop0": ("b", 7, 0, 0o60660),
            "/etc/passwd": ("-", 0, 0, 0o100644),
        }
        return table[path]

    def test_char_and_block_devices(self) -> None:
        nodes, rules = s.devices(
            [("/dev/fuse", "/dev/fuse", ""), ("/dev/loop0", "/dev/xvda", "rw")], self._info
        )
        assert nodes == [
            {
                "path": "/dev/fuse",
                "type": "c",
                "major": 10,
                "minor": 229,
                "fileMode": 0o666,
                "uid": 0,
                "gid": 0,
            },
            {
                "path": "/dev/xvda",
                "type": "b",
                "major": 7,
                "minor": 0,
                "fileMode": 0o660,
                "uid": 0,
                "gid": 0,
            },
        ]
        assert rules == [
            {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
            {"allow": True, "type": "b", "major": 7, "minor": 0, "access": "rw"},
        ]

    def test_permissions_are_normalised(self) -> None:
        _, rules = s.devices([("/dev/fuse", "/dev/fuse", "mwr")], self._info)
        assert rules[0]["access"] == "rwm"

    def test_invalid_permissions(self) -> None:
        with pytest.raises(SpecError, match="invalid device permissions"):
            s.devices([("/dev/fuse", "/dev/fuse", "rx")], self._info)

    def test_not_a_device(self) -> None:
        with pytest.raises(SpecError, match="not a character or block device"):
            s.devices([("/etc/passwd", "/dev/p", "r")], self._info)

    def test_relative_container_path(self) -> None:
        with pytest.raises(SpecError, match="absolute container path"):
            s.devices([("/dev/fuse", "dev/fuse", "r")], self._info)

    def test_no_lookup_available(self) -> None:
        with pytest.raises(SpecError, match="device lookup is unavailable"):
            s.devices([("/dev/fuse", "/dev/fuse", "r")], None)

    def test_no_devices_needs_no_lookup(self) -> None:
        assert s.devices([], None) == ([], [])

    def test_cgroup_rules_deny_first(self) -> None:
        extra = [{"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"}]
        rules = s.device_rules(extra, privileged=False)
        assert rules[0] == {"allow": False, "access": "rwm"}
        assert rules[-1] == extra[0]
        null = {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
        assert null in rules
        assert {"allow": True, "type": "c", "major": 136, "access": "rwm"} in rules

    def test_privileged_allows_all(self) -> None:
        assert s.device_rules([], privileged=True) == [{"allow": True, "access": "rwm"}]
