from __future__ import annotations

from typing import Any

import pytest

from cri_shim._pb import api_pb2 as pb
from cri_shim.spec import SpecError, cgroup_parent_path
from cri_shim.spec import resources as r


class TestCgroupPath:
    @pytest.mark.parametrize(
        ("parent", "expected"),
        [
            ("/test.slice", "test.slice:stowage:c1"),
            ("kubepods-besteffort-pod1.slice", "kubepods-besteffort-pod1.slice:stowage:c1"),
            (
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2.slice/",
                "kubepods-burstable-pod2.slice:stowage:c1",
            ),
            ("", ":stowage:c1"),
        ],
    )
    def test_systemd(self, parent: str, expected: str) -> None:
        assert cgroup_parent_path(parent, "systemd", "c1") == expected

    def test_systemd_rejects_non_slice(self) -> None:
        with pytest.raises(SpecError, match="not a systemd slice"):
            cgroup_parent_path("/kubepods/besteffort", "systemd", "c1")

    @pytest.mark.parametrize(
        ("parent", "expected"),
        [
            ("/kubepods/besteffort/pod1", "/kubepods/besteffort/pod1/c1"),
            ("kubepods/pod1/", "/kubepods/pod1/c1"),
            ("", "/c1"),
            ("/", "/c1"),
        ],
    )
    def test_cgroupfs(self, parent: str, expected: str) -> None:
        assert cgroup_parent_path(parent, "cgroupfs", "c1") == expected

    def test_cgroupfs_rejects_systemd_form(self) -> None:
        with pytest.raises(SpecError, match="looks like a systemd path"):
            cgroup_parent_path("system.slice:stowage:x", "cgroupfs", "c1")

    def test_unknown_driver(self) -> None:
        with pytest.raises(SpecError, match="unknown cgroup driver"):
            cgroup_parent_path("/x", "openrc", "c1")

    @pytest.mark.parametrize("name", ["", "a/b", "a:b"])
    def test_bad_scope_name(self, name: str) -> None:
        with pytest.raises(SpecError, match="invalid cgroup scope"):
            cgroup_parent_path("/x", "cgroupfs", name)


def _res(**kw: Any) -> Any:
    return pb.LinuxContainerResources(**kw)


def test_nothing_set_means_nothing() -> None:
    assert r.linux_resources(_res()) == {}
    assert r.linux_resources(None) == {}


def test_pids_limit_from_options() -> None:
    assert r.linux_resources(None, pids_limit=1024) == {"pids": {"limit": 1024}}
    assert r.linux_resources(None, pids_limit=-1) == {}


def test_full() -> None:
    out = r.linux_resources(
        _res(
            cpu_period=100000,
            cpu_quota=50000,
            cpu_shares=512,
            memory_limit_in_bytes=64 << 20,
            memory_swap_limit_in_bytes=128 << 20,
            cpuset_cpus="0-1, 3",
            cpuset_mems="0",
            hugepage_limits=[pb.HugepageLimit(page_size="2MB", limit=4 << 21)],
            unified={"memory.high": "50000000", "cpu.weight": "20"},
        )
    )
    assert out == {
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1,3", "mems": "0"},
        "memory": {"limit": 64 << 20, "swap": 128 << 20},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 21}],
        "unified": {"cpu.weight": "20", "memory.high": "50000000"},
    }


def test_kubelet_hugepage_limits_without_hugetlb_controller() -> None:
    # What a kubelet sends on a host with huge pages but no hugetlb controller (cgroup v1
    # without the hierarchy mounted): a 0 limit per page size, which runc would refuse.
    res = _res(
        memory_limit_in_bytes=64 << 20,
        hugepage_limits=[
            pb.HugepageLimit(page_size="1GB", limit=0),
            pb.HugepageLimit(page_size="2MB", limit=0),
        ],
    )
    assert r.linux_resources(res, hugetlb=False) == {"memory": {"limit": 64 << 20}}
    assert r.linux_resources(res)["hugepageLimits"] == [
        {"pageSize": "1GB", "limit": 0},
        {"pageSize": "2MB", "limit": 0},
    ]


def test_critest_oom_container() -> None:
    out = r.linux_resources(
        _res(memory_limit_in_bytes=15 << 20, memory_swap_limit_in_bytes=15 << 20)
    )
    assert out == {"memory": {"limit": 15 << 20, "swap": 15 << 20}}


def test_unlimited_quota_and_swap() -> None:
    out = r.linux_resources(_res(cpu_quota=-1, memory_swap_limit_in_bytes=-1))
    assert out == {"cpu": {"quota": -1}, "memory": {"swap": -1}}


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"cpu_shares": -2}, "cpu_shares"),
        ({"cpu_quota": -5}, "cpu_quota"),
        ({"cpu_period": -1}, "cpu_period"),
        ({"memory_limit_in_bytes": -1}, "memory_limit_in_bytes"),
        ({"memory_limit_in_bytes": 100, "memory_swap_limit_in_bytes": 50}, "at least"),
        ({"memory_swap_limit_in_bytes": -3}, "must be -1"),
        ({"cpuset_cpus": "0-"}, "invalid cpuset_cpus"),
        ({"cpuset_mems": "a"}, "invalid cpuset_mems"),
        ({"hugepage_limits": [pb.HugepageLimit(page_size="2M", limit=1)]}, "hugepage size"),
        ({"unified": {"memory": "1"}}, "unified cgroup key"),
        ({"unified": {"../x.y": "1"}}, "unified cgroup key"),
    ],
)
def test_invalid(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        r.linux_resources(_res(**kw))


class TestOomScoreAdj:
    def test_passthrough(self) -> None:
        assert r.oom_score_adj(-999, restrict=False, daemon_score=0) == -999
        assert r.oom_score_adj(1000, restrict=True, daemon_score=0) == 1000

    def test_restricted_to_daemon_score(self) -> None:
        assert r.oom_score_adj(-998, restrict=True, daemon_score=0) == 0
        assert r.oom_score_adj(-998, restrict=True, daemon_score=-500) == -500
        assert r.oom_score_adj(-100, restrict=True, daemon_score=-500) == -100

    @pytest.mark.parametrize("value", [-1001, 1001])
    def test_out_of_range(self, value: int) -> None:
        with pytest.raises(SpecError, match="outside"):
            r.oom_score_adj(value, restrict=False, daemon_score=0)
